//! Signed model packages: what a fleet admin publishes and a device installs.
//!
//! A package is one uncompressed POSIX tar file (so `tar tf` lists it) of plain files:
//!
//! ```text
//! package.toml          PackageManifest: name, version, parent, validity, and the
//!                       size and sha256 of every other file (always the first entry)
//! model.toml            the model manifest (input spec, self-test vector, lineage =
//!                       the training summary), and the files it names:
//! model.tflite, labels.txt, model.selftest.f32
//! ```
//!
//! The signature is minisign's (Ed25519 over the BLAKE2b-512 hash of the whole tar
//! file), kept beside the package as `<file>.minisig` and carried in IoT job
//! documents; an operator checks it with the stock tool:
//! `minisign -Vm dogs-1.0.1.tar -p fleet.pub`. Its trusted comment (signed too) names
//! the package: `edge-a2i package dogs-mobilenetv2 1.0.1`.
//!
//! Versions are semantic versions (`MAJOR.MINOR.PATCH`, semver.org) so that "only goes
//! up" has one meaning: a device refuses a package that is not newer than the highest
//! version it has installed, unless the package is a signed rollback naming that
//! version in `rollback_of` ([`admit`]).
//!
//! Pure: bytes in, bytes out; time is passed in. Writing files is the caller's job.

use std::collections::BTreeSet;
use std::io::Read;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::json::sha256_hex;
use crate::timestamp::parse_rfc3339_utc;

/// The only package format this build reads.
pub const PACKAGE_FORMAT: u32 = 1;
/// The package manifest's name inside the tar file.
pub const PACKAGE_MANIFEST: &str = "package.toml";
/// A package file's name must be at most this long (and fit a plain tar header).
const MAX_NAME: usize = 100;
/// Most files a package may hold besides its manifest.
const MAX_FILES: usize = 16;

/// `package.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageManifest {
    pub format: u32,
    /// The model's name (the model manifest's `model.name`).
    pub name: String,
    /// A semantic version, higher than every version the device had before.
    pub version: String,
    /// The version this one was fine-tuned from, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_version: Option<String>,
    /// RFC 3339, UTC.
    pub created: String,
    /// A device refuses the package before this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// A device refuses the package after this time (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Set on a rollback package: the version it undoes. A device whose highest
    /// installed version is exactly this accepts the package although it is older.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<String>,
    /// The model manifest's file name, one of `files`.
    pub model_manifest: String,
    /// Every other file of the package, in tar order.
    pub files: Vec<PackageFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageFile {
    /// A plain file name (letters, digits, `.`, `_`, `-`; no directories).
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the contents.
    pub sha256: String,
}

/// Why a package (or its signature, or its place in the version order) was refused.
#[derive(Debug, Error)]
pub enum PackageError {
    #[error("the package is not a readable tar file: {0}")]
    Archive(String),
    #[error("the package's first entry must be {PACKAGE_MANIFEST}, found {0:?}")]
    ManifestNotFirst(String),
    #[error("{PACKAGE_MANIFEST} is not valid: {0}")]
    Manifest(String),
    #[error("package entry {name:?} is refused: {reason}")]
    Entry { name: String, reason: String },
    #[error("package file {path}: {problem}")]
    File { path: String, problem: String },
    #[error("the package is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: u64, limit: u64 },
    #[error("package version {version} is not newer than the installed {highest} (and it is not a rollback of {highest})")]
    NotNewer { version: String, highest: String },
    #[error("package {name} {version} is not valid before {not_before}")]
    NotYetValid {
        name: String,
        version: String,
        not_before: String,
    },
    #[error("package {name} {version} expired at {expires}")]
    Expired {
        name: String,
        version: String,
        expires: String,
    },
    #[error("the signature does not parse: {0}")]
    SignatureSyntax(String),
    #[error(
        "the package is signed by key {key_id}, which is not among the trusted keys ({trusted})"
    )]
    UnknownKey { key_id: String, trusted: String },
    #[error("the signature by key {key_id} does not match the package: {reason}")]
    BadSignature { key_id: String, reason: String },
    #[error("key: {0}")]
    Key(String),
}

/// The parsed semantic version of a package manifest's `version`-like field.
pub fn parse_version(field: &str, value: &str) -> Result<semver::Version, PackageError> {
    semver::Version::parse(value).map_err(|e| {
        PackageError::Manifest(format!(
            "{field} {value:?} is not a semantic version (MAJOR.MINOR.PATCH): {e}; devices compare versions to refuse downgrades"
        ))
    })
}

