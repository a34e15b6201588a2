//! Errors of the Storage Write client and their classification.
//!
//! Every failure the service can produce ends up here as a [`ServerStatus`]
//! (gRPC code, message, and the `StorageError` packed in `Status.details`),
//! and [`classify`] decides once, in one table, whether it is worth another
//! attempt. The retry policy ([`crate::retry`]) and the append pipeline act on
//! that class only; nothing else matches on codes or message text.

use prost::Message;
use tonic::Code;

use crate::pb::rpc;
use crate::pb::storage::StorageError;
use crate::pb::storage::storage_error::StorageErrorCode;

use super::auth::AuthError;

/// `Any.type_url` of a `StorageError` in `google.rpc.Status.details` (fact sheet §2.4).
const STORAGE_ERROR_TYPE_URL: &str =
    "type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError";

/// A status the service (or the transport on its behalf) answered with.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerStatus {
    pub code: Code,
    pub message: String,
    /// The BigQuery-specific reason, when the service packed one into the details.
    pub storage: Option<StorageError>,
}

impl ServerStatus {
    /// From a status that ended an RPC: its details are in `grpc-status-details-bin`,
    /// which tonic hands over as the bytes of a serialized `google.rpc.Status`.
    pub fn from_tonic(status: &tonic::Status) -> Self {
        let storage = rpc::Status::decode(status.details()).ok().and_then(|s| storage_error(&s));
        Self { code: status.code(), message: status.message().to_string(), storage }
    }

    /// From an in-stream `AppendRowsResponse.error`.
    pub fn from_rpc(status: &rpc::Status) -> Self {
        Self {
            code: Code::from_i32(status.code),
            message: status.message.clone(),
            storage: storage_error(status),
        }
    }

    /// The `StorageErrorCode`, if the details carried a known one.
    pub fn storage_code(&self) -> Option<StorageErrorCode> {
        self.storage.as_ref().and_then(|s| StorageErrorCode::try_from(s.code).ok())
    }

    /// The 600 s idle close (fact sheet §2.8, §7.1): expected, reopen lazily, and
    /// not counted against the retry budget.
    pub fn is_idle_close(&self) -> bool {
        self.code == Code::Aborted && self.message.contains("inactive")
    }
}

impl std::fmt::Display for ServerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)?;
        if let Some(code) = self.storage_code() {
            write!(f, " ({})", code.as_str_name())?;
        }
        Ok(())
    }
}

fn storage_error(status: &rpc::Status) -> Option<StorageError> {
    status
        .details
        .iter()
        .find(|any| any.type_url == STORAGE_ERROR_TYPE_URL)
        .and_then(|any| StorageError::decode(any.value.as_slice()).ok())
}

pub use crate::retry::{Class, Classify};

/// Where a status was seen: the same code means different things in each place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `AppendRowsResponse.error`: the connection stays open (fact sheet §2.4).
    InStream,
    /// The AppendRows call itself ended: everything in flight is unanswered.
    Connection,
    /// A unary RPC (CreateWriteStream, GetWriteStream, Finalize, BatchCommit, FlushRows).
    Unary,
}

