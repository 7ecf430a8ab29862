//! Shared by the integration tests that run both inference backends.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real `libLiteRt.so` for the `litert` backend's tests: `$EDGE_AGENT_LITERT_LIB`
/// (scripts/test.sh sets it), else where scripts/fetch-litert.sh installs it by default.
/// Missing is a test failure, not a skip: CI must test both backends.
#[allow(dead_code)]
pub fn litert_library() -> PathBuf {
    if let Some(p) = std::env::var_os("EDGE_AGENT_LITERT_LIB").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_default();
    let default = cache
        .join("edge-a2i/litert")
        .join(format!("2.3.0-{}", std::env::consts::ARCH))
        .join("libLiteRt.so");
    assert!(
        default.is_file(),
        "the litert backend's tests need libLiteRt.so: run scripts/fetch-litert.sh \
         (or set EDGE_AGENT_LITERT_LIB to it)"
    );
    default
}