impl PackageManifest {
    pub fn parse(text: &str) -> Result<Self, PackageError> {
        let m: PackageManifest =
            toml::from_str(text).map_err(|e| PackageError::Manifest(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a package manifest always serializes")
    }

    /// The checks every reader makes: format, versions, timestamps, file names.
    pub fn validate(&self) -> Result<(), PackageError> {
        let bad = |m: String| Err(PackageError::Manifest(m));
        if self.format != PACKAGE_FORMAT {
            return bad(format!(
                "format {} is not supported (this build reads format {PACKAGE_FORMAT})",
                self.format
            ));
        }
        if self.name.trim().is_empty() {
            return bad("name is empty".into());
        }
        self.semver()?;
        for (field, value) in [
            ("parent_version", &self.parent_version),
            ("rollback_of", &self.rollback_of),
        ] {
            if let Some(v) = value {
                parse_version(field, v)?;
            }
        }
        for (field, value) in [
            ("created", Some(&self.created)),
            ("not_before", self.not_before.as_ref()),
            ("expires", self.expires.as_ref()),
        ] {
            if let Some(v) = value {
                if let Err(e) = parse_rfc3339_utc(v) {
                    return bad(format!("{field} {v:?} is not an RFC 3339 time: {e}"));
                }
            }
        }
        if self.files.len() > MAX_FILES {
            return bad(format!("{} files, at most {MAX_FILES}", self.files.len()));
        }
        let mut seen = BTreeSet::new();
        for f in &self.files {
            check_name(&f.path).map_err(|reason| PackageError::Entry {
                name: f.path.clone(),
                reason,
            })?;
            if f.path == PACKAGE_MANIFEST || !seen.insert(f.path.as_str()) {
                return bad(format!("file {} is listed twice", f.path));
            }
            if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad(format!("file {}: sha256 is not 64 hex digits", f.path));
            }
        }
        if !seen.contains(self.model_manifest.as_str()) {
            return bad(format!(
                "model_manifest {:?} is not one of the files",
                self.model_manifest
            ));
        }
        Ok(())
    }

    /// `version` as a semantic version.
    pub fn semver(&self) -> Result<semver::Version, PackageError> {
        parse_version("version", &self.version)
    }

    /// Refuses a package outside its `not_before` .. `expires` window.
    pub fn check_validity(&self, now_ms: i64) -> Result<(), PackageError> {
        if let Some(nb) = &self.not_before {
            if now_ms < parse_rfc3339_utc(nb).unwrap_or(i64::MIN) {
                return Err(PackageError::NotYetValid {
                    name: self.name.clone(),
                    version: self.version.clone(),
                    not_before: nb.clone(),
                });
            }
        }
        if let Some(exp) = &self.expires {
            if now_ms >= parse_rfc3339_utc(exp).unwrap_or(i64::MAX) {
                return Err(PackageError::Expired {
                    name: self.name.clone(),
                    version: self.version.clone(),
                    expires: exp.clone(),
                });
            }
        }
        Ok(())
    }

    /// The minisign trusted comment for this package.
    pub fn trusted_comment(&self) -> String {
        format!("edge-a2i package {} {}", self.name, self.version)
    }
}

/// How a package may be installed over what the device has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Newer than anything installed.
    Upgrade,
    /// Older, but a signed rollback of exactly the highest installed version.
    Rollback,
}

/// Anti-rollback: a package is admitted when its version is higher than the highest
/// the device has installed, or when it is a rollback naming that version.
pub fn admit(
    manifest: &PackageManifest,
    highest_installed: Option<&semver::Version>,
) -> Result<Admission, PackageError> {
    let version = manifest.semver()?;
    let Some(highest) = highest_installed else {
        return Ok(Admission::Upgrade);
    };
    if &version > highest {
        return Ok(Admission::Upgrade);
    }
    let rollback_of = manifest
        .rollback_of
        .as_deref()
        .map(|v| parse_version("rollback_of", v))
        .transpose()?;
    if rollback_of.as_ref() == Some(highest) && &version < highest {
        return Ok(Admission::Rollback);
    }
    Err(PackageError::NotNewer {
        version: manifest.version.clone(),
        highest: highest.to_string(),
    })
}

/// A package read from its tar file, every file checked against the manifest.
#[derive(Debug, Clone)]
pub struct PackageContents {
    pub manifest: PackageManifest,
    /// `(name, bytes)` in the manifest's order.
    pub files: Vec<(String, Vec<u8>)>,
}

