//! Errors of the spillover sinks.

use crate::sink_url::SinkUrl;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The batch breaks a rule the format relies on; a caller bug, not an
    /// outage: spilling it again will fail the same way.
    #[error("cannot spill this batch: {0}")]
    InvalidBatch(&'static str),
    #[error("{url} cannot hold spillover: use s3://BUCKET[/PREFIX] or file://PATH")]
    Unsupported { url: SinkUrl },
    /// Spillover objects are create-only: another writer's object already
    /// holds this key and would replay differently (a late write of a killed
    /// invocation, or a different copy already in quarantine). It is left
    /// as it is; nothing may be counted as landed.
    #[error("{location} already holds a different object; it is kept as it is")]
    Occupied { location: String },
    #[error("{location} does not exist")]
    NotFound { location: String },
    /// Not a complete spillover object of a version this build reads.
    #[error("{location} is not a readable spillover object: {why}")]
    Corrupt { location: String, why: String },
    /// `archive`'s destination must be a relative prefix of plain segments.
    #[error("invalid archive prefix {0:?}: use a relative path such as \"archive\"")]
    InvalidArchivePrefix(String),
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
    #[error("encoding JSON failed")]
    Encode(#[source] serde_json::Error),
    /// A blocking file task did not finish (runtime shutting down).
    #[error("the file task was cancelled")]
    Cancelled,
}
