//! The per-shard state store of the exactly-once protocol (DESIGN.md,
//! "Exactly-once: the invariants"): an object store with compare-and-swap.
//!
//! Bytes in, bytes out — the delivery module owns the state's JSON. What this
//! module guarantees is the CAS: `create` succeeds for exactly one writer of
//! a new key, `replace` only for the writer holding the current [`Version`];
//! every loser gets [`StoreError::Conflict`] and must give its batch back to
//! Kinesis, never write over the winner (invariant 4).

mod file;
mod s3;

pub use file::FileStateStore;
pub use s3::S3StateStore;

use std::fmt;
use std::sync::Arc;

use crate::sink_url::{SinkUrl, s3_client};

/// The version a value was read or written at: the S3 ETag, or the file
/// store's counter. Opaque: only ever handed back to `replace`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer created or changed the value first (S3 answered 412
    /// Precondition Failed, or the file's version moved on). Reload, or give
    /// the batch back; never retry the same write.
    #[error("{location} was changed by another writer")]
    Conflict { location: String },
    #[error("invalid state key {key:?}: {why}")]
    InvalidKey { key: String, why: &'static str },
    #[error("{url} cannot hold state: use s3://BUCKET[/PREFIX] or file://DIRECTORY")]
    Unsupported { url: SinkUrl },
    /// The stored object is not something this store wrote.
    #[error("{location} is not a state object: {why}")]
    Corrupt { location: String, why: String },
    #[error("{location}: I/O failed")]
    Io {
        location: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: S3 call failed")]
    S3 {
        location: String,
        #[source]
        source: Box<aws_sdk_s3::Error>,
    },
    /// A blocking file task did not finish (runtime shutting down).
    #[error("the file task was cancelled")]
    Cancelled,
}

/// A key-value store with compare-and-swap. Implementations:
/// [`S3StateStore`], [`FileStateStore`].
///
/// Keys are relative paths of plain segments (`table/stream/shard.json`).
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The current value and its version; `None` if the key was never created.
    async fn load(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError>;

    /// Creates `key` if it does not exist.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if it exists (someone else created it).
    async fn create(&self, key: &str, bytes: &[u8]) -> Result<Version, StoreError>;

    /// Replaces `key` if it is still at `expected`.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the value changed since `expected` was read,
    /// or was deleted.
    async fn replace(
        &self,
        key: &str,
        bytes: &[u8],
        expected: &Version,
    ) -> Result<Version, StoreError>;

    /// Reaches the store without changing state (for `kinesis-bigquery check`).
    async fn check(&self) -> Result<String, StoreError>;

    /// The full location of `key`, for logs.
    fn location(&self, key: &str) -> String;
}

/// Opens the store `url` names: `s3://` or `file://`.
///
/// # Errors
/// [`StoreError::Unsupported`] for a queue URL.
pub fn open(url: &SinkUrl, aws: &aws_config::SdkConfig) -> Result<Arc<dyn StateStore>, StoreError> {
    match url {
        SinkUrl::S3 { bucket, prefix } => {
            Ok(Arc::new(S3StateStore::new(s3_client(aws), bucket.clone(), prefix.clone())))
        }
        SinkUrl::File { path } => Ok(Arc::new(FileStateStore::new(path.clone()))),
        SinkUrl::Sqs { .. } => Err(StoreError::Unsupported { url: url.clone() }),
    }
}

/// Keys are relative paths of plain segments, so no key reaches outside the
/// store's root, and none ends in the file store's `.lock`.
pub(crate) fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |why| Err(StoreError::InvalidKey { key: key.to_string(), why });
    if key.is_empty() || key.starts_with('/') {
        return bad("must be a non-empty relative path");
    }
    if key.split('/').any(|s| s.is_empty() || s == "." || s == "..") || key.contains('\\') {
        return bad("segments must be non-empty and not '.' or '..'");
    }
    if key.ends_with(file::LOCK_SUFFIX) {
        return bad("must not end in .lock");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_the_root() {
        for good in ["t/s/shardId-1.json", "x"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", "/abs", "a//b", "a/../b", "..", "a\\b", "k.lock"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}
