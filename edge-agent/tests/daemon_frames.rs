//! The daemon's frame step with the real model: which frames become events, what
//! the events carry, and that their messages reassemble into the exact image.

use std::path::{Path, PathBuf};

use edge_agent::config::ImageSection;
use edge_agent::daemon::{FrameProcessor, Outcome, ProcessError};
use edge_agent::inference::{load_backend, BackendOptions};
use edge_agent::model::ModelPackage;
use edge_agent::pipeline::Classifier;
use edge_agent::policy::{PolicyConfig, ReviewPolicy, SkipCause};
use edge_agent::preprocess::Preprocessor;
use protocol::{decode, ChunkAssembler, DeviceId, ModelInfo, ReviewReason, Topics};

mod jpeg_variants;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(root().join("models/samples").join(name)).unwrap()
}

fn processor(policy_toml: &str, max_message_bytes: usize, image: ImageSection) -> FrameProcessor {
    let package = ModelPackage::load(&root().join("models/dogs_mobilenetv2.toml")).unwrap();
    let backend = load_backend(&package, &BackendOptions::default()).unwrap();
    let policy: PolicyConfig = toml::from_str(policy_toml).unwrap();
    let policy = ReviewPolicy::new(policy, package.labels.clone()).unwrap();
    FrameProcessor::new(
        Preprocessor::new(&package.manifest.input),
        Classifier::new(backend, package.labels.clone(), 5),
        policy,
        DeviceId::new("pi-test").unwrap(),
        ModelInfo {
            name: package.manifest.model.name.clone(),
            version: package.manifest.model.version.clone(),
            sha256: package.manifest.model.sha256.clone(),
        },
        &Topics::default(),
        max_message_bytes,
        image,
    )
}

const THRESHOLD_035: &str = r#"
min_confidence = 0.35
min_margin = "off"
max_reviews_per_hour = "off"
[near_duplicate]
enabled = false
"#;

#[test]
fn an_unsure_frame_becomes_an_event_whose_chunks_reassemble_to_the_exact_file() {
    let mut p = processor(THRESHOLD_035, 131_072, ImageSection::default());
    let bytes = sample("hubble.jpg");
    assert!(bytes.len() > 131_072, "hubble.jpg needs chunking");
    let Outcome::Selected { meta, messages } = p
        .process("hubble.jpg", bytes.clone(), 1_000, 2_000)
        .unwrap()
    else {
        panic!("hubble.jpg (top-1 0.347) is below 0.35");
    };
    assert!(messages.len() >= 3, "{} messages", messages.len());
    let topic_len = Topics::default()
        .events(&DeviceId::new("pi-test").unwrap())
        .len();
    for m in &messages {
        assert!(
            m.len() + topic_len + 9 <= 131_072,
            "every message fits the limit"
        );
    }
    assert_eq!(meta.device_id.as_str(), "pi-test");
    assert_eq!(meta.top_k.len(), 5);
    assert_eq!(meta.top_k[0].label, "Yorkshire_terrier");
    assert_eq!(meta.source.as_deref(), Some("hubble.jpg"));
    assert!(
        matches!(meta.reasons[..], [ReviewReason::LowConfidence { .. }]),
        "{:?}",
        meta.reasons
    );
    let mut assembler = ChunkAssembler::new(Default::default());
    let mut complete = None;
    for m in messages.iter().rev() {
        if let Some(done) = assembler.offer_message(decode(m).unwrap(), 0).unwrap() {
            complete = Some(done);
        }
    }
    let complete = complete.expect("all chunks give the event");
    assert_eq!(complete.image, bytes, "byte-identical image");
}

#[test]
fn a_confident_frame_is_not_sent() {
    let mut p = processor(THRESHOLD_035, 131_072, ImageSection::default());
    let out = p
        .process("chelsea.jpg", sample("chelsea.jpg"), 0, 0)
        .unwrap();
    assert!(
        matches!(out, Outcome::Skipped(SkipCause::Confident)),
        "{out:?}"
    );
}

#[test]
fn a_png_travels_as_png() {
    let mut p = processor(THRESHOLD_035, 131_072, ImageSection::default());
    let Outcome::Selected { meta, .. } =
        p.process("coffee.png", sample("coffee.png"), 0, 0).unwrap()
    else {
        panic!("coffee.png (0.298) is selected");
    };
    assert_eq!(meta.image.content_type.as_str(), "image/png");
}

#[test]
fn a_large_frame_is_scaled_to_max_side_as_jpeg() {
    let mut p = processor(
        THRESHOLD_035,
        131_072,
        ImageSection {
            max_side: 320,
            jpeg_quality: 80,
        },
    );
    let Outcome::Selected { meta, messages } =
        p.process("rocket.jpg", sample("rocket.jpg"), 0, 0).unwrap()
    else {
        panic!("rocket.jpg (0.280) is selected");
    };
    assert_eq!(meta.image.width.max(meta.image.height), 320);
    assert_eq!(meta.image.content_type.as_str(), "image/jpeg");
    assert_eq!(messages.len(), 1);
}

#[test]
fn a_corrupt_frame_is_an_error_and_the_next_frame_still_works() {
    let mut p = processor(THRESHOLD_035, 131_072, ImageSection::default());
    let mut broken = sample("rocket.jpg");
    broken.truncate(broken.len() / 2);
    let err = p.process("broken.jpg", broken, 0, 0).unwrap_err();
    assert!(matches!(err, ProcessError::Frame(_)), "{err}");
    assert!(err.to_string().contains("truncated JPEG"), "{err}");
    assert!(matches!(
        p.process("rocket.jpg", sample("rocket.jpg"), 0, 0),
        Ok(Outcome::Selected { .. })
    ));
}

#[test]
fn a_jpeg_with_trailing_data_or_no_huffman_tables_is_classified_and_travels_repaired() {
    use jpeg_variants::{webcam_frame, with_trailer};
    let mut p = processor(
        THRESHOLD_035,
        1 << 20,
        ImageSection {
            max_side: 4096,
            ..ImageSection::default()
        },
    );
    let photo = sample("rocket.jpg");
    let Outcome::Selected { meta: want, .. } =
        p.process("rocket.jpg", photo.clone(), 0, 0).unwrap()
    else {
        panic!("rocket.jpg is unsure: selected");
    };
    for (name, bytes) in [
        ("motion.jpg", with_trailer(&photo)),
        ("webcam.jpg", webcam_frame(&photo)),
    ] {
        let Outcome::Selected { meta, messages } = p.process(name, bytes, 0, 0).unwrap() else {
            panic!("{name}: selected like the photo");
        };
        assert_eq!(meta.top_k, want.top_k, "{name}: the photo's scores");
        let mut assembler = ChunkAssembler::new(Default::default());
        let mut image = None;
        for m in &messages {
            if let Some(done) = assembler.offer_message(decode(m).unwrap(), 0).unwrap() {
                image = Some(done.image);
            }
        }
        let image = image.expect("the event reassembles");
        // What travels is a standalone JPEG any viewer decodes, ending at its EOI.
        assert!(image.ends_with(&[0xFF, 0xD9]), "{name}");
        image::load_from_memory(&image).unwrap_or_else(|e| panic!("{name}: {e}"));
        if name == "motion.jpg" {
            assert_eq!(image, photo, "the trailer is cut off, nothing else");
        }
    }
}
