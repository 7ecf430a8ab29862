//! Choosing the backend at start-up. `tflite` is always there; `litert` needs
//! `libLiteRt.so`. `auto` tries LiteRT (the configured library, else
//! `$EDGE_AGENT_LITERT_LIB`, else beside the executable, the package's library
//! directory, and where `scripts/fetch-litert.sh` installs it), keeps it only if the
//! model's self-test passes on it, and otherwise falls back to `tflite` with the
//! reason: a short one when no library is installed at all (the usual case on a
//! device that only has `tflite`), the whole story when one was found and failed. An
//! explicit `litert` that cannot be used is a start-up error that says why.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::litert_backend::{LitertBackend, LitertError};
use super::litert_probe;
use super::{self_test, BackendOptions, InferenceBackend, TfliteBackend};
use crate::model::{ModelError, ModelPackage};

/// Environment variable naming the LiteRT library (`libLiteRt.so`).
pub const LITERT_LIBRARY_ENV: &str = "EDGE_AGENT_LITERT_LIB";

/// The library's file name, as shipped in the ai-edge-litert wheel.
const LITERT_FILE: &str = "libLiteRt.so";

/// Where a packaged install keeps its private libraries.
const PACKAGE_LIBRARY_DIR: &str = "/usr/lib/edge-a2i";

/// The install directory `scripts/fetch-litert.sh` honours; by default
/// `${XDG_CACHE_HOME:-$HOME/.cache}/edge-a2i/litert`. It puts the library in a
/// `<version>-<arch>/` folder there.
const FETCHED_LIBRARY_DIR_ENV: &str = "EDGE_A2I_LITERT_DIR";

/// The fallback reason when no LiteRT library is installed anywhere it is looked for.
pub const LITERT_NOT_INSTALLED: &str = "LiteRT not installed (scripts/fetch-litert.sh installs it)";

/// Why LiteRT is not used.
enum NotUsed {
    /// Nothing configured and no library in any default place: the list of places.
    NotInstalled(String),
    /// A library was named or found, and failed (one sentence).
    Failed(String),
}

/// Which inference backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[derive(clap::ValueEnum)]
pub enum BackendKind {
    /// LiteRT if it loads and passes the model's self-test, else tflite.
    #[default]
    Auto,
    /// TF Lite 1.15, compiled in.
    Tflite,
    /// LiteRT/XNNPACK from libLiteRt.so; an error if it cannot be used.
    Litert,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Auto => "auto",
            BackendKind::Tflite => "tflite",
            BackendKind::Litert => "litert",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BackendKind::Auto),
            "tflite" => Ok(BackendKind::Tflite),
            "litert" => Ok(BackendKind::Litert),
            other => Err(format!(
                "unknown backend {other:?} (expected auto, tflite or litert)"
            )),
        }
    }
}

/// The backend setting of a command line or config file. In TOML (embeddable as a
/// table of the daemon's config):
/// ```toml
/// backend = "auto"                                   # "auto" | "tflite" | "litert"
/// litert_library = "/usr/lib/edge-a2i/libLiteRt.so"  # optional
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendChoice {
    #[serde(default, rename = "backend")]
    pub kind: BackendKind,
    /// `libLiteRt.so` to use; default: `$EDGE_AGENT_LITERT_LIB`, beside the
    /// executable, then `/usr/lib/edge-a2i/`.
    #[serde(default, rename = "litert_library")]
    pub library: Option<PathBuf>,
}

/// Which backend runs and why: for the start-up log line, status reports and
/// `classify --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendSelection {
    /// "tflite" or "litert".
    pub backend: &'static str,
    /// What was asked for.
    pub requested: BackendKind,
    /// The LiteRT library in use, if any.
    pub library: Option<PathBuf>,
    /// One sentence: why this backend (and, after a fallback, what went wrong).
    pub reason: String,
    /// True when `auto` wanted LiteRT and fell back to tflite.
    pub fell_back: bool,
}

/// A backend that passed the model's self-test, and how it was chosen.
pub struct LoadedBackend {
    pub backend: Box<dyn InferenceBackend>,
    pub selection: BackendSelection,
}

impl From<LoadedBackend> for Box<dyn InferenceBackend> {
    fn from(loaded: LoadedBackend) -> Self {
        loaded.backend
    }
}

