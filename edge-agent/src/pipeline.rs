//! The frame pipeline: a preparer thread reads, decodes and resizes the next frame
//! while the caller's thread runs inference on the current one, so a two-core device
//! uses both cores. The channel between them is bounded (back-pressure, not memory
//! growth) and tensors are recycled, so a frame allocates only its decoded image.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::ImageFormat;

use crate::inference::{top_k, InferenceBackend, InferenceError, LabelScore};
use crate::model::InputSection;
use crate::preprocess::{decode, DecodeError, Preprocessor};

/// A frame ready for inference.
pub struct PreparedFrame {
    /// The file it came from (or a camera frame's name).
    pub source: PathBuf,
    /// The original encoded bytes (what a reviewer will see).
    pub bytes: Vec<u8>,
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// The decoded, upright RGB image (the review policy hashes it).
    pub image: image::RgbImage,
    /// The model's input tensor.
    pub tensor: Vec<f32>,
    pub decode_time: Duration,
    pub resize_time: Duration,
}

/// Why a frame could not be prepared. Displayed after the file name.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

/// Decodes `bytes` and fills `tensor` with the model input.
pub fn prepare_frame(
    pre: &mut Preprocessor,
    source: PathBuf,
    bytes: Vec<u8>,
    mut tensor: Vec<f32>,
) -> Result<PreparedFrame, DecodeError> {
    let t0 = Instant::now();
    let decoded = decode(&bytes)?;
    let t1 = Instant::now();
    tensor.resize(pre.input_len(), 0.0);
    pre.prepare(&decoded.image, &mut tensor);
    let t2 = Instant::now();
    let (width, height) = decoded.image.dimensions();
    Ok(PreparedFrame {
        source,
        bytes,
        format: decoded.format,
        width,
        height,
        image: decoded.image,
        tensor,
        decode_time: t1 - t0,
        resize_time: t2 - t1,
    })
}

/// Frames prepared on a background thread, in input order.
pub struct Preparer {
    frames: Receiver<(PathBuf, Result<PreparedFrame, FrameError>)>,
    recycle: SyncSender<Vec<f32>>,
    thread: Option<JoinHandle<()>>,
}

impl Preparer {
    /// Starts the preparer thread over `paths`; at most `depth` frames wait ready.
    pub fn spawn(
        paths: impl IntoIterator<Item = PathBuf> + Send + 'static,
        input: &InputSection,
        depth: usize,
    ) -> Self {
        let (frame_tx, frames) = sync_channel(depth.max(1));
        let (recycle, recycled) = sync_channel::<Vec<f32>>(depth.max(1) + 2);
        let mut pre = Preprocessor::new(input);
        let thread = std::thread::Builder::new()
            .name("frame-preparer".into())
            .spawn(move || {
                for path in paths {
                    let tensor = recycled.try_recv().unwrap_or_default();
                    let result = match std::fs::read(&path) {
                        Err(e) => Err(FrameError::Read(e)),
                        Ok(bytes) => prepare_frame(&mut pre, path.clone(), bytes, tensor)
                            .map_err(FrameError::Decode),
                    };
                    if frame_tx.send((path, result)).is_err() {
                        return; // the consumer stopped
                    }
                }
            })
            .expect("spawning a thread");
        Preparer {
            frames,
            recycle,
            thread: Some(thread),
        }
    }

    /// Hands a used tensor back so the next frame can reuse its allocation.
    pub fn recycle(&self, tensor: Vec<f32>) {
        let _ = self.recycle.try_send(tensor);
    }
}

impl Iterator for Preparer {
    type Item = (PathBuf, Result<PreparedFrame, FrameError>);

    fn next(&mut self) -> Option<Self::Item> {
        self.frames.recv().ok()
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        // Unblock a sender waiting on a full channel, then wait for the thread.
        let (_, dead) = sync_channel(0);
        self.frames = dead;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A classified frame.
#[derive(Debug, Clone)]
pub struct Classification {
    pub scores: Vec<f32>,
    pub top_k: Vec<LabelScore>,
    pub infer_time: Duration,
}

/// The backend plus what turns its raw scores into labels.
pub struct Classifier {
    backend: Box<dyn InferenceBackend>,
    labels: Vec<String>,
    k: usize,
}

impl Classifier {
    pub fn new(backend: Box<dyn InferenceBackend>, labels: Vec<String>, k: usize) -> Self {
        Classifier { backend, labels, k }
    }

    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Runs the model on a prepared tensor.
    pub fn classify(&mut self, tensor: &[f32]) -> Result<Classification, InferenceError> {
        let t0 = Instant::now();
        self.backend.input_mut().copy_from_slice(tensor);
        let scores = self.backend.run()?.to_vec();
        let infer_time = t0.elapsed();
        let top_k = top_k(&scores, &self.labels, self.k);
        Ok(Classification {
            scores,
            top_k,
            infer_time,
        })
    }
}
