//! Configuration: the only place that reads the environment (STYLE.md §2).
//!
//! [`Config::from_env`] runs once at cold start; everything downstream takes
//! `&Config` or the part it needs. Every problem is reported at once, each
//! naming its variable and the values it accepts.

#[cfg(test)]
mod cdc_tests;
mod delivery;
mod env;
mod error;
mod log_filter;
mod read;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod tests;

pub use delivery::Delivery;
pub use env::{
    Config, DEFAULT_BATCH_MAX_BYTES, DEFAULT_ENDPOINT, DEFAULT_MAX_TABLES,
    MAX_INFLIGHT_REQUESTS_LIMIT, MAX_INVOCATION_MS, RouteSettings,
};
pub use error::{ConfigError, Problem};
pub use log_filter::{LEVELS, LogFilter};

/// Whether the process runs under Lambda (the platform sets
/// `AWS_LAMBDA_RUNTIME_API` for custom runtimes), so the binary can pick
/// `lambda` mode without a subcommand, as a `bootstrap` must.
pub fn in_lambda_runtime() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some_and(|v| !v.is_empty())
}

/// Names of environment variables whose values are credentials, by the
/// conventions of AWS, Google and most tools: their values are masked in
/// every log line ([`crate::metrics::Redactor`]). Read here because this
/// module is the only one that reads the environment.
const CREDENTIAL_NAME_PARTS: &[&str] =
    &["SECRET", "TOKEN", "PASSWORD", "ACCESS_KEY", "API_KEY", "PRIVATE_KEY", "CREDENTIAL"];

/// The values of credential-looking environment variables (see
/// [`CREDENTIAL_NAME_PARTS`]), never logged, only used to mask logs.
pub fn credential_values() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| {
            let k = k.to_ascii_uppercase();
            CREDENTIAL_NAME_PARTS.iter().any(|part| k.contains(part))
        })
        .map(|(_, v)| v)
        .collect()
}