impl std::fmt::Debug for LoadedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedBackend")
            .field("selection", &self.selection)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The model does not fit its manifest, or fails its self-test, on the backend.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// `backend = "litert"` was asked for and LiteRT cannot be used.
    #[error("the litert backend was requested but cannot be used: {reason} (use backend \"auto\" to fall back to tflite)")]
    LitertUnavailable { reason: String },
}

/// Builds the default choice (`auto`) of backend for a verified package and runs the
/// model's self-test on it.
pub fn load_backend(
    package: &ModelPackage,
    options: &BackendOptions,
) -> Result<LoadedBackend, BackendError> {
    select_backend(package, options, &BackendChoice::default())
}

/// Builds the backend `choice` asks for and runs the model's self-test on it.
pub fn select_backend(
    package: &ModelPackage,
    options: &BackendOptions,
    choice: &BackendChoice,
) -> Result<LoadedBackend, BackendError> {
    let requested = choice.kind;
    let tflite = |reason: String, fell_back: bool| -> Result<LoadedBackend, BackendError> {
        let mut backend: Box<dyn InferenceBackend> =
            Box::new(TfliteBackend::new(package, options)?);
        self_test(package, backend.as_mut())?;
        Ok(LoadedBackend {
            backend,
            selection: BackendSelection {
                backend: "tflite",
                requested,
                library: None,
                reason,
                fell_back,
            },
        })
    };
    if requested == BackendKind::Tflite {
        return tflite("backend = \"tflite\" was requested".into(), false);
    }
    match try_litert(package, options, choice) {
        Ok((backend, library)) => Ok(LoadedBackend {
            backend,
            selection: BackendSelection {
                backend: "litert",
                requested,
                reason: format!(
                    "LiteRT/XNNPACK from {} passed the model's self-test",
                    library.display()
                ),
                library: Some(library),
                fell_back: false,
            },
        }),
        Err(NotUsed::NotInstalled(why) | NotUsed::Failed(why))
            if requested == BackendKind::Litert =>
        {
            Err(BackendError::LitertUnavailable { reason: why })
        }
        Err(NotUsed::NotInstalled(_)) => tflite(LITERT_NOT_INSTALLED.to_owned(), true),
        Err(NotUsed::Failed(why)) => tflite(format!("LiteRT not used: {why}"), true),
    }
}

/// LiteRT with the model's self-test passed, or why not (one sentence).
fn try_litert(
    package: &ModelPackage,
    options: &BackendOptions,
    choice: &BackendChoice,
) -> Result<(Box<dyn InferenceBackend>, PathBuf), NotUsed> {
    // LiteRT ships (as the ai-edge-litert wheels) for x86_64 and aarch64 only.
    if !cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        return Err(NotUsed::Failed(format!(
            "there is no LiteRT build for {} (only x86_64 and aarch64); the compiled-in TF Lite runs here",
            std::env::consts::ARCH
        )));
    }
    let library = find_litert_library(choice.library.as_deref())?;
    if choice.kind == BackendKind::Auto {
        // A library that crashes must not take the agent down: try it in a child first.
        litert_probe::probe(&library, &package.manifest_path, options.threads)
            .map_err(NotUsed::Failed)?;
    }
    let mut backend = match LitertBackend::new(&library, package, options) {
        Ok(b) => b,
        Err(LitertError::Library(why)) => return Err(NotUsed::Failed(why)),
        Err(LitertError::Model(e)) => return Err(NotUsed::Failed(e.to_string())),
    };
    self_test(package, &mut backend).map_err(|e| NotUsed::Failed(e.to_string()))?;
    Ok((Box::new(backend), library))
}

/// The child's side of [`litert_probe`]: loads `library` and runs the model's
/// self-test on it, in this process; why not, in one sentence.
pub fn probe_litert_here(
    package: &ModelPackage,
    options: &BackendOptions,
    library: &Path,
) -> Result<(), String> {
    let choice = BackendChoice {
        kind: BackendKind::Litert,
        library: Some(library.to_path_buf()),
    };
    match try_litert(package, options, &choice) {
        Ok(_) => Ok(()),
        Err(NotUsed::NotInstalled(why) | NotUsed::Failed(why)) => Err(why),
    }
}

