//! From a captured frame to an encoded event (or a reason not to send it): decode,
//! classify, ask the review policy, shape the image, build the event metadata and
//! encode the MQTT messages. No network and no outbox here, so it is tested directly
//! with the real model; the daemon stores what it returns.

use std::path::PathBuf;

use image::ImageFormat;
use protocol::{
    encode_event, ContentType, DeviceId, EventId, EventMeta, ImageInfo, Limits, ModelInfo, TopK,
    Topics,
};

use super::serving::{wants_review, ServingModel, Swapper};
use crate::config::ImageSection;
use crate::inference::InferenceError;
use crate::phash::dhash;
use crate::pipeline::{prepare_frame, Classifier, FrameError};
use crate::policy::{Decision, ReviewPolicy, SkipCause};
use crate::preprocess::Preprocessor;
use crate::update::lifecycle::Observation;

/// What became of one frame.
#[derive(Debug)]
pub enum Outcome {
    /// Not sent to a human, and why.
    Skipped(SkipCause),
    /// Sent: the event and its encoded messages (one, or one per chunk).
    Selected {
        meta: Box<EventMeta>,
        messages: Vec<Vec<u8>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Inference(#[from] InferenceError),
    #[error("the model's scores are unusable: {0}")]
    Scores(String),
    #[error("cannot encode the event: {0}")]
    Encode(String),
}

impl ProcessError {
    /// A short, stable word for the status's `outcomes.refused` (`not_an_image`, ...).
    pub fn key(&self) -> &'static str {
        use crate::preprocess::DecodeError as D;
        match self {
            ProcessError::Frame(FrameError::Read(_)) => "unreadable",
            ProcessError::Frame(FrameError::Decode(d)) => match d {
                D::Empty => "empty_file",
                D::NotAnImage(_) => "not_an_image",
                D::Unsupported(_) => "unsupported_format",
                D::Truncated(_) => "truncated",
                D::Corrupt { .. } => "corrupt",
                D::TooLarge { .. } => "too_large",
            },
            ProcessError::Inference(_) => "inference_failed",
            ProcessError::Scores(_) => "unusable_scores",
            ProcessError::Encode(_) => "encoding_failed",
        }
    }
}

pub struct FrameProcessor {
    serving: ServingModel,
    /// Model updates: commands from the update worker, events back (daemon only).
    swapper: Option<Swapper>,
    device: DeviceId,
    events_topic_len: usize,
    limits: Limits,
    image: ImageSection,
    tensor: Vec<f32>,
}

impl FrameProcessor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pre: Preprocessor,
        classifier: Classifier,
        policy: ReviewPolicy,
        device: DeviceId,
        model: ModelInfo,
        topics: &Topics,
        max_message_bytes: usize,
        image: ImageSection,
    ) -> Self {
        let serving = ServingModel {
            pre,
            classifier,
            policy,
            info: model,
        };
        Self::from_serving(serving, device, topics, max_message_bytes, image)
    }

    pub fn from_serving(
        serving: ServingModel,
        device: DeviceId,
        topics: &Topics,
        max_message_bytes: usize,
        image: ImageSection,
    ) -> Self {
        FrameProcessor {
            events_topic_len: topics.events(&device).len(),
            serving,
            swapper: None,
            device,
            limits: Limits {
                max_message_bytes,
                ..Limits::default()
            },
            image,
            tensor: Vec::new(),
        }
    }

    pub fn policy(&self) -> &ReviewPolicy {
        &self.serving.policy
    }

    pub fn backend_name(&self) -> &'static str {
        self.serving.classifier.backend_name()
    }

    /// The model that classifies the next frame.
    pub fn model(&self) -> &ModelInfo {
        &self.serving.info
    }

    /// Lets the update worker swap the model between frames (see [`Swapper`]).
    pub fn set_swapper(&mut self, swapper: Swapper) {
        self.swapper = Some(swapper);
    }

    /// Takes a swap command sent since the last frame; the frame loop calls it
    /// between frames, also while no frame comes.
    pub fn between_frames(&mut self) {
        if let Some(swapper) = self.swapper.as_mut() {
            swapper.poll(&mut self.serving);
        }
    }

    /// Classifies one frame and, if the policy selects it, encodes its event.
    pub fn process(
        &mut self,
        name: &str,
        bytes: Vec<u8>,
        captured_at_ms: u64,
        now_ms: u64,
    ) -> Result<Outcome, ProcessError> {
        self.process_as(name, bytes, captured_at_ms, now_ms, false)
    }

    /// As [`process`](Self::process) for a frame an operator asked to have reviewed
    /// (the review-requests folder): classified as any other, but sent whatever the
    /// policy would say, with the reason `requested`, and not counted by the policy.
    pub fn process_requested(
        &mut self,
        name: &str,
        bytes: Vec<u8>,
        captured_at_ms: u64,
        now_ms: u64,
    ) -> Result<Outcome, ProcessError> {
        self.process_as(name, bytes, captured_at_ms, now_ms, true)
    }

    fn process_as(
        &mut self,
        name: &str,
        bytes: Vec<u8>,
        captured_at_ms: u64,
        now_ms: u64,
        requested: bool,
    ) -> Result<Outcome, ProcessError> {
        self.between_frames();
        let tensor = std::mem::take(&mut self.tensor);
        let frame = prepare_frame(&mut self.serving.pre, PathBuf::from(name), bytes, tensor)
            .map_err(FrameError::Decode)?;
        let result = self.serving.classifier.classify(&frame.tensor);
        let frame_hash = dhash(&frame.image);
        let c = result?;
        let decision = if requested {
            Decision::Review {
                reasons: vec![protocol::ReviewReason::Requested],
            }
        } else {
            self.serving
                .policy
                .decide(&c.scores, frame_hash, now_ms)
                .map_err(|e| ProcessError::Scores(e.to_string()))?
        };
        // A model update under way: the candidate scores the same frame (shadow),
        // and the swap, if due, happens once this frame is finished.
        let model = self.serving.info.clone();
        if let (Some(swapper), false) = (self.swapper.as_mut(), requested) {
            let candidate = swapper.shadow(&frame.image, frame_hash, now_ms);
            let seen = Observation {
                top1: c.top_k.first().map(|l| l.label.clone()).unwrap_or_default(),
                confidence: c.top_k.first().map(|l| l.score).unwrap_or(0.0),
                selected: wants_review(&decision),
            };
            swapper.observe(&mut self.serving, &seen, candidate.as_ref());
        }
        let crate::pipeline::PreparedFrame {
            bytes,
            format,
            image,
            tensor,
            ..
        } = frame;
        self.tensor = tensor;
        let reasons = match decision {
            Decision::Skip(cause) => return Ok(Outcome::Skipped(cause)),
            Decision::Review { reasons } => reasons,
        };
        let (content_type, bytes, (width, height)) =
            shape_image(&self.image, bytes, format, &image)?;
        let image = ImageInfo::describe(content_type, width, height, &bytes);
        let meta = EventMeta {
            v: protocol::event::EVENT_VERSION,
            event_id: event_id_for(&self.device, name, captured_at_ms, &image.sha256),
            device_id: self.device.clone(),
            captured_at: protocol::timestamp::format_rfc3339_utc(captured_at_ms as i64),
            model,
            top_k: c
                .top_k
                .iter()
                .map(|l| TopK {
                    index: l.index as u32,
                    label: l.label.clone(),
                    score: l.score,
                })
                .collect(),
            reasons,
            image,
            source: Some(name.to_string()),
        };
        let messages = encode_event(&meta, &bytes, self.events_topic_len, &self.limits)
            .map_err(|e| ProcessError::Encode(e.to_string()))?;
        Ok(Outcome::Selected {
            meta: Box::new(meta),
            messages,
        })
    }
}

