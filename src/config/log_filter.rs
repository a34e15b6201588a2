//! `LOG_LEVEL` and `RUST_LOG` → one `tracing` filter directive.

use std::fmt;
use tracing_subscriber::EnvFilter;

/// The validated filter the subscriber is built with.
///
/// `LOG_LEVEL` sets the level of this crate only; dependencies stay at
/// `warn`, because at `debug`/`trace` HTTP and gRPC libraries log request
/// headers, and an `authorization` header is a credential. `RUST_LOG`, when
/// set, is taken verbatim instead — the operator's explicit choice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFilter(String);

/// `LOG_LEVEL` values, most to least verbose.
pub const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl LogFilter {
    /// From `LOG_LEVEL` (one of [`LEVELS`], any case).
    pub fn from_level(level: &str) -> Result<Self, String> {
        let level = level.to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            return Err(format!("one of {}", LEVELS.join(", ")));
        }
        // The runtime's own lines (invocation spans) are useful up to info only.
        let runtime = if matches!(level.as_str(), "trace" | "debug") { "info" } else { &level };
        Ok(Self(format!("warn,kinesis_bigquery={level},lambda_runtime={runtime}")))
    }

    /// From `RUST_LOG`: an `EnvFilter` directive list, checked now so a typo
    /// fails the cold start instead of silently logging nothing.
    pub fn from_directives(directives: &str) -> Result<Self, String> {
        EnvFilter::builder().parse(directives).map(|_| Self(directives.to_string())).map_err(|e| {
            format!("tracing filter directives like `info,kinesis_bigquery=debug` ({e})")
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The filter itself. Infallible: the directives were checked when built.
    pub fn env_filter(&self) -> EnvFilter {
        EnvFilter::builder().parse_lossy(&self.0)
    }
}

impl Default for LogFilter {
    fn default() -> Self {
        Self("warn,kinesis_bigquery=info,lambda_runtime=info".into())
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
