//! Configuration: the only place that reads the environment (STYLE.md §2).
//!
//! [`Config::from_env`] runs once at cold start; everything downstream takes
//! `&Config` or the part it needs. Every problem is reported at once, each
//! naming its variable and the values it accepts.

mod env;
mod error;
mod log_filter;
mod read;
#[cfg(test)]
mod tests;

pub use env::{
    BatchSettings, Config, DEFAULT_BATCH_MAX_BYTES, DEFAULT_ENDPOINT, MAX_INFLIGHT_REQUESTS_LIMIT,
    MAX_INVOCATION_MS,
};
pub use error::{ConfigError, Problem};
pub use log_filter::{LEVELS, LogFilter};

/// Whether the process runs under Lambda (the platform sets
/// `AWS_LAMBDA_RUNTIME_API` for custom runtimes), so the binary can pick
/// `lambda` mode without a subcommand, as a `bootstrap` must.
pub fn in_lambda_runtime() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty())
}
