//! Spillover: batches BigQuery would not take within the retry budget or the
//! invocation deadline are kept as objects (DESIGN.md, "Failure routing"),
//! so Kinesis can be told "done" and the shard keeps moving; `backfill`
//! replays them exactly once.
//!
//! Guarantees: `spill` returns only once the object is durably stored (S3
//! acknowledged the PUT, or the file was fsynced and linked into place);
//! the key depends only on the batch's table, stream, shard, positions and a
//! digest of the content it replays, so a retry of the same content finds
//! its object rather than adding a copy, and a retry that must spill the
//! same records differently gets a key of its own (see [`SpillKey`]).
//! Objects are create-only: nothing replaces an object a shard state lists.

mod batch;
mod digest;
mod error;
mod file;
pub mod format;
mod key;
mod s3;

pub use batch::{SpillReason, SpilledBatch, SpilledRecord};
pub use error::SpillError;
pub use file::FileSpill;
pub(crate) use file::write_atomic;
pub use key::{MARKER_SUFFIX, OBJECT_SUFFIX, SpillFilter, SpillKey};
pub use s3::S3Spill;

use std::sync::Arc;

use crate::delivery::store::StateStore;
use crate::sink_url::{SinkUrl, s3_client};

/// Keeps batches that could not be delivered, with their stream and offsets,
/// so `backfill` can replay them later without writing any row twice.
/// Implementations: [`S3Spill`], [`FileSpill`].
#[async_trait::async_trait]
pub trait SpillSink: Send + Sync {
    /// Stores `batch` under [`SpillKey::of`] it, only if that key is free; an
    /// object already there that replays the same ([`SpilledBatch::replays_as`])
    /// counts as stored.
    ///
    /// # Errors
    /// [`SpillError::InvalidBatch`] for an empty or unordered batch;
    /// [`SpillError::Occupied`] when a different object holds the key (only
    /// a digest collision, or a foreign object, can cause it); store
    /// errors otherwise (then nothing may be counted as landed).
    async fn spill(&self, batch: &SpilledBatch) -> Result<SpillKey, SpillError>;

    /// The objects matching `filter`, in replay order (markers, archived
    /// objects and foreign files are skipped).
    async fn list(&self, filter: &SpillFilter) -> Result<Vec<SpillKey>, SpillError>;

    /// # Errors
    /// [`SpillError::NotFound`], or [`SpillError::Corrupt`] for an object
    /// that is not a complete spillover object.
    async fn read(&self, key: &SpillKey) -> Result<SpilledBatch, SpillError>;

    /// Writes (or replaces) the JSON note beside `key`: the backfill records
    /// its PENDING stream here before committing it.
    async fn put_marker(
        &self,
        key: &SpillKey,
        marker: &serde_json::Value,
    ) -> Result<(), SpillError>;

    /// The note beside `key`, if any.
    async fn get_marker(&self, key: &SpillKey) -> Result<Option<serde_json::Value>, SpillError>;

    /// Removes the object and its marker; removing what is gone is not an error.
    async fn delete(&self, key: &SpillKey) -> Result<(), SpillError>;

    /// Moves the object and its marker to `{to}/{key}` under the same root
    /// (e.g. `to = "archive"` or `"quarantine"`), out of `list`'s sight, and
    /// returns the new location. Copy, then delete: the copy is create-only,
    /// and the same bytes already there (an earlier move that died before
    /// its delete) count as copied.
    ///
    /// # Errors
    /// [`SpillError::InvalidArchivePrefix`] unless `to` is a relative path
    /// of plain segments; [`SpillError::NotFound`] if the object is gone;
    /// [`SpillError::Occupied`] if different bytes hold the destination (the
    /// object then stays where it is).
    async fn archive(&self, key: &SpillKey, to: &str) -> Result<String, SpillError>;

    /// Reaches the store without changing it (for `kinesis-bigquery check`).
    async fn check(&self) -> Result<String, SpillError>;

    /// The full location of `key` (`s3://...` or `file://...`), for logs.
    fn location(&self, key: &SpillKey) -> String;

    /// The sink's root (`s3://BUCKET/PREFIX`, `file:///DIR`): what one
    /// backfill lease covers.
    fn root(&self) -> String;

    /// A compare-and-swap store under the root, for the backfill lease when
    /// the run has no state store (its keys are never spillover keys).
    fn lease_store(&self) -> Arc<dyn StateStore>;
}

/// Opens the sink `url` names: `s3://` or `file://`.
///
/// # Errors
/// [`SpillError::Unsupported`] for a queue URL.
pub fn open(url: &SinkUrl, aws: &aws_config::SdkConfig) -> Result<Arc<dyn SpillSink>, SpillError> {
    match url {
        SinkUrl::S3 { bucket, prefix } => {
            Ok(Arc::new(S3Spill::new(s3_client(aws), bucket.clone(), prefix.clone())))
        }
        SinkUrl::File { path } => Ok(Arc::new(FileSpill::new(path.clone()))),
        SinkUrl::Sqs { .. } => Err(SpillError::Unsupported { url: url.clone() }),
    }
}

/// Checks `archive`'s destination: relative, plain segments, not empty.
pub(crate) fn archive_prefix(to: &str) -> Result<&str, SpillError> {
    let trimmed = to.trim_matches('/');
    let plain = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('\\');
    if trimmed.is_empty() || to.starts_with('/') || !trimmed.split('/').all(plain) {
        return Err(SpillError::InvalidArchivePrefix(to.to_string()));
    }
    Ok(trimmed)
}