/// Builds the tar file of a package: `package.toml` first, then `files` in order, each
/// with mode 0644, owner 0 and mtime 0 so the same inputs give the same bytes.
/// `manifest.files` is filled in here from `files`.
pub fn build(
    mut manifest: PackageManifest,
    files: &[(String, Vec<u8>)],
) -> Result<Vec<u8>, PackageError> {
    manifest.files = files
        .iter()
        .map(|(path, bytes)| PackageFile {
            path: path.clone(),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        })
        .collect();
    manifest.validate()?;
    let mut out = tar::Builder::new(Vec::new());
    let text = manifest.to_toml();
    let entries = std::iter::once((PACKAGE_MANIFEST, text.as_bytes()))
        .chain(files.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    for (name, bytes) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        out.append_data(&mut header, name, bytes)
            .map_err(|e| PackageError::Archive(e.to_string()))?;
    }
    out.into_inner()
        .map_err(|e| PackageError::Archive(e.to_string()))
}

/// Reads a package's tar file. Refused: a file larger than `limit` bytes, any entry
/// that is not a plain regular file with a plain name (no directories, links, `..`
/// or absolute paths: nothing in a package can write outside where it is unpacked),
/// a first entry other than `package.toml`, a file the manifest does not list or
/// lists with another size or sha256, and a listed file that is missing.
pub fn parse(tar_bytes: &[u8], limit: u64) -> Result<PackageContents, PackageError> {
    if tar_bytes.len() as u64 > limit {
        return Err(PackageError::TooLarge {
            size: tar_bytes.len() as u64,
            limit,
        });
    }
    let archive_error = |e: std::io::Error| PackageError::Archive(e.to_string());
    let mut archive = tar::Archive::new(tar_bytes);
    let mut manifest: Option<PackageManifest> = None;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().map_err(archive_error)? {
        let mut entry = entry.map_err(archive_error)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let refuse = |reason: &str| PackageError::Entry {
            name: name.clone(),
            reason: reason.to_string(),
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(refuse(&format!(
                "it is a {:?}, only regular files are allowed",
                entry.header().entry_type()
            )));
        }
        check_name(&name).map_err(|r| refuse(&r))?;
        let size = entry.size();
        let Some(m) = &manifest else {
            if name != PACKAGE_MANIFEST {
                return Err(PackageError::ManifestNotFirst(name));
            }
            let mut text = String::new();
            entry
                .by_ref()
                .take(64 * 1024)
                .read_to_string(&mut text)
                .map_err(|e| PackageError::Manifest(e.to_string()))?;
            manifest = Some(PackageManifest::parse(&text)?);
            continue;
        };
        let Some(listed) = m.files.iter().find(|f| f.path == name) else {
            return Err(refuse("it is not listed in package.toml"));
        };
        if files.iter().any(|(n, _)| *n == name) {
            return Err(refuse("it appears twice"));
        }
        if size != listed.size {
            return Err(PackageError::File {
                path: name,
                problem: format!("{size} bytes, package.toml says {}", listed.size),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes).map_err(archive_error)?;
        let actual = sha256_hex(&bytes);
        if actual != listed.sha256 {
            return Err(PackageError::File {
                path: name,
                problem: format!("sha256 is {actual}, package.toml says {}", listed.sha256),
            });
        }
        files.push((name, bytes));
    }
    let manifest = manifest.ok_or_else(|| PackageError::ManifestNotFirst("nothing".into()))?;
    let mut ordered = Vec::with_capacity(manifest.files.len());
    for listed in &manifest.files {
        let Some(i) = files.iter().position(|(n, _)| *n == listed.path) else {
            return Err(PackageError::File {
                path: listed.path.clone(),
                problem: "listed in package.toml but not in the package".into(),
            });
        };
        ordered.push(files.swap_remove(i));
    }
    Ok(PackageContents {
        manifest,
        files: ordered,
    })
}

/// Where a package's signature lives: `PACKAGE.minisig` beside it (minisign's own
/// naming, which `minisign -Vm PACKAGE` looks for).
pub fn signature_path(package: &std::path::Path) -> std::path::PathBuf {
    let mut s = package.as_os_str().to_owned();
    s.push(".minisig");
    std::path::PathBuf::from(s)
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a file name must be 1 to {MAX_NAME} bytes"));
    }
    if name.starts_with('.') {
        return Err("a file name must not start with '.'".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(
            "a file name may hold only letters, digits, '.', '_' and '-' (no directories)".into(),
        );
    }
    Ok(())
}

#[path = "package_sign.rs"]
mod sign;
pub use sign::{generate_keypair, sign, trusted_comment, verify, KeyPair, TrustedKey};

#[cfg(test)]
#[path = "package_tests.rs"]
mod tests;
