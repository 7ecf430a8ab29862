//! Every check a package passes before anything of it is written where a model is
//! loaded from, in order, each refusal naming what was wrong:
//!
//! 1. **size** against the job document's and the configured limit (a wrong size is
//!    cheaper to see than a wrong hash);
//! 2. **sha256** of the whole file against the job document's (a corrupt download is
//!    told apart from a forged one);
//! 3. **signature** by a pinned key (minisign; nothing unsigned is even unpacked);
//! 4. **contents**: a plain tar whose every file matches `package.toml`;
//! 5. **name and version**: the job document's must be the package's; the version
//!    must be newer than the highest installed, or a signed rollback of it;
//! 6. **validity window**: `not_before` / `expires`.
//!
//! Loading the model and its self-test come after, on the running backend.

use protocol::package::{self, Admission, PackageContents, PackageError, TrustedKey};
use protocol::sha256_hex;

/// What the job document (or the drop folder) says the package is.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub name: Option<String>,
    pub version: Option<String>,
}

/// A package that passed every check.
#[derive(Debug)]
pub struct Verified {
    pub contents: PackageContents,
    pub admission: Admission,
    pub key_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the package is {actual} bytes, the job says {expected}")]
    Size { expected: u64, actual: u64 },
    #[error("the package's sha256 is {actual}, the job says {expected}")]
    Sha256 { expected: String, actual: String },
    #[error("the job names {field} {expected:?}, the package is {actual:?}")]
    Mismatch {
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    Package(#[from] PackageError),
}

/// Runs checks 1 to 6 on a package's bytes.
pub fn verify(
    bytes: &[u8],
    signature: &str,
    expected: &Expected,
    keys: &[TrustedKey],
    max_bytes: u64,
    highest_installed: Option<&semver::Version>,
    now_ms: i64,
) -> Result<Verified, VerifyError> {
    let actual = bytes.len() as u64;
    if let Some(size) = expected.size {
        if size != actual {
            return Err(VerifyError::Size {
                expected: size,
                actual,
            });
        }
    }
    if actual > max_bytes {
        return Err(PackageError::TooLarge {
            size: actual,
            limit: max_bytes,
        }
        .into());
    }
    if let Some(sha) = &expected.sha256 {
        let actual = sha256_hex(bytes);
        if &actual != sha {
            return Err(VerifyError::Sha256 {
                expected: sha.clone(),
                actual,
            });
        }
    }
    let key_id = package::verify(bytes, signature, keys)?.key_id.clone();
    let contents = package::parse(bytes, max_bytes)?;
    let m = &contents.manifest;
    for (field, want, have) in [
        ("name", &expected.name, &m.name),
        ("version", &expected.version, &m.version),
    ] {
        if let Some(want) = want {
            if want != have {
                return Err(VerifyError::Mismatch {
                    field,
                    expected: want.clone(),
                    actual: have.clone(),
                });
            }
        }
    }
    let admission = package::admit(m, highest_installed)?;
    m.check_validity(now_ms)?;
    Ok(Verified {
        contents,
        admission,
        key_id,
    })
}