/// The single classification table (fact sheet §1.4, §2.4, §6, §7).
pub fn classify(status: &ServerStatus, scope: Scope) -> Class {
    match status.storage_code() {
        // The rows at this offset exist: an earlier attempt of ours landed (§2.2).
        Some(StorageErrorCode::OffsetAlreadyExists) => return Class::AlreadyWritten,
        // The proto marks KMS_SERVICE_ERROR retryable: the key service had a hiccup.
        Some(StorageErrorCode::KmsServiceError) => return Class::Transient,
        _ => {}
    }
    if scope == Scope::Unary {
        // GAPIC service config (§1.4): unary calls retry only these three.
        return match status.code {
            Code::Unavailable | Code::DeadlineExceeded => Class::Transient,
            Code::ResourceExhausted => Class::Throttled,
            _ => Class::Permanent,
        };
    }
    match status.code {
        // Not an error; never reaches here from a success, kept total.
        Code::Ok => Class::Permanent,
        // Our own cancellation or an h2 CANCEL from a proxy: nothing was decided.
        Code::Cancelled => Class::Transient,
        // In-stream UNKNOWN is the server's own verdict (only Java retries it); at the
        // connection level tonic reports resets and unclassified h2/IO failures as UNKNOWN.
        Code::Unknown => match scope {
            Scope::Connection => Class::Transient,
            _ => Class::Permanent,
        },
        // Malformed request, bad rows, too large (§7.2): the same bytes fail again.
        Code::InvalidArgument => Class::Permanent,
        // A server-side timeout: the next attempt may be faster.
        Code::DeadlineExceeded => Class::Transient,
        // Table or stream gone: retrying cannot bring it back.
        Code::NotFound => Class::Permanent,
        // Offset below the end on an offset append: the rows are there (§2.2, §6).
        Code::AlreadyExists => Class::AlreadyWritten,
        // IAM says no; a retry will not change it.
        Code::PermissionDenied => Class::Permanent,
        // Quota or throughput exceeded (§7.5): back off longer than for a blip.
        Code::ResourceExhausted => Class::Throttled,
        // Stream finalized / wrong state; Go retries it, but the state does not heal.
        Code::FailedPrecondition => Class::Permanent,
        // Idle close (§2.8), "aborted because of prior failures" (§2.2): resend in order.
        Code::Aborted => Class::Transient,
        // Offset above the end: rows are missing; the caller must resolve, not us (§6).
        Code::OutOfRange => Class::Permanent,
        // The method is not implemented here; it will not be on the next try.
        Code::Unimplemented => Class::Permanent,
        // The proto lists INTERNAL as retryable for AppendRows (§2.4).
        Code::Internal => Class::Transient,
        // Draining, overloaded, restarting (§2.8, §7.5, §7.8): reconnect and resend.
        Code::Unavailable => Class::Transient,
        // Data loss is not something a retry repairs.
        Code::DataLoss => Class::Permanent,
        // Credentials rejected: fix the configuration.
        Code::Unauthenticated => Class::Permanent,
    }
}

/// Why opening the client failed; nothing has been sent yet.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("endpoint {endpoint:?} is not usable")]
    Endpoint {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("Application Default Credentials could not be loaded")]
    Credentials(#[source] google_cloud_auth::build_errors::Error),
}

/// A unary RPC failed after the retries the policy allowed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum RpcError {
    #[error("{method} failed: {status}")]
    Status { method: &'static str, status: ServerStatus },
    #[error("{method}: no credentials")]
    Auth {
        method: &'static str,
        #[source]
        source: AuthError,
    },
    #[error("{method}: response lacks {field}")]
    MissingField { method: &'static str, field: &'static str },
}

