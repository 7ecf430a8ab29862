//! The `litert` backend: LiteRT's compiled-model API with XNNPACK as the CPU
//! accelerator, from a `libLiteRt.so` loaded at run time (see `litert_ffi`). About
//! 2.5x faster per inference than TF Lite 1.15 here; absent on armv7 (no wheel).

use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::{Arc, Mutex};

use super::litert_ffi::{self as ffi, Api, RankedTensorType, STATUS_OK};
use super::{BackendOptions, InferenceBackend, InferenceError};
use crate::model::{MappedModel, ModelError, ModelPackage};

const NAME: &str = "litert";

/// Why the LiteRT backend could not be built. The library's faults (missing, not a
/// shared object, wrong ABI) are kept apart from the model's (wrong shape, LiteRT
/// cannot compile it), so `auto` can say which it was.
#[derive(Debug, thiserror::Error)]
pub enum LitertError {
    #[error("{0}")]
    Library(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

pub struct LitertBackend {
    api: Arc<Api>,
    env: ffi::Environment,
    model: ffi::Model,
    compiled: ffi::CompiledModel,
    input_buffer: ffi::TensorBuffer,
    output_buffer: ffi::TensorBuffer,
    /// Host addresses of the two buffers' memory (see `host_address`).
    input: *mut f32,
    input_len: usize,
    output: *const f32,
    output_len: usize,
    /// The model file, mapped: LiteRT refers to the buffer it was given for the
    /// model's lifetime (its resident pages are released once XNNPACK has packed
    /// the weights, see `MappedModel`).
    model_bytes: MappedModel,
    library: PathBuf,
}

// SAFETY: every handle is owned by this value and used only through `&mut self`;
// LiteRT objects have no thread affinity (the CPU accelerator runs on the caller's
// thread), they only must not be used from two threads at once.
unsafe impl Send for LitertBackend {}

impl LitertBackend {
    /// Loads `library` and compiles the package's model for the CPU (XNNPACK).
    pub fn new(
        library: &Path,
        package: &ModelPackage,
        options: &BackendOptions,
    ) -> Result<Self, LitertError> {
        let api = loaded_api(library).map_err(LitertError::Library)?;
        Self::with_api(api, library, package, options)
    }

    fn with_api(
        api: Arc<Api>,
        library: &Path,
        package: &ModelPackage,
        options: &BackendOptions,
    ) -> Result<Self, LitertError> {
        let path = package.model_path.clone();
        let runtime = |what: &str, status: ffi::Status| {
            LitertError::Model(ModelError::Runtime {
                path: path.clone(),
                backend: NAME,
                message: format!("{what}: {}", ffi::status_text(status)),
            })
        };
        let shape_error = |message: String| {
            LitertError::Model(ModelError::Shape {
                path: path.clone(),
                message,
            })
        };
        let model_bytes = package.map_model()?;
        // The same FlatBuffer verifier as the tflite backend: a damaged file must be
        // an error here too, whatever LiteRT itself would do with it.
        if tflite::model::Model::from_buffer(&model_bytes).is_none() {
            return Err(LitertError::Model(ModelError::NotTflite {
                path: path.clone(),
                reason: "the FlatBuffer verifier rejected it (damaged or not a TFLite model)"
                    .into(),
            }));
        }
        // Built up step by step; `Drop` releases whatever was created if a step fails.
        let mut this = LitertBackend {
            api: api.clone(),
            env: ptr::null_mut(),
            model: ptr::null_mut(),
            compiled: ptr::null_mut(),
            input_buffer: ptr::null_mut(),
            output_buffer: ptr::null_mut(),
            input: ptr::null_mut(),
            input_len: 0,
            output: ptr::null(),
            output_len: 0,
            model_bytes,
            library: library.to_path_buf(),
        };
        // SAFETY (whole block): every call follows LiteRT's C API contract: handles
        // come from the matching create call, out-pointers point at live locals, and
        // the model buffer outlives the model (it is kept in `this`).
        unsafe {
            // Register the CPU accelerator only (not GPU/NPU: nothing to find on a
            // Pi, and each is a dlopen attempt), and log errors only: LiteRT's info
            // lines would bury the agent's own.
            let env_options = [
                ffi::EnvOption::int(
                    ffi::ENV_OPTION_AUTO_REGISTER_ACCELERATORS,
                    ffi::HW_ACCELERATOR_CPU.into(),
                ),
                ffi::EnvOption::int(ffi::ENV_OPTION_MIN_LOGGER_SEVERITY, ffi::LOG_SEVERITY_ERROR),
            ];
            check((api.create_environment)(
                env_options.len() as i32,
                env_options.as_ptr(),
                &mut this.env,
            ))
            .map_err(|s| {
                LitertError::Library(format!(
                    "cannot create a LiteRT environment: {}",
                    ffi::status_text(s)
                ))
            })?;
            check((api.create_model_from_buffer)(
                this.env,
                this.model_bytes.as_ptr().cast(),
                this.model_bytes.len(),
                &mut this.model,
            ))
            .map_err(|s| runtime("cannot read the model", s))?;

            // One signature with one float32 input and one float32 output.
            let mut count = 0usize;
            check((api.get_num_model_signatures)(this.model, &mut count))
                .map_err(|s| runtime("cannot list signatures", s))?;
            if count == 0 {
                return Err(shape_error("it has no signature".into()));
            }
            let mut signature = ptr::null_mut();
            check((api.get_model_signature)(this.model, 0, &mut signature))
                .map_err(|s| runtime("cannot read signature 0", s))?;
            let (mut inputs, mut outputs) = (0usize, 0usize);
            check((api.get_num_signature_inputs)(signature, &mut inputs))
                .map_err(|s| runtime("cannot count inputs", s))?;
            check((api.get_num_signature_outputs)(signature, &mut outputs))
                .map_err(|s| runtime("cannot count outputs", s))?;
            if inputs != 1 {
                return Err(shape_error(format!("it has {inputs} inputs, expected 1")));
            }
            if outputs != 1 {
                return Err(shape_error(format!("it has {outputs} outputs, expected 1")));
            }
            let mut tensor = ptr::null_mut();
            check((api.get_signature_input_tensor_by_index)(
                signature,
                0,
                &mut tensor,
            ))
            .map_err(|s| runtime("cannot read the input tensor", s))?;
            let input_type =
                ranked_type(&api, tensor).map_err(|s| runtime("input tensor type", s))?;
            check((api.get_signature_output_tensor_by_index)(
                signature,
                0,
                &mut tensor,
            ))
            .map_err(|s| runtime("cannot read the output tensor", s))?;
            let output_type =
                ranked_type(&api, tensor).map_err(|s| runtime("output tensor type", s))?;

            // The input signature may have a dynamic batch (-1, 160, 160, 3): it must
            // be fixed to 1 before any buffer is made.
            let m = &package.manifest.input;
            let expected = [1, m.height as i32, m.width as i32, m.channels as i32];
            let model_dims = input_type.dims();
            let fits = model_dims.len() == 4
                && (model_dims[0] == 1 || model_dims[0] < 0)
                && model_dims[1..] == expected[1..];
            if !fits {
                return Err(shape_error(format!(
                    "input shape is {model_dims:?}, the manifest says {expected:?} (NHWC)"
                )));
            }
            if input_type.element_type != ffi::ELEMENT_TYPE_FLOAT32 {
                return Err(shape_error(format!(
                    "input tensor has element type {}, the manifest says float32",
                    input_type.element_type
                )));
            }
            if output_type.element_type != ffi::ELEMENT_TYPE_FLOAT32 {
                return Err(shape_error(format!(
                    "output tensor has element type {}, the manifest says float32",
                    output_type.element_type
                )));
            }
            let output_dims: Vec<i32> = output_type.dims().iter().map(|&d| d.max(1)).collect();
            let classes: usize = output_dims.iter().map(|&d| d as usize).product();
            if classes != package.labels.len() {
                return Err(shape_error(format!(
                    "output shape {:?} has {classes} scores but there are {} labels",
                    output_type.dims(),
                    package.labels.len()
                )));
            }

            // Compile for the CPU: XNNPACK, with the configured thread count.
            let mut compile_options = ptr::null_mut();
            check((api.create_options)(&mut compile_options))
                .map_err(|s| runtime("cannot create options", s))?;
            let compiled = compile(&api, this.env, this.model, compile_options, options.threads);
            (api.destroy_options)(compile_options);
            this.compiled = compiled.map_err(|(what, s)| runtime(what, s))?;
            if model_dims[0] != 1 {
                check((api.resize_input_tensor)(
                    this.compiled,
                    0,
                    0,
                    expected.as_ptr(),
                    4,
                ))
                .map_err(|s| runtime("cannot fix the batch dimension to 1", s))?;
            }

            let input_tensor_type = RankedTensorType::float32(&expected);
            this.input_len = (expected.iter().product::<i32>()) as usize;
            check((api.create_managed_tensor_buffer)(
                this.env,
                ffi::TENSOR_BUFFER_TYPE_HOST_MEMORY,
                &input_tensor_type,
                this.input_len * 4,
                &mut this.input_buffer,
            ))
            .map_err(|s| runtime("cannot create the input buffer", s))?;
            let output_tensor_type = RankedTensorType::float32(&output_dims);
            this.output_len = classes;
            check((api.create_managed_tensor_buffer)(
                this.env,
                ffi::TENSOR_BUFFER_TYPE_HOST_MEMORY,
                &output_tensor_type,
                classes * 4,
                &mut this.output_buffer,
            ))
            .map_err(|s| runtime("cannot create the output buffer", s))?;
            this.input = host_address(&api, this.input_buffer)
                .map_err(|s| runtime("cannot map the input buffer", s))?
                .cast();
            this.output = host_address(&api, this.output_buffer)
                .map_err(|s| runtime("cannot map the output buffer", s))?
                .cast();
            std::slice::from_raw_parts_mut(this.input, this.input_len).fill(0.0);
        }
        // XNNPACK packed its own copy of the weights while compiling; the FlatBuffer's
        // weights are not read again, so their pages go back to the page cache (if
        // anything does read them, they fault back in from the same file). The
        // self-test that follows runs on exactly this state.
        this.model_bytes.release_resident_pages();
        Ok(this)
    }

    /// The library this backend was loaded from.
    pub fn library(&self) -> &Path {
        &self.library
    }
}

/// Libraries stay loaded for the life of the process, one copy per path: unloading a
/// C++ runtime with thread pools and static destructors is a classic source of
/// crashes at exit, and a model swap should not dlopen again.
fn loaded_api(library: &Path) -> Result<Arc<Api>, String> {
    static LOADED: Mutex<Vec<(PathBuf, Arc<Api>)>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, api)) = loaded.iter().find(|(p, _)| p == library) {
        return Ok(api.clone());
    }
    let api = Arc::new(Api::load(library)?);
    loaded.push((library.to_path_buf(), api.clone()));
    Ok(api)
}

