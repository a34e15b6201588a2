//! Errors of the dead-letter sinks.

use crate::sink_url::SinkUrl;

/// A `send` that did not land every letter. The handler reports exactly the
/// records behind `failed` as not landed (DESIGN.md, invariant 5).
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// These letters (indices into the slice given to `send`, ascending) were
    /// not accepted; every other letter was.
    #[error("{} dead letter(s) not accepted, indices {failed:?}", failed.len())]
    Partial {
        failed: Vec<usize>,
        /// The first failure met, as a sample of why.
        #[source]
        cause: LetterError,
    },
    #[error("{url} cannot hold dead letters: use an SQS queue URL or file://PATH")]
    Unsupported { url: SinkUrl },
    #[error("{url} cannot hold oversized dead-letter payloads: use s3://BUCKET/PREFIX")]
    UnsupportedPayloadStore { url: SinkUrl },
    /// `check` could not reach the sink.
    #[error("dead-letter sink {location} is not reachable")]
    Unreachable {
        location: String,
        #[source]
        cause: LetterError,
    },
}

/// Why one letter (or one call carrying it) was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum LetterError {
    /// The SendMessageBatch call itself failed (queue missing, access denied,
    /// network) after the SDK's own retries.
    #[error("SQS call failed")]
    Sqs(#[source] std::sync::Arc<aws_sdk_sqs::Error>),
    /// The request entry could not be built (a required field missing).
    #[error("building the SQS request failed")]
    Build(#[from] aws_sdk_sqs::error::BuildError),
    /// SQS refused this entry of a batch.
    #[error("SQS refused the message: {code}: {message}")]
    Refused { code: String, message: String, sender_fault: bool },
    /// Writing the raw bytes of an oversized letter to S3 failed.
    #[error("storing the payload at {location} failed")]
    Payload {
        location: String,
        #[source]
        source: Box<aws_sdk_s3::Error>,
    },
    /// Even with the payload moved out, the message exceeds the limit.
    #[error("message is {bytes} bytes, over the {limit} byte limit")]
    TooLarge { bytes: usize, limit: usize },
    /// The message exceeds the limit and no payload store was configured.
    #[error("message is {bytes} bytes, over the {limit} byte limit, and no payload store is set")]
    NoPayloadStore { bytes: usize, limit: usize },
    #[error("writing {path} failed")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encoding the envelope failed")]
    Encode(#[from] serde_json::Error),
    /// A blocking write task did not finish (runtime shutting down).
    #[error("the write task was cancelled")]
    Cancelled,
}

impl LetterError {
    /// Worth another attempt: SQS said the fault was on its side.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Refused { sender_fault: false, .. })
    }
}
