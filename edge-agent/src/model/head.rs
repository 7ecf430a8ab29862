//! The model's classification head: the last FULLY_CONNECTED layer (and the SOFTMAX
//! after it), found in a TF Lite FlatBuffer, read out as a `DenseHead`, and written
//! back in place. Two edits are made, both byte patches that leave every other byte
//! of the parent file as it was (see `flatbuf.rs` for why not a repack):
//!
//! - [`embedding_model`]: the same model with its output moved from the scores to the
//!   FULLY_CONNECTED layer's input, the pooled embedding (1280 floats for
//!   MobileNetV2). The subgraph's output list and every signature def's output are
//!   re-pointed, so TF Lite 1.15 (subgraph outputs) and LiteRT (signature outputs)
//!   both return it, through the same inference code the agent runs. The head itself
//!   is then computed in Rust from the weights read here ([`DenseHead::scores`]).
//! - [`replace_head`]: new weights and bias. Same class count: overwritten where they
//!   are. More classes: the new weight and bias vectors are appended at the end of
//!   the file (16-byte aligned, as TF Lite's converter aligns buffers), the two
//!   buffers' data offsets re-pointed at them, and the class dimension of the weight,
//!   bias, logits and output shapes rewritten. The old weights stay behind as
//!   unreferenced bytes (97 KiB for the default model).
//!
//! Schema slots used (TF Lite `schema.fbs`): Model {1 operator_codes, 2 subgraphs,
//! 4 buffers, 7 signature_defs}; SubGraph {0 tensors, 2 outputs, 3 operators};
//! Tensor {0 shape, 1 type, 2 buffer, 7 shape_signature}; Operator {0 opcode_index,
//! 1 inputs, 2 outputs, 3 builtin_options_type, 4 builtin_options}; OperatorCode
//! {0 deprecated_builtin_code, 3 builtin_code}; Buffer {0 data}; SignatureDef
//! {1 outputs, 4 subgraph_index}; TensorMap {1 tensor_index}.

use super::flatbuf::{Buf, Table, Vector};

const FULLY_CONNECTED: i32 = 9;
const SOFTMAX: i32 = 25;
const FLOAT32: u8 = 0;
const FULLY_CONNECTED_OPTIONS: u8 = 8;
const SOFTMAX_OPTIONS: u8 = 9;

/// Why a model's head cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error(
    "the model's last layer is not a FULLY_CONNECTED (+ SOFTMAX) layer this build can retrain: {0}"
)]
pub struct HeadError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, HeadError> {
    Err(HeadError(message.into()))
}

fn damaged(what: &str) -> HeadError {
    HeadError(format!("the FlatBuffer is damaged or unexpected ({what})"))
}

/// A dense classification layer: `logits = weights · embedding + bias`, then softmax
/// when the model ends in one.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseHead {
    pub classes: usize,
    /// Width of the embedding (the layer's input), e.g. 1280.
    pub features: usize,
    /// Row-major `[classes][features]`, as TF Lite stores FULLY_CONNECTED weights.
    pub weights: Vec<f32>,
    /// `[classes]`.
    pub bias: Vec<f32>,
    /// Whether a SOFTMAX (beta 1) follows the layer.
    pub softmax: bool,
}

impl DenseHead {
    /// Logits for one embedding (`features` floats) → `classes` floats.
    pub fn logits(&self, embedding: &[f32]) -> Vec<f32> {
        self.weights
            .chunks_exact(self.features)
            .zip(&self.bias)
            .map(|(row, b)| b + dot(row, embedding))
            .collect()
    }

    /// What the model outputs for one embedding: probabilities after its softmax, or
    /// the logits for a model without one.
    pub fn scores(&self, embedding: &[f32]) -> Vec<f32> {
        let logits = self.logits(embedding);
        if self.softmax {
            softmax(&logits)
        } else {
            logits
        }
    }
}

/// Dot product in 8 independent lanes: a plain `zip().sum()` is one serial chain of
/// float adds that the compiler may not reorder, so it never vectorizes; eight
/// partial sums do (about 6x on the 1280-wide rows here).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// Numerically stable softmax (the maximum subtracted first).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// Where the head lives in the file.
struct Layout {
    embedding_tensor: i32,
    /// Byte positions of the subgraph output and of each signature def's output.
    output_index_positions: Vec<usize>,
    weights_data_field: usize,
    bias_data_field: usize,
    weights_data: Vector,
    bias_data: Vector,
    /// Positions of the i32 that hold the class count in the weight, bias, logits and
    /// output shapes (and shape signatures), each once.
    class_dim_positions: Vec<usize>,
    head: DenseHead,
}