/// Content type, bytes, and (width, height) of the image that travels.
type ShapedImage = (ContentType, Vec<u8>, (u32, u32));

/// The bytes that travel: the original file when it is small enough (a reviewer sees
/// exactly what was captured), else the upright image scaled to `max_side` as JPEG.
fn shape_image(
    cfg: &ImageSection,
    original: Vec<u8>,
    format: ImageFormat,
    upright: &image::RgbImage,
) -> Result<ShapedImage, ProcessError> {
    let (w, h) = upright.dimensions();
    if w.max(h) <= cfg.max_side {
        let ct = match format {
            ImageFormat::Png => ContentType::Png,
            _ => ContentType::Jpeg,
        };
        return Ok((ct, original, (w, h)));
    }
    let scale = cfg.max_side as f64 / w.max(h) as f64;
    let (nw, nh) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    let small = image::imageops::resize(upright, nw, nh, image::imageops::FilterType::Triangle);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, cfg.jpeg_quality)
        .encode_image(&small)
        .map_err(|e| ProcessError::Encode(format!("JPEG re-encoding failed: {e}")))?;
    Ok((ContentType::Jpeg, out, (nw, nh)))
}

/// The id of a selected frame's event: a UUIDv7 whose time is the capture time (ids
/// sort by capture) and whose other bits are a digest of what makes the frame itself:
/// device, source name, capture time and the image that travels (re-encoding is
/// deterministic, so the same frame gives the same image). A frame processed twice
/// (the agent killed after storing its event but before deleting its file) gets the
/// same id: the outbox keeps one event, and the relay, which deduplicates by event id,
/// starts one human loop. A random id would make the second pass a second review.
pub fn event_id_for(
    device: &DeviceId,
    source: &str,
    captured_at_ms: u64,
    image_sha256: &str,
) -> EventId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        "edge-a2i event id v1".as_bytes(),
        device.as_str().as_bytes(),
        source.as_bytes(),
        &captured_at_ms.to_be_bytes(),
        image_sha256.as_bytes(),
    ] {
        // Length-prefixed, so no two different inputs hash the same bytes.
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    EventId::from_unix_ms(captured_at_ms, bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_frame_gets_the_same_id_and_any_difference_another() {
        let device = DeviceId::new("pi-1").unwrap();
        let id = |d: &DeviceId, s: &str, t: u64, h: &str| event_id_for(d, s, t, h).to_string();
        let a = id(&device, "a.jpg", 1_795_597_200_000, "ab");
        assert_eq!(a, id(&device, "a.jpg", 1_795_597_200_000, "ab"));
        // UUIDv7: 48 bits of capture time (0x01a211eeea80 ms), then version 7.
        assert!(a.starts_with("01a211ee-ea80-7"), "{a}");
        let others = [
            id(
                &DeviceId::new("pi-2").unwrap(),
                "a.jpg",
                1_795_597_200_000,
                "ab",
            ),
            id(&device, "b.jpg", 1_795_597_200_000, "ab"),
            id(&device, "a.jpg", 1_795_597_200_001, "ab"),
            id(&device, "a.jpg", 1_795_597_200_000, "ac"),
            // Moving bytes between fields changes the id too.
            id(&device, "a.jpga", 1_795_597_200_000, "b"),
        ];
        for other in others {
            assert_ne!(a, other);
        }
    }
}
