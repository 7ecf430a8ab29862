use super::*;

fn default_model() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../models/dogs_mobilenetv2.tflite"
    );
    std::fs::read(path).expect("the default model is in the repository")
}

/// Byte ranges where two equally long buffers differ.
fn differing_bytes(a: &[u8], b: &[u8]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn reads_the_default_models_dense_softmax_head() {
    let head = read_head(&default_model()).unwrap();
    assert_eq!(
        (head.classes, head.features, head.softmax),
        (19, 1280, true)
    );
    assert_eq!(head.weights.len(), 19 * 1280);
    assert!(head.weights.iter().all(|w| w.is_finite()));
    assert!(head.weights.iter().any(|&w| w != 0.0));
}

#[test]
fn rewriting_the_same_head_gives_the_same_bytes() {
    let model = default_model();
    let head = read_head(&model).unwrap();
    assert_eq!(replace_head(&model, &head).unwrap(), model);
}

#[test]
fn new_weights_of_the_same_shape_change_only_the_weight_bytes() {
    let model = default_model();
    let mut head = read_head(&model).unwrap();
    head.weights[0] += 1.0;
    head.bias[18] -= 1.0;
    let out = replace_head(&model, &head).unwrap();
    assert_eq!(out.len(), model.len());
    let changed = differing_bytes(&model, &out);
    assert!(!changed.is_empty() && changed.len() <= 8, "{changed:?}");
    assert_eq!(read_head(&out).unwrap(), head);
}

#[test]
fn a_grown_head_appends_its_buffers_and_rewrites_the_class_dimension_only() {
    let model = default_model();
    let mut head = read_head(&model).unwrap();
    head.classes += 2;
    head.weights.extend((0..2 * 1280).map(|i| i as f32 * 1e-3));
    head.bias.extend([0.5, -0.5]);
    let out = replace_head(&model, &head).unwrap();
    assert_eq!(read_head(&out).unwrap(), head);
    // Within the parent's length, only offsets and shape dims moved: 2 data offsets,
    // and at most 2 dims per shape (+ signature) of 4 tensors.
    let changed = differing_bytes(&model, &out[..model.len()]);
    assert!(changed.len() <= 4 * 10, "{} bytes changed", changed.len());
    // The grown model is still a model TF Lite's verifier accepts.
    assert!(tflite::model::Model::from_buffer(&out).is_some());
}

#[test]
fn fewer_classes_or_another_width_is_refused() {
    let model = default_model();
    let mut head = read_head(&model).unwrap();
    head.classes -= 1;
    head.weights.truncate(18 * 1280);
    head.bias.truncate(18);
    let e = replace_head(&model, &head).unwrap_err().to_string();
    assert!(e.contains("fewer than the model's 19"), "{e}");

    let mut head = read_head(&model).unwrap();
    head.features = 10;
    let e = replace_head(&model, &head).unwrap_err().to_string();
    assert!(e.contains("takes 1280 features"), "{e}");
}

#[test]
fn the_embedding_model_outputs_the_layers_input_and_has_no_head_left_to_retrain() {
    let model = default_model();
    let (embedding, width) = embedding_model(&model).unwrap();
    assert_eq!((embedding.len(), width), (model.len(), 1280));
    // The subgraph output and the one signature output moved: two 4-byte indices.
    let changed = differing_bytes(&model, &embedding);
    assert!(!changed.is_empty() && changed.len() <= 8, "{changed:?}");
    // Its output now comes from MEAN (builtin 40): a model that ends there is refused.
    let e = read_head(&embedding).unwrap_err().to_string();
    assert!(
        e.contains("not a FULLY_CONNECTED (+ SOFTMAX)") && e.contains("builtin operator 40"),
        "{e}"
    );
}

#[test]
fn a_file_that_is_not_a_flatbuffer_is_refused_without_panicking() {
    let e = read_head(b"TFL3 but nothing else").unwrap_err().to_string();
    assert!(e.contains("damaged"), "{e}");
    let mut model = default_model();
    model.truncate(model.len() / 2);
    assert!(read_head(&model).is_err());
}

#[test]
fn softmax_is_stable_and_sums_to_one() {
    let p = softmax(&[1000.0, 1000.0, -1000.0]);
    assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6 && p[2] == 0.0);
}