/// Reads the head of a TF Lite model.
///
/// # Errors
/// [`HeadError`] naming what is not as required: one subgraph output produced by a
/// SOFTMAX (beta 1) over a FULLY_CONNECTED, or by the FULLY_CONNECTED itself; no fused
/// activation; float32 constant weights `[classes, features]` and bias `[classes]`
/// used by no other tensor.
pub fn read_head(model: &[u8]) -> Result<DenseHead, HeadError> {
    Ok(layout(model)?.head)
}

/// The model with its output re-pointed at the head's input (the embedding); see the
/// module docs.
pub fn embedding_model(model: &[u8]) -> Result<(Vec<u8>, usize), HeadError> {
    let layout = layout(model)?;
    let mut out = model.to_vec();
    for &pos in &layout.output_index_positions {
        out[pos..pos + 4].copy_from_slice(&layout.embedding_tensor.to_le_bytes());
    }
    Ok((out, layout.head.features))
}

/// The model with `head`'s weights and bias in place of its own; see the module docs.
pub fn replace_head(model: &[u8], head: &DenseHead) -> Result<Vec<u8>, HeadError> {
    let layout = layout(model)?;
    let old = &layout.head;
    if head.features != old.features
        || head.weights.len() != head.classes * head.features
        || head.bias.len() != head.classes
    {
        return err(format!(
            "new head is {}x{} with {} weights and {} biases; the model's layer takes {} features",
            head.classes,
            head.features,
            head.weights.len(),
            head.bias.len(),
            old.features
        ));
    }
    if head.classes < old.classes {
        return err(format!(
            "new head has {} classes, fewer than the model's {}: classes are never removed",
            head.classes, old.classes
        ));
    }
    let weights = super::f32_to_le_bytes(&head.weights);
    let bias = super::f32_to_le_bytes(&head.bias);
    let mut out = model.to_vec();
    if head.classes == old.classes {
        let w = layout.weights_data.0 + 4;
        let b = layout.bias_data.0 + 4;
        out[w..w + weights.len()].copy_from_slice(&weights);
        out[b..b + bias.len()].copy_from_slice(&bias);
        return Ok(out);
    }
    append_vector(&mut out, layout.weights_data_field, &weights)?;
    append_vector(&mut out, layout.bias_data_field, &bias)?;
    let classes = i32::try_from(head.classes).map_err(|_| damaged("class count"))?;
    for &pos in &layout.class_dim_positions {
        out[pos..pos + 4].copy_from_slice(&classes.to_le_bytes());
    }
    Ok(out)
}

