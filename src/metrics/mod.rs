//! Observability: what an invocation did, told three ways from one count —
//! a JSON summary log line, CloudWatch Embedded Metric Format (EMF) lines,
//! and the `tracing` subscriber that writes both as JSON.
//!
//! Guarantee: no credential in any log line at any level. Nothing here
//! prints configuration values or the environment; `LOG_LEVEL` keeps
//! libraries at `warn`; and every line is scrubbed of credential values and
//! shapes on its way out ([`Redactor`]), for when `RUST_LOG=trace` turns the
//! libraries' own tracing on.

mod emf;
mod logging;
mod redact;
mod summary;

pub use emf::{NAMESPACE, emf_line};
pub use logging::{LogOutput, init_logging};
pub use redact::{RedactingWriter, Redactor};
pub use summary::InvocationSummary;