impl RpcError {
    /// The service's status, if it answered one.
    pub fn status(&self) -> Option<&ServerStatus> {
        match self {
            Self::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The gRPC code, if the service answered one.
    pub fn code(&self) -> Option<Code> {
        self.status().map(|s| s.code)
    }
}

impl Classify for RpcError {
    fn class(&self) -> Class {
        match self {
            Self::Status { status, .. } => classify(status, Scope::Unary),
            Self::Auth { source, .. } => source.class(),
            Self::MissingField { .. } => Class::Permanent,
        }
    }
}

/// Why one AppendRows request did not succeed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AppendError {
    /// The service answered this request with an error; its rows were not written.
    #[error("append rejected: {0}")]
    Rejected(ServerStatus),
    /// The AppendRows call ended (or could not open) before this request was answered.
    #[error("AppendRows connection lost: {0}")]
    Connection(ServerStatus),
    /// No credentials to open a connection.
    #[error("no credentials for AppendRows")]
    Auth(#[source] AuthError),
    /// The caller's deadline passed while this request was unanswered.
    #[error("deadline passed before an answer")]
    DeadlineExceeded,
    /// The service answered something the protocol does not allow.
    #[error("AppendRows protocol violation: {0}")]
    Protocol(&'static str),
    /// The request's rows are not in the format of the appender's writer schema.
    #[error("rows are not in the writer schema's format (proto vs arrow)")]
    FormatMismatch,
}

impl AppendError {
    /// The service's status, if there is one.
    pub fn status(&self) -> Option<&ServerStatus> {
        match self {
            Self::Rejected(s) | Self::Connection(s) => Some(s),
            _ => None,
        }
    }
}

impl Classify for AppendError {
    fn class(&self) -> Class {
        match self {
            Self::Rejected(s) => classify(s, Scope::InStream),
            Self::Connection(s) => classify(s, Scope::Connection),
            Self::Auth(e) => e.class(),
            // No time is left: another attempt cannot happen.
            Self::DeadlineExceeded => Class::Permanent,
            // A fresh connection resynchronizes request and response order.
            Self::Protocol(_) => Class::Transient,
            Self::FormatMismatch => Class::Permanent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    fn status(code: Code, storage: Option<StorageErrorCode>) -> ServerStatus {
        ServerStatus {
            code,
            message: "m".into(),
            storage: storage.map(|c| StorageError {
                code: c as i32,
                entity: String::new(),
                error_message: String::new(),
            }),
        }
    }

    #[test_case(Code::Aborted, Scope::InStream => Class::Transient)]
    #[test_case(Code::Unavailable, Scope::Connection => Class::Transient)]
    #[test_case(Code::Internal, Scope::InStream => Class::Transient)]
    #[test_case(Code::Cancelled, Scope::Connection => Class::Transient)]
    #[test_case(Code::DeadlineExceeded, Scope::InStream => Class::Transient)]
    #[test_case(Code::ResourceExhausted, Scope::InStream => Class::Throttled)]
    #[test_case(Code::AlreadyExists, Scope::InStream => Class::AlreadyWritten)]
    #[test_case(Code::InvalidArgument, Scope::InStream => Class::Permanent)]
    #[test_case(Code::OutOfRange, Scope::InStream => Class::Permanent)]
    #[test_case(Code::NotFound, Scope::Connection => Class::Permanent)]
    #[test_case(Code::PermissionDenied, Scope::Connection => Class::Permanent)]
    #[test_case(Code::FailedPrecondition, Scope::InStream => Class::Permanent)]
    #[test_case(Code::Unknown, Scope::InStream => Class::Permanent)]
    #[test_case(Code::Unknown, Scope::Connection => Class::Transient)]
    #[test_case(Code::Unavailable, Scope::Unary => Class::Transient)]
    #[test_case(Code::DeadlineExceeded, Scope::Unary => Class::Transient)]
    #[test_case(Code::ResourceExhausted, Scope::Unary => Class::Throttled)]
    #[test_case(Code::Aborted, Scope::Unary => Class::Permanent)]
    #[test_case(Code::Internal, Scope::Unary => Class::Permanent)]
    fn codes(code: Code, scope: Scope) -> Class {
        classify(&status(code, None), scope)
    }

    #[test]
    fn storage_error_overrides_code() {
        let s = status(Code::InvalidArgument, Some(StorageErrorCode::OffsetAlreadyExists));
        assert_eq!(classify(&s, Scope::InStream), Class::AlreadyWritten);
        let s = status(Code::FailedPrecondition, Some(StorageErrorCode::KmsServiceError));
        assert_eq!(classify(&s, Scope::Unary), Class::Transient);
    }

    #[test]
    fn decodes_storage_error_from_trailer_details() {
        let se = StorageError {
            code: StorageErrorCode::StreamFinalized as i32,
            entity: "s".into(),
            error_message: "finalized".into(),
        };
        let details = rpc::Status {
            code: Code::InvalidArgument as i32,
            message: "x".into(),
            details: vec![prost_types::Any {
                type_url: STORAGE_ERROR_TYPE_URL.into(),
                value: se.encode_to_vec(),
            }],
        };
        let t =
            tonic::Status::with_details(Code::InvalidArgument, "x", details.encode_to_vec().into());
        let s = ServerStatus::from_tonic(&t);
        assert_eq!(s.storage_code(), Some(StorageErrorCode::StreamFinalized));
        assert_eq!(s.storage, Some(se));
        let garbage = tonic::Status::with_details(Code::Internal, "x", vec![0xff, 0x01].into());
        assert_eq!(ServerStatus::from_tonic(&garbage).storage, None);
    }

    #[test]
    fn idle_close_is_recognized() {
        let mut s = status(Code::Aborted, None);
        s.message = "Closing the stream because it has been inactive for 600 seconds".into();
        assert!(s.is_idle_close());
        assert!(!status(Code::Aborted, None).is_idle_close());
    }
}