fn check(status: ffi::Status) -> Result<(), ffi::Status> {
    if status == STATUS_OK {
        Ok(())
    } else {
        Err(status)
    }
}

/// # Safety
/// `tensor` must be a live tensor handle from `api`.
unsafe fn ranked_type(api: &Api, tensor: ffi::Tensor) -> Result<RankedTensorType, ffi::Status> {
    let mut t = RankedTensorType::float32(&[]);
    check((api.get_ranked_tensor_type)(tensor, &mut t))?;
    Ok(t)
}

/// # Safety
/// The handles must be live and from `api`.
unsafe fn compile(
    api: &Api,
    env: ffi::Environment,
    model: ffi::Model,
    options: ffi::Options,
    threads: usize,
) -> Result<ffi::CompiledModel, (&'static str, ffi::Status)> {
    check((api.set_options_hardware_accelerators)(
        options,
        ffi::HW_ACCELERATOR_CPU,
    ))
    .map_err(|s| ("cannot select the CPU accelerator", s))?;
    // The CPU accelerator's options travel as an opaque TOML payload under the
    // "xnnpack" identifier (what LrtGetOpaqueCpuOptionsData builds; that helper is
    // not exported). LiteRT frees the payload with `free_payload`.
    let payload = CString::new(format!("num_threads = {}\n", threads.clamp(1, 64)))
        .expect("no NUL in a formatted number");
    let identifier = c"xnnpack";
    let mut opaque = ptr::null_mut();
    let payload = payload.into_raw();
    let status = (api.create_opaque_options)(
        identifier.as_ptr(),
        payload.cast(),
        Some(free_payload),
        &mut opaque,
    );
    if status != STATUS_OK {
        free_payload(payload.cast());
        return Err(("cannot create the CPU options", status));
    }
    check((api.add_opaque_options)(options, opaque))
        .map_err(|s| ("cannot add the CPU options", s))?;
    let mut compiled = ptr::null_mut();
    check((api.create_compiled_model)(
        env,
        model,
        options,
        &mut compiled,
    ))
    .map_err(|s| ("cannot compile the model (unsupported operator?)", s))?;
    Ok(compiled)
}

