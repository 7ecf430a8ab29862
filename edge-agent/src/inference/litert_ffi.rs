//! The part of the LiteRT C API (`libLiteRt.so`, LiteRT >= 2.1.6) that the `litert`
//! backend uses, resolved at run time with `libloading`.
//!
//! Why a hand-written binding of ~25 functions rather than a crate: the agent must
//! start and work without the library (dlopen, not link), the binding must follow the
//! ABI of the pinned wheel exactly (ai-edge-litert 2.3.0: `LiteRtCreateModelFrom*`
//! take the environment first since 2.1.6), and we need nothing but CPU inference
//! into host buffers. `edgefirst-tflite` would also work, but brings its own
//! interpreter API, loader and build dependencies for what is this one table; the
//! `litert` crate is stuck on an older ABI and downloads at build time. Signatures
//! follow `litert/c/*.h` of LiteRT at its 2.3.0 version bump.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;

use libloading::Library;

pub type Status = c_int;
pub const STATUS_OK: Status = 0;

/// Opaque handles (pointers to LiteRT-owned objects).
pub type Environment = *mut c_void;
pub type Model = *mut c_void;
pub type Signature = *mut c_void;
pub type Tensor = *mut c_void;
pub type Options = *mut c_void;
pub type OpaqueOptions = *mut c_void;
pub type CompiledModel = *mut c_void;
pub type TensorBuffer = *mut c_void;

pub const HW_ACCELERATOR_CPU: c_int = 1;
pub const TENSOR_BUFFER_TYPE_HOST_MEMORY: c_int = 1;
pub const ELEMENT_TYPE_FLOAT32: c_int = 1;
pub const LOCK_MODE_READ_WRITE: c_int = 2;
pub const TENSOR_MAX_RANK: usize = 8;

/// `LiteRtLayout`: `unsigned rank:7, has_strides:1` packed in the first 32-bit word
/// (GCC/Clang, little-endian), then dimensions and strides. 68 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub bits: u32,
    pub dimensions: [i32; TENSOR_MAX_RANK],
    pub strides: [u32; TENSOR_MAX_RANK],
}

/// `LiteRtRankedTensorType`: element type, then layout. 72 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RankedTensorType {
    pub element_type: c_int,
    pub layout: Layout,
}

/// `LiteRtEnvOption` with an integer value: the tag, then a `LiteRtAny` at offset 8
/// (its type, then an 8-byte union at offset 8 within it). 24 bytes.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EnvOption {
    pub tag: c_int,
    pub value_type: AnyType,
    pub int_value: i64,
}

/// `LiteRtAny::type`, aligned as in `LiteRtAny` (the union after it is 8-aligned).
#[repr(C, align(8))]
#[derive(Debug, Clone, Copy)]
pub struct AnyType(pub c_int);

pub const ENV_OPTION_AUTO_REGISTER_ACCELERATORS: c_int = 24;
pub const ENV_OPTION_MIN_LOGGER_SEVERITY: c_int = 25;
pub const ANY_TYPE_INT: c_int = 2;
pub const LOG_SEVERITY_ERROR: i64 = 3;

impl EnvOption {
    pub fn int(tag: c_int, value: i64) -> Self {
        EnvOption {
            tag,
            value_type: AnyType(ANY_TYPE_INT),
            int_value: value,
        }
    }
}

const _: () = assert!(std::mem::size_of::<EnvOption>() == 24);
const _: () = assert!(std::mem::offset_of!(EnvOption, value_type) == 8);
const _: () = assert!(std::mem::offset_of!(EnvOption, int_value) == 16);
const _: () = assert!(std::mem::size_of::<Layout>() == 68);
const _: () = assert!(std::mem::size_of::<RankedTensorType>() == 72);

impl RankedTensorType {
    pub fn float32(dims: &[i32]) -> Self {
        let mut dimensions = [0; TENSOR_MAX_RANK];
        dimensions[..dims.len()].copy_from_slice(dims);
        RankedTensorType {
            element_type: ELEMENT_TYPE_FLOAT32,
            layout: Layout {
                bits: dims.len() as u32 & 0x7f,
                dimensions,
                strides: [0; TENSOR_MAX_RANK],
            },
        }
    }

    pub fn dims(&self) -> &[i32] {
        let rank = (self.layout.bits & 0x7f) as usize;
        &self.layout.dimensions[..rank.min(TENSOR_MAX_RANK)]
    }
}