/// The library to try: the configured one, else `$EDGE_AGENT_LITERT_LIB`, else the
/// first default location that exists.
fn find_litert_library(configured: Option<&Path>) -> Result<PathBuf, NotUsed> {
    if let Some(path) = configured {
        return existing(path, "the configured litert_library").map_err(NotUsed::Failed);
    }
    if let Some(path) = std::env::var_os(LITERT_LIBRARY_ENV).filter(|p| !p.is_empty()) {
        return existing(Path::new(&path), &format!("${LITERT_LIBRARY_ENV}"))
            .map_err(NotUsed::Failed);
    }
    let candidates = litert_library_candidates();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        NotUsed::NotInstalled(format!(
            "{LITERT_FILE} not found (looked in: {}; set ${LITERT_LIBRARY_ENV} or run scripts/fetch-litert.sh)",
            tried.join(", ")
        ))
    })
}

fn existing(path: &Path, what: &str) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(format!("{what} {} does not exist", path.display()))
    }
}

/// The default places `libLiteRt.so` is looked for when none is configured:
/// beside the executable, the package's library directory, then where
/// `scripts/fetch-litert.sh` installs it (newest version first).
pub fn litert_library_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        out.push(dir.join(LITERT_FILE));
    }
    out.push(Path::new(PACKAGE_LIBRARY_DIR).join(LITERT_FILE));
    if let Some(dir) = fetched_library_dir() {
        out.extend(fetched_libraries(&dir, std::env::consts::ARCH));
    }
    out
}

/// `scripts/fetch-litert.sh`'s install directory: `$EDGE_A2I_LITERT_DIR`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/edge-a2i/litert`.
fn fetched_library_dir() -> Option<PathBuf> {
    let var = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(FETCHED_LIBRARY_DIR_ENV).or_else(|| {
        var("XDG_CACHE_HOME")
            .or_else(|| var("HOME").map(|h| h.join(".cache")))
            .map(|cache| cache.join("edge-a2i").join("litert"))
    })
}

/// The libraries under `dir` in `<version>-<arch>/` folders for `arch`, the highest
/// version first (the folder itself when there is none: the message names it).
fn fetched_libraries(dir: &Path, arch: &str) -> Vec<PathBuf> {
    let suffix = format!("-{arch}");
    let mut found: Vec<(semver::Version, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = semver::Version::parse(name.strip_suffix(&suffix)?).ok()?;
            Some((version, e.path().join(LITERT_FILE)))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    if found.is_empty() {
        return vec![dir.join(format!("<version>{suffix}")).join(LITERT_FILE)];
    }
    found.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_parses_from_toml_with_defaults() {
        let c: BackendChoice = toml::from_str("").unwrap();
        assert_eq!(c, BackendChoice::default());
        assert_eq!(c.kind, BackendKind::Auto);
        let c: BackendChoice =
            toml::from_str("backend = \"litert\"\nlitert_library = \"/opt/libLiteRt.so\"").unwrap();
        assert_eq!(c.kind, BackendKind::Litert);
        assert_eq!(c.library.as_deref(), Some(Path::new("/opt/libLiteRt.so")));
    }

    #[test]
    fn choice_refuses_unknown_fields_and_backends() {
        let err = toml::from_str::<BackendChoice>("backend = \"gpu\"").unwrap_err();
        assert!(err.to_string().contains("gpu"), "{err}");
        let err = toml::from_str::<BackendChoice>("libary = \"/x\"").unwrap_err();
        assert!(err.to_string().contains("libary"), "{err}");
    }

    #[test]
    fn configured_library_that_does_not_exist_is_named() {
        let Err(NotUsed::Failed(err)) =
            find_litert_library(Some(Path::new("/nonexistent/libLiteRt.so")))
        else {
            panic!("a configured library that is missing is a failure, named");
        };
        assert_eq!(
            err,
            "the configured litert_library /nonexistent/libLiteRt.so does not exist"
        );
    }

    #[test]
    fn libraries_fetched_by_the_script_are_found_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for folder in ["2.3.0-x86_64", "2.10.1-x86_64", "2.4.0-aarch64", "notes"] {
            std::fs::create_dir(dir.path().join(folder)).unwrap();
        }
        assert_eq!(
            fetched_libraries(dir.path(), "x86_64"),
            [
                dir.path().join("2.10.1-x86_64/libLiteRt.so"),
                dir.path().join("2.3.0-x86_64/libLiteRt.so")
            ]
        );
        assert_eq!(
            fetched_libraries(&dir.path().join("none"), "aarch64"),
            [dir.path().join("none/<version>-aarch64/libLiteRt.so")]
        );
    }
}
