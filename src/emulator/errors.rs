//! Errors of the emulator, and how they travel on the wire.
//!
//! The service reports failures two ways (fact sheet §2.4): in-stream, as a
//! `google.rpc.Status` inside `AppendRowsResponse.error`, and at connection
//! level, as the gRPC status that ends a call. In both cases the
//! `StorageError` that names the exact cause travels packed as a
//! `google.protobuf.Any` in `Status.details` — at connection level inside the
//! `grpc-status-details-bin` trailer, which is what `Status::with_details`
//! writes. [`Failure`] is that pair (status + optional `StorageError`), built
//! once and rendered either way.

use bytes::Bytes;
use prost::Message;
use tonic::Code;

use crate::pb::rpc;
use crate::pb::storage::{StorageError, storage_error::StorageErrorCode};
use crate::table::TableNameError;

/// `type_url` of a packed `StorageError`, as the service and the clients use it.
pub const STORAGE_ERROR_TYPE_URL: &str =
    "type.googleapis.com/google.cloud.bigquery.storage.v1.StorageError";

/// Errors of the emulator's own API (start, table management, read-back).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind {what} on {addr}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("table {0} not found")]
    TableNotFound(String),
    #[error("write stream {0} not found")]
    StreamNotFound(String),
    #[error("table {0} already exists")]
    TableExists(String),
    /// `If-Match` named an etag the table no longer has: someone changed it since.
    #[error("table {0} changed since its etag was read")]
    EtagMismatch(String),
    #[error("invalid table schema: {0}")]
    InvalidSchema(String),
    #[error("a stored row does not decode: {0}")]
    StoredRow(String),
    #[error(transparent)]
    TableName(#[from] TableNameError),
}

/// One failure as the service would report it: a gRPC code, a message, and
/// the `StorageError` detail when the service sends one.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    pub storage: Option<StorageError>,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), storage: None }
    }

    /// A failure carrying a `StorageError` about `entity` (a stream or table name).
    pub fn storage(
        code: Code,
        storage_code: StorageErrorCode,
        entity: &str,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        let storage = StorageError {
            code: storage_code as i32,
            entity: entity.to_string(),
            error_message: message.clone(),
        };
        Self { code, message: format!("{message} Entity: {entity}"), storage: Some(storage) }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidArgument, message)
    }

    /// The `google.rpc.Status` form: used in-stream and, encoded, as the
    /// `grpc-status-details-bin` payload.
    pub fn to_rpc_status(&self) -> rpc::Status {
        let details = self
            .storage
            .iter()
            .map(|e| prost_types::Any {
                type_url: STORAGE_ERROR_TYPE_URL.to_string(),
                value: e.encode_to_vec(),
            })
            .collect();
        rpc::Status { code: self.code as i32, message: self.message.clone(), details }
    }

    /// The connection-level form: a tonic status whose details trailer holds
    /// the encoded `google.rpc.Status` (so clients can unpack `StorageError`).
    pub fn to_status(&self) -> tonic::Status {
        if self.storage.is_none() {
            return tonic::Status::new(self.code, self.message.clone());
        }
        let details = Bytes::from(self.to_rpc_status().encode_to_vec());
        tonic::Status::with_details(self.code, self.message.clone(), details)
    }
}

impl From<Failure> for tonic::Status {
    fn from(f: Failure) -> Self {
        f.to_status()
    }
}

/// Unpacks the `StorageError` from a status's details trailer, for tests and
/// clients that want to assert the exact cause.
pub fn storage_error_of(status: &tonic::Status) -> Option<StorageError> {
    let rpc = rpc::Status::decode(status.details()).ok()?;
    storage_error_in(&rpc)
}

/// Unpacks the `StorageError` from an in-stream `google.rpc.Status`.
pub fn storage_error_in(status: &rpc::Status) -> Option<StorageError> {
    status
        .details
        .iter()
        .find(|a| a.type_url == STORAGE_ERROR_TYPE_URL)
        .and_then(|a| StorageError::decode(a.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_error_round_trips_through_status_details() {
        let f = Failure::storage(
            Code::NotFound,
            StorageErrorCode::StreamNotFound,
            "projects/p/datasets/d/tables/t/streams/x",
            "Stream not found.",
        );
        let status = f.to_status();
        assert_eq!(status.code(), Code::NotFound);
        let e = storage_error_of(&status).unwrap();
        assert_eq!(e.code, StorageErrorCode::StreamNotFound as i32);
        assert_eq!(e.entity, "projects/p/datasets/d/tables/t/streams/x");
        assert_eq!(storage_error_in(&f.to_rpc_status()).unwrap(), e);
    }
}
