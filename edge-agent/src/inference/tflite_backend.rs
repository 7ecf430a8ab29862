//! The `tflite` backend: TensorFlow Lite 1.15, compiled into the binary by the
//! `tflite` crate. Always available (the only backend on armv7); slower than
//! LiteRT/XNNPACK but with no run-time dependency at all.

use tflite::ops::builtin::BuiltinOpResolver;
use tflite::{FlatBufferModel, Interpreter, InterpreterBuilder};

use super::{BackendOptions, InferenceBackend, InferenceError};
use crate::model::{ModelError, ModelPackage};

const NAME: &str = "tflite";

pub struct TfliteBackend {
    interpreter: Interpreter<'static, BuiltinOpResolver>,
    input: i32,
    output: i32,
}

// SAFETY: the interpreter owns its model, resolver and tensors and has no thread
// affinity; TF Lite only forbids using one interpreter from two threads at once,
// which `&mut self` on every call rules out.
unsafe impl Send for TfliteBackend {}

impl TfliteBackend {
    pub fn new(package: &ModelPackage, options: &BackendOptions) -> Result<Self, ModelError> {
        let path = package.model_path.clone();
        let runtime = |message: String| ModelError::Runtime {
            path: path.clone(),
            backend: NAME,
            message,
        };
        // Walk the whole FlatBuffer with its verifier first: TF Lite 1.15 trusts the
        // buffer it is given, and a damaged file must be an error, not a crash.
        let model_bytes = package.read_model()?;
        if tflite::model::Model::from_buffer(&model_bytes).is_none() {
            return Err(ModelError::NotTflite {
                path: path.clone(),
                reason: "the FlatBuffer verifier rejected it (damaged or not a TFLite model)"
                    .into(),
            });
        }
        let model = FlatBufferModel::build_from_buffer(model_bytes)
            .map_err(|e| runtime(format!("cannot build the model: {e}")))?;
        let resolver = BuiltinOpResolver::default();
        let builder = InterpreterBuilder::new(model, resolver)
            .map_err(|e| runtime(format!("cannot create the interpreter builder: {e}")))?;
        let threads = options.threads.clamp(1, 64) as i32;
        let mut interpreter = builder.build_with_threads(threads).map_err(|e| {
            runtime(format!(
                "cannot build the interpreter (unsupported operator?): {e}"
            ))
        })?;
        // Not `set_num_threads`: the tflite crate prints to stdout there, which would
        // corrupt `--json` output; `build_with_threads` already set it.
        interpreter
            .allocate_tensors()
            .map_err(|e| runtime(format!("cannot allocate tensors: {e}")))?;

        let shape_error = |message: String| ModelError::Shape {
            path: path.clone(),
            message,
        };
        let inputs = interpreter.inputs().to_vec();
        let outputs = interpreter.outputs().to_vec();
        if inputs.len() != 1 {
            return Err(shape_error(format!(
                "it has {} inputs, expected 1",
                inputs.len()
            )));
        }
        if outputs.len() != 1 {
            return Err(shape_error(format!(
                "it has {} outputs, expected 1",
                outputs.len()
            )));
        }
        let (input, output) = (inputs[0], outputs[0]);
        let input_info = interpreter
            .tensor_info(input)
            .ok_or_else(|| runtime("no input tensor info".into()))?;
        let m = &package.manifest.input;
        let expected = [1, m.height as usize, m.width as usize, m.channels as usize];
        if input_info.dims != expected {
            return Err(shape_error(format!(
                "input shape is {:?}, the manifest says {:?} (NHWC)",
                input_info.dims, expected
            )));
        }
        if interpreter.tensor_data::<f32>(input).is_err() {
            return Err(shape_error(format!(
                "input tensor is {:?}, the manifest says float32",
                input_info.element_kind
            )));
        }
        let output_info = interpreter
            .tensor_info(output)
            .ok_or_else(|| runtime("no output tensor info".into()))?;
        let classes: usize = output_info.dims.iter().product();
        if classes != package.labels.len() {
            return Err(shape_error(format!(
                "output shape {:?} has {classes} scores but there are {} labels",
                output_info.dims,
                package.labels.len()
            )));
        }
        if interpreter.tensor_data::<f32>(output).is_err() {
            return Err(shape_error(format!(
                "output tensor is {:?}, the manifest says float32",
                output_info.element_kind
            )));
        }
        Ok(TfliteBackend {
            interpreter,
            input,
            output,
        })
    }
}

impl InferenceBackend for TfliteBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn input_mut(&mut self) -> &mut [f32] {
        self.interpreter
            .tensor_data_mut(self.input)
            .expect("input type was checked at load")
    }

    fn run(&mut self) -> Result<&[f32], InferenceError> {
        self.interpreter.invoke().map_err(|e| InferenceError {
            backend: NAME,
            message: e.to_string(),
        })?;
        Ok(self
            .interpreter
            .tensor_data(self.output)
            .expect("output type was checked at load"))
    }
}