/// Declares the function table: one field per C function, resolved by name.
macro_rules! api {
    ($($field:ident = $symbol:literal : fn($($arg:ty),*) $(-> $ret:ty)?;)*) => {
        pub struct Api {
            $(pub $field: unsafe extern "C" fn($($arg),*) $(-> $ret)?,)*
            // Last, so it is dropped after nothing can call into it any more.
            _library: Library,
        }

        impl Api {
            /// dlopens `path` and resolves every function, naming the first missing one.
            pub fn load(path: &Path) -> Result<Api, String> {
                // SAFETY: loading a shared object runs its initialisers; the path is
                // one the operator configured or a LiteRT install location.
                let library = unsafe { Library::new(path) }.map_err(|e| {
                    // dlerror() usually starts with the path already.
                    let text = e.to_string();
                    let prefix = format!("{}: ", path.display());
                    let why = text.strip_prefix(&prefix).unwrap_or(&text);
                    format!("cannot load {}: {why}", path.display())
                })?;
                // `LiteRtCreateModelFromFd` appeared in 2.1.6, together with the
                // environment-first model functions this table calls: an older library
                // would be called with the wrong arguments, so refuse it here.
                // SAFETY: only the symbol's presence is checked.
                if unsafe { library.get::<*const c_void>(b"LiteRtCreateModelFromFd\0") }.is_err() {
                    return Err(format!(
                        "{} is not LiteRT >= 2.1.6 (no LiteRtCreateModelFromFd; older \
                         versions have another C ABI)",
                        path.display()
                    ));
                }
                $(
                    // SAFETY: the type is the C signature from LiteRT's headers.
                    let $field = *unsafe {
                        library.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                            concat!($symbol, "\0").as_bytes(),
                        )
                    }
                    .map_err(|_| {
                        format!("{} has no {} (not a LiteRT C API library?)", path.display(), $symbol)
                    })?;
                )*
                Ok(Api { $($field,)* _library: library })
            }
        }
    };
}

api! {
    create_environment = "LiteRtCreateEnvironment": fn(c_int, *const EnvOption, *mut Environment) -> Status;
    destroy_environment = "LiteRtDestroyEnvironment": fn(Environment);
    create_model_from_buffer = "LiteRtCreateModelFromBuffer": fn(Environment, *const c_void, usize, *mut Model) -> Status;
    destroy_model = "LiteRtDestroyModel": fn(Model);
    get_num_model_signatures = "LiteRtGetNumModelSignatures": fn(Model, *mut usize) -> Status;
    get_model_signature = "LiteRtGetModelSignature": fn(Model, usize, *mut Signature) -> Status;
    get_num_signature_inputs = "LiteRtGetNumSignatureInputs": fn(Signature, *mut usize) -> Status;
    get_num_signature_outputs = "LiteRtGetNumSignatureOutputs": fn(Signature, *mut usize) -> Status;
    get_signature_input_tensor_by_index = "LiteRtGetSignatureInputTensorByIndex": fn(Signature, usize, *mut Tensor) -> Status;
    get_signature_output_tensor_by_index = "LiteRtGetSignatureOutputTensorByIndex": fn(Signature, usize, *mut Tensor) -> Status;
    get_ranked_tensor_type = "LiteRtGetRankedTensorType": fn(Tensor, *mut RankedTensorType) -> Status;
    create_options = "LiteRtCreateOptions": fn(*mut Options) -> Status;
    destroy_options = "LiteRtDestroyOptions": fn(Options);
    set_options_hardware_accelerators = "LiteRtSetOptionsHardwareAccelerators": fn(Options, c_int) -> Status;
    create_opaque_options = "LiteRtCreateOpaqueOptions": fn(*const c_char, *mut c_void, Option<unsafe extern "C" fn(*mut c_void)>, *mut OpaqueOptions) -> Status;
    add_opaque_options = "LiteRtAddOpaqueOptions": fn(Options, OpaqueOptions) -> Status;
    create_compiled_model = "LiteRtCreateCompiledModel": fn(Environment, Model, Options, *mut CompiledModel) -> Status;
    destroy_compiled_model = "LiteRtDestroyCompiledModel": fn(CompiledModel);
    resize_input_tensor = "LiteRtCompiledModelResizeInputTensor": fn(CompiledModel, usize, usize, *const c_int, usize) -> Status;
    create_managed_tensor_buffer = "LiteRtCreateManagedTensorBuffer": fn(Environment, c_int, *const RankedTensorType, usize, *mut TensorBuffer) -> Status;
    destroy_tensor_buffer = "LiteRtDestroyTensorBuffer": fn(TensorBuffer);
    lock_tensor_buffer = "LiteRtLockTensorBuffer": fn(TensorBuffer, *mut *mut c_void, c_int) -> Status;
    unlock_tensor_buffer = "LiteRtUnlockTensorBuffer": fn(TensorBuffer) -> Status;
    run_compiled_model = "LiteRtRunCompiledModel": fn(CompiledModel, usize, usize, *mut TensorBuffer, usize, *mut TensorBuffer) -> Status;
}

/// `LiteRtStatus` as text (the library's own `LiteRtGetStatusString` is not exported).
pub fn status_text(status: Status) -> String {
    let name = match status {
        1 => "invalid argument",
        2 => "memory allocation failure",
        3 => "runtime failure",
        4 => "missing input tensor",
        5 => "unsupported",
        6 => "not found",
        7 => "timeout expired",
        8 => "wrong version",
        9 => "unknown error",
        10 => "already exists",
        500 => "file I/O error",
        501 => "invalid flatbuffer",
        502 => "dynamic loading error",
        503 => "serialization error",
        504 => "compilation error",
        1000 => "index out of bounds",
        5000 | 5001 => "shape inference failed",
        _ => "error",
    };
    format!("{name} (LiteRtStatus {status})")
}
