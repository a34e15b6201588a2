//! Why an invocation fails as a whole, and how Lambda is told.

use super::response::UnnamedRecord;
use crate::source::SourceError;

/// The invocation cannot give a truthful partial batch response. Lambda then
/// retries the whole batch (bisecting it when `BisectBatchOnFunctionError`
/// is on), which is the correct answer in every case below.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event itself is malformed (no shard id, sequence number or ARN).
    #[error("the Kinesis event cannot be read")]
    Source(#[from] SourceError),
    /// A record to report has no sequence number to report it by.
    #[error(transparent)]
    Unnamed(#[from] UnnamedRecord),
}

impl HandlerError {
    /// Whether a retry could succeed. A malformed event stays malformed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Source(_) | Self::Unnamed(_) => false,
        }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    /// `error_type` is `Retryable` or `Permanent` (STYLE.md §3); the message
    /// carries the whole source chain.
    fn from(e: HandlerError) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        let kind = if e.is_retryable() { "Retryable" } else { "Permanent" };
        lambda_runtime::Diagnostic { error_type: kind.into(), error_message: message }
    }
}