unsafe extern "C" fn free_payload(payload: *mut c_void) {
    if !payload.is_null() {
        // SAFETY: the payload is the CString handed over in `compile`.
        drop(unsafe { CString::from_raw(payload.cast()) });
    }
}

/// The host address of a host-memory tensor buffer. Such a buffer is one aligned
/// allocation that it owns for its whole life; on the CPU, lock/unlock only wait
/// for events (there are none here), so the address stays valid until the buffer
/// is destroyed and is looked up once rather than on every frame.
///
/// # Safety
/// `buffer` must be a live host-memory tensor buffer from `api`.
unsafe fn host_address(api: &Api, buffer: ffi::TensorBuffer) -> Result<*mut c_void, ffi::Status> {
    let mut address = ptr::null_mut();
    check((api.lock_tensor_buffer)(
        buffer,
        &mut address,
        ffi::LOCK_MODE_READ_WRITE,
    ))?;
    check((api.unlock_tensor_buffer)(buffer))?;
    if address.is_null() {
        return Err(3);
    }
    Ok(address)
}

impl InferenceBackend for LitertBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn input_mut(&mut self) -> &mut [f32] {
        // SAFETY: `input` addresses `input_len` floats owned by `input_buffer`, which
        // lives as long as `self`; `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.input, self.input_len) }
    }

    fn run(&mut self) -> Result<&[f32], InferenceError> {
        let mut inputs = [self.input_buffer];
        let mut outputs = [self.output_buffer];
        // SAFETY: live handles; the arrays hold exactly the counts passed.
        let status = unsafe {
            (self.api.run_compiled_model)(
                self.compiled,
                0,
                1,
                inputs.as_mut_ptr(),
                1,
                outputs.as_mut_ptr(),
            )
        };
        if status != STATUS_OK {
            return Err(InferenceError {
                backend: NAME,
                message: ffi::status_text(status),
            });
        }
        // SAFETY: as in `input_mut`, for the output buffer.
        Ok(unsafe { std::slice::from_raw_parts(self.output, self.output_len) })
    }
}

impl Drop for LitertBackend {
    fn drop(&mut self) {
        let api = &self.api;
        // SAFETY: each handle is destroyed once, dependants before what they use.
        unsafe {
            if !self.input_buffer.is_null() {
                (api.destroy_tensor_buffer)(self.input_buffer);
            }
            if !self.output_buffer.is_null() {
                (api.destroy_tensor_buffer)(self.output_buffer);
            }
            if !self.compiled.is_null() {
                (api.destroy_compiled_model)(self.compiled);
            }
            if !self.model.is_null() {
                (api.destroy_model)(self.model);
            }
            if !self.env.is_null() {
                (api.destroy_environment)(self.env);
            }
        }
    }
}
