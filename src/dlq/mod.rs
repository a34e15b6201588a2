//! Dead-letter queue: records that can never become rows (DESIGN.md,
//! "Failure routing") leave the pipeline here, one message each, so the shard
//! keeps moving and nothing is silently dropped.
//!
//! A letter counts as landed only once the sink acknowledged it (SQS accepted
//! the message, or the NDJSON line was fsynced); `send` names every letter
//! that did not land, so the handler reports exactly those to Kinesis.

mod cause;
mod envelope;
mod error;
mod file;
mod sqs;

pub use cause::Cause;
pub use envelope::{DeadLetter, ENVELOPE_VERSION, MAX_ERROR_BYTES, Payload, Reason};
pub(crate) use envelope::{base64_bytes, table_name};
pub use error::{DlqError, LetterError};
pub use file::FileDeadLetter;
pub use sqs::{PayloadStore, SqsDeadLetter};

use std::sync::Arc;

use crate::sink_url::{SinkUrl, s3_client, sqs_client};

/// Where dead letters go. Implementations: [`SqsDeadLetter`], [`FileDeadLetter`].
#[async_trait::async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Delivers one message per letter.
    ///
    /// # Errors
    /// [`DlqError::Partial`] listing the indices of `letters` that were not
    /// accepted; all others were. A retry may send those again.
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DlqError>;

    /// Reaches the sink without sending anything (for `kinesis-bigquery
    /// check`) and says what it found.
    ///
    /// # Errors
    /// [`DlqError::Unreachable`] when the queue or directory is not usable.
    async fn check(&self) -> Result<String, DlqError>;

    /// The sink's URL, for logs.
    fn location(&self) -> String;
}

/// Opens the sink `url` names: an SQS queue URL or `file://`.
/// `payloads` (`s3://bucket/prefix`, e.g. the spillover bucket) receives the
/// raw bytes of letters too large for an SQS message; without it such letters
/// fail.
///
/// # Errors
/// [`DlqError::Unsupported`] for `s3://` (S3 is not a queue) and
/// [`DlqError::UnsupportedPayloadStore`] when `payloads` is not `s3://`.
pub fn open(
    url: &SinkUrl,
    payloads: Option<&SinkUrl>,
    aws: &aws_config::SdkConfig,
) -> Result<Arc<dyn DeadLetterSink>, DlqError> {
    match url {
        SinkUrl::Sqs { queue_url } => {
            let store = match payloads {
                None => None,
                Some(SinkUrl::S3 { bucket, prefix }) => {
                    Some(PayloadStore::new(s3_client(aws), bucket.clone(), prefix.clone()))
                }
                Some(other) => {
                    return Err(DlqError::UnsupportedPayloadStore { url: other.clone() });
                }
            };
            Ok(Arc::new(SqsDeadLetter::new(sqs_client(aws), queue_url.clone(), store)))
        }
        SinkUrl::File { path } => Ok(Arc::new(FileDeadLetter::new(path.clone()))),
        SinkUrl::S3 { .. } => Err(DlqError::Unsupported { url: url.clone() }),
    }
}