/// Appends `[ubyte]` data so that its first byte is 16-byte aligned and points the
/// uoffset field at `field` to it.
fn append_vector(out: &mut Vec<u8>, field: usize, data: &[u8]) -> Result<(), HeadError> {
    while !(out.len() + 4).is_multiple_of(16) {
        out.push(0);
    }
    let at = out.len();
    let len = u32::try_from(data.len()).map_err(|_| damaged("buffer size"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
    let offset = u32::try_from(at - field).map_err(|_| damaged("model over 4 GiB"))?;
    out[field..field + 4].copy_from_slice(&offset.to_le_bytes());
    Ok(())
}

fn layout(model: &[u8]) -> Result<Layout, HeadError> {
    let buf = Buf(model);
    let root = buf.root().ok_or_else(|| damaged("no root table"))?;
    let opcodes = buf
        .vector_field(root, 1)
        .ok_or_else(|| damaged("no operator codes"))?;
    let subgraphs = buf
        .vector_field(root, 2)
        .ok_or_else(|| damaged("no subgraphs"))?;
    let buffers = buf
        .vector_field(root, 4)
        .ok_or_else(|| damaged("no buffers"))?;
    let graph = buf
        .table_at(subgraphs, 0)
        .ok_or_else(|| damaged("no subgraph 0"))?;
    let tensors = buf
        .vector_field(graph, 0)
        .ok_or_else(|| damaged("no tensors"))?;
    let operators = buf
        .vector_field(graph, 3)
        .ok_or_else(|| damaged("no operators"))?;
    let outputs = buf
        .vector_field(graph, 2)
        .ok_or_else(|| damaged("no subgraph outputs"))?;
    let output_ids = buf
        .i32s(outputs)
        .ok_or_else(|| damaged("subgraph outputs"))?;
    let [output] = output_ids[..] else {
        return err(format!("it has {} outputs, expected 1", output_ids.len()));
    };
    let graph_output_pos = buf.element_pos(outputs, 0, 4).expect("length checked");

    let tensor = |id: i32| -> Result<Table, HeadError> {
        usize::try_from(id)
            .ok()
            .and_then(|i| buf.table_at(tensors, i))
            .ok_or_else(|| damaged(&format!("tensor {id}")))
    };
    let producer = |id: i32| -> Result<(Table, i32), HeadError> {
        let count = buf.len(operators).ok_or_else(|| damaged("operators"))?;
        for i in (0..count).rev() {
            let op = buf
                .table_at(operators, i)
                .ok_or_else(|| damaged("operator"))?;
            let outs = buf
                .vector_field(op, 2)
                .and_then(|v| buf.i32s(v))
                .unwrap_or_default();
            if outs.contains(&id) {
                let index = buf
                    .u32_field(op, 0, 0)
                    .ok_or_else(|| damaged("opcode index"))?;
                let code = buf
                    .table_at(opcodes, index as usize)
                    .ok_or_else(|| damaged("operator code"))?;
                let deprecated = buf.u8_field(code, 0, 0).ok_or_else(|| damaged("opcode"))?;
                let builtin = buf.i32_field(code, 3, 0).ok_or_else(|| damaged("opcode"))?;
                return Ok((op, builtin.max(deprecated as i32)));
            }
        }
        err(format!("no operator produces tensor {id}"))
    };
    let inputs_of = |op: Table| -> Result<Vec<i32>, HeadError> {
        buf.vector_field(op, 1)
            .and_then(|v| buf.i32s(v))
            .ok_or_else(|| damaged("operator inputs"))
    };
    let shape_of = |t: Table| -> Result<Vec<i32>, HeadError> {
        buf.vector_field(t, 0)
            .and_then(|v| buf.i32s(v))
            .ok_or_else(|| damaged("tensor shape"))
    };

    let (last, last_code) = producer(output)?;
    let (fc, logits_tensor, softmax) = match last_code {
        SOFTMAX => {
            let beta = match buf.u8_field(last, 3, 0) {
                Some(SOFTMAX_OPTIONS) => buf
                    .table_field(last, 4)
                    .and_then(|o| buf.f32_field(o, 0, 0.0))
                    .unwrap_or(0.0),
                _ => 0.0,
            };
            if beta != 1.0 {
                return err(format!("its SOFTMAX has beta {beta}, expected 1"));
            }
            let logits = *inputs_of(last)?
                .first()
                .ok_or_else(|| damaged("softmax input"))?;
            let (fc, code) = producer(logits)?;
            if code != FULLY_CONNECTED {
                return err(format!(
                    "the SOFTMAX's input comes from builtin operator {code}, not FULLY_CONNECTED ({FULLY_CONNECTED})"
                ));
            }
            (fc, Some(logits), true)
        }
        FULLY_CONNECTED => (last, None, false),
        code => {
            return err(format!(
                "the output comes from builtin operator {code}, not SOFTMAX ({SOFTMAX}) or FULLY_CONNECTED ({FULLY_CONNECTED})"
            ))
        }
    };
    if buf.u8_field(fc, 3, 0) == Some(FULLY_CONNECTED_OPTIONS) {
        if let Some(options) = buf.table_field(fc, 4) {
            let activation = buf.u8_field(options, 0, 0).unwrap_or(0);
            if activation != 0 {
                return err(format!(
                    "its FULLY_CONNECTED has fused activation {activation}, expected NONE"
                ));
            }
            let format = buf.u8_field(options, 1, 0).unwrap_or(0);
            if format != 0 {
                return err("its FULLY_CONNECTED weights are in a shuffled format");
            }
        }
    }
    let fc_inputs = inputs_of(fc)?;
    let [embedding_tensor, weights_tensor, bias_tensor] = fc_inputs[..] else {
        return err(format!(
            "its FULLY_CONNECTED has {} inputs, expected input, weights and bias",
            fc_inputs.len()
        ));
    };
    if bias_tensor < 0 {
        return err("its FULLY_CONNECTED has no bias");
    }

    let (w, b) = (tensor(weights_tensor)?, tensor(bias_tensor)?);
    for (t, what) in [
        (w, "weights"),
        (b, "bias"),
        (tensor(embedding_tensor)?, "input"),
    ] {
        if buf.u8_field(t, 1, 0) != Some(FLOAT32) {
            return err(format!(
                "its FULLY_CONNECTED {what} are not float32 (quantized?)"
            ));
        }
    }
    let w_shape = shape_of(w)?;
    let [classes, features] = w_shape[..] else {
        return err(format!(
            "its weights have shape {w_shape:?}, expected [classes, features]"
        ));
    };
    let (classes, features) = (classes.max(0) as usize, features.max(0) as usize);
    if shape_of(b)? != [classes as i32] {
        return err(format!(
            "its bias has shape {:?}, expected [{classes}]",
            shape_of(b)?
        ));
    }
    let embedding_len: i32 = shape_of(tensor(embedding_tensor)?)?.iter().product();
    if embedding_len as usize != features {
        return err(format!(
            "its input has {embedding_len} values, the weights take {features}"
        ));
    }

    let constant = |t: Table, what: &str, len: usize| -> Result<(usize, Vector), HeadError> {
        let index = buf
            .u32_field(t, 2, 0)
            .ok_or_else(|| damaged("tensor buffer"))?;
        let shared = (0..buf.len(tensors).unwrap_or(0))
            .filter_map(|i| buf.table_at(tensors, i))
            .filter(|&o| buf.u32_field(o, 2, 0) == Some(index))
            .count();
        if index == 0 || shared != 1 {
            return err(format!(
                "its {what} are not a constant of their own (buffer {index}, used by {shared} tensors)"
            ));
        }
        let buffer = buf
            .table_at(buffers, index as usize)
            .ok_or_else(|| damaged("buffer"))?;
        let field = buf.field_pos(buffer, 0);
        let data = buf.vector_field(buffer, 0);
        let (Some(field), Some(data)) = (field, data) else {
            return err(format!("its {what} are stored outside the FlatBuffer"));
        };
        if buf.len(data) != Some(len * 4) {
            return err(format!(
                "its {what} buffer holds {:?} bytes, the shape needs {}",
                buf.len(data),
                len * 4
            ));
        }
        Ok((field, data))
    };
    let (weights_data_field, weights_data) = constant(w, "weights", classes * features)?;
    let (bias_data_field, bias_data) = constant(b, "bias", classes)?;
    let floats = |v: Vector| -> Vec<f32> {
        buf.bytes(v)
            .unwrap_or_default()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };

    // Where the class count is written: dim 0 of weights and bias, the last dim of
    // the logits and output shapes and shape signatures.
    let mut class_dim_positions = Vec::new();
    let mut push = |v: Option<Vector>, last: bool| {
        if let Some(v) = v {
            let n = buf.len(v).unwrap_or(0);
            let i = if last { n.saturating_sub(1) } else { 0 };
            if let Some(pos) = buf.element_pos(v, i, 4) {
                if buf.i32_at(pos) == Some(classes as i32) && !class_dim_positions.contains(&pos) {
                    class_dim_positions.push(pos);
                }
            }
        }
    };
    push(buf.vector_field(w, 0), false);
    push(buf.vector_field(b, 0), false);
    for t in [Some(output), logits_tensor].into_iter().flatten() {
        let t = tensor(t)?;
        push(buf.vector_field(t, 0), true);
        push(buf.vector_field(t, 7), true);
    }

    let mut output_index_positions = vec![graph_output_pos];
    if let Some(signatures) = buf.vector_field(root, 7) {
        for i in 0..buf.len(signatures).unwrap_or(0) {
            let sig = buf
                .table_at(signatures, i)
                .ok_or_else(|| damaged("signature"))?;
            if buf.u32_field(sig, 4, 0) != Some(0) {
                continue;
            }
            let Some(outs) = buf.vector_field(sig, 1) else {
                continue;
            };
            for j in 0..buf.len(outs).unwrap_or(0) {
                let map = buf
                    .table_at(outs, j)
                    .ok_or_else(|| damaged("signature output"))?;
                match buf.field_pos(map, 1) {
                    Some(pos) if buf.i32_at(pos) == Some(output) => {
                        output_index_positions.push(pos)
                    }
                    _ => return err("a signature output is not the model output"),
                }
            }
        }
    }

    Ok(Layout {
        embedding_tensor,
        output_index_positions,
        weights_data_field,
        bias_data_field,
        weights_data,
        bias_data,
        class_dim_positions,
        head: DenseHead {
            classes,
            features,
            weights: floats(weights_data),
            bias: floats(bias_data),
            softmax,
        },
    })
}

#[cfg(test)]
#[path = "head_tests.rs"]
mod tests;
