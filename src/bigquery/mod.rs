//! The BigQuery Storage Write API client: the channel, credentials, the unary
//! write-stream RPCs and the pipelined AppendRows connection.
//!
//! It sits between the micro-batcher ([`crate::batch`]), which cuts rows into
//! requests, and the delivery protocol ([`crate::delivery`]), which decides
//! offsets and what an outcome means for exactly-once. It guarantees that every
//! request gets an outcome that claims no more than the service said: written,
//! not written, or in doubt; and it never reorders requests on a stream.

mod append;
mod auth;
mod client;
mod endpoint;
mod error;
mod pipeline;
mod tables;
mod wire;

pub use crate::retry::{Attempts, Decision, RetryPolicy};
pub(crate) use append::TRACE_ID;
pub use append::{
    AppendOutcome, AppendRequest, AppenderOptions, RowError, WriterSchemaRows, first_request_len,
};
pub use auth::{AuthError, AuthMode};
pub use client::{CommitOutcome, DEFAULT_ENDPOINT, WriteClient};
pub use endpoint::{Endpoint, EndpointError};
pub use error::{
    AppendError, Class, Classify, ClientError, RpcError, Scope, ServerStatus, classify,
};
pub use pipeline::Appender;
pub use tables::{DEFAULT_REST_ENDPOINT, TableResource, TablesClient, TablesError};
pub use wire::WriterSchema;

/// Re-exported so callers name stream kinds and views without digging into `pb`.
pub use crate::pb::storage::{TableSchema, WriteStream, WriteStreamView, write_stream};
