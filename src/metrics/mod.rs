//! Observability: what an invocation did, told three ways from one count —
//! a JSON summary log line, CloudWatch Embedded Metric Format (EMF) lines,
//! and the `tracing` subscriber that writes both as JSON.
//!
//! Guarantee: nothing here prints configuration values or the environment;
//! the log filter keeps HTTP/gRPC libraries (which log headers, including
//! `authorization`) at `warn` unless the operator sets `RUST_LOG`.

mod emf;
mod logging;
mod summary;

pub use emf::{NAMESPACE, emf_line};
pub use logging::{LogOutput, init_logging};
pub use summary::InvocationSummary;
