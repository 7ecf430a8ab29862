//! The A2I `output.json` document and where it is written.
//!
//! The document is [`protocol::a2i::HumanLoopOutput`], the one type the relay's
//! collector reads from real A2I and the local service writes.
//!
//! [`OutputSink`] is the boundary to the object store: one method, `put_output`. The
//! relay's S3 client implements it ([`crate::s3_sink`], for an S3 server); [`DirOutputSink`] writes a directory
//! laid out like buckets (`<root>/<bucket>/<key>`), atomically, for local mode and tests.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use super::persist::write_atomically;

/// An object in the store: bucket and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputKey {
    pub bucket: String,
    pub key: String,
}

impl OutputKey {
    /// Parses `s3://bucket/key`.
    pub fn from_s3_uri(uri: &str) -> Result<Self, OutputSinkError> {
        let (bucket, key) = protocol::json::parse_s3_uri(uri)
            .ok_or_else(|| OutputSinkError::BadKey(uri.to_owned()))?;
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl std::fmt::Display for OutputKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputSinkError {
    #[error("not a usable object location: {0:?}")]
    BadKey(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("object store refused {key}: {message}")]
    Store { key: String, message: String },
}

pub type PutFuture<'a> = Pin<Box<dyn Future<Output = Result<(), OutputSinkError>> + Send + 'a>>;

/// Where completed loops' `output.json` documents go (S3 in production).
pub trait OutputSink: Send + Sync {
    /// Stores `bytes` at `key`, replacing what is there; readers never see half an object.
    fn put_output<'a>(&'a self, key: &'a OutputKey, bytes: Vec<u8>) -> PutFuture<'a>;
}

/// Writes objects to `<root>/<bucket>/<key>` with temp file + fsync + rename.
#[derive(Debug, Clone)]
pub struct DirOutputSink {
    root: PathBuf,
}

impl DirOutputSink {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file an object lives in; refuses keys that would escape the root.
    pub fn path_of(&self, key: &OutputKey) -> Result<PathBuf, OutputSinkError> {
        let bad = || OutputSinkError::BadKey(key.to_string());
        let mut path = self.root.clone();
        for part in std::iter::once(key.bucket.as_str()).chain(key.key.split('/')) {
            if part.is_empty() || part == "." || part == ".." || part.contains('\\') {
                return Err(bad());
            }
            path.push(part);
        }
        Ok(path)
    }
}

impl OutputSink for DirOutputSink {
    fn put_output<'a>(&'a self, key: &'a OutputKey, bytes: Vec<u8>) -> PutFuture<'a> {
        Box::pin(async move {
            let path = self.path_of(key)?;
            tokio::task::spawn_blocking(move || {
                write_atomically(&path, &bytes)
                    .map_err(|source| OutputSinkError::Io { path, source })
            })
            .await
            .map_err(|e| OutputSinkError::Store {
                key: key.to_string(),
                message: e.to_string(),
            })?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn parses_s3_uris_into_bucket_and_key() {
        let k = OutputKey::from_s3_uri("s3://b/flow/2024/01/02/03/04/05/x/output.json").unwrap();
        assert_eq!(k.bucket, "b");
        assert_eq!(k.key, "flow/2024/01/02/03/04/05/x/output.json");
        assert_eq!(
            k.to_string(),
            "s3://b/flow/2024/01/02/03/04/05/x/output.json"
        );
        for bad in ["https://b/k", "s3://b", "s3:///k", "s3://b/"] {
            assert!(OutputKey::from_s3_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dir_sink_refuses_keys_that_escape_its_root() {
        let sink = DirOutputSink::new("/srv/objects");
        for key in ["../etc/passwd", "a//b", "a/./b", "a/.."] {
            let k = OutputKey {
                bucket: "b".into(),
                key: key.into(),
            };
            assert!(sink.path_of(&k).is_err(), "{key}");
        }
        let k = OutputKey {
            bucket: "b".into(),
            key: "f/x/output.json".into(),
        };
        assert_eq!(
            sink.path_of(&k).unwrap(),
            Path::new("/srv/objects/b/f/x/output.json")
        );
    }

    #[tokio::test]
    async fn dir_sink_writes_bucket_then_key_and_replaces_whole_objects() {
        let root = tempfile::tempdir().unwrap();
        let sink = DirOutputSink::new(root.path());
        let k = OutputKey::from_s3_uri("s3://bucket/flow/loop/output.json").unwrap();
        sink.put_output(&k, b"first".to_vec()).await.unwrap();
        sink.put_output(&k, b"second".to_vec()).await.unwrap();
        let path = root.path().join("bucket/flow/loop/output.json");
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
    }
}
