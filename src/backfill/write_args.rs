//! How a CLI run (`backfill`, `redrive`) writes: the Lambda's batching and
//! retry variables as flags, read into the same types the Lambda uses, so a
//! run tuned by the function's environment writes as the function does.

use std::time::Duration;

use crate::batch::{BatchError, BatchLimits};
use crate::bigquery::AppenderOptions;
use crate::retry::RetryPolicy;

/// `BATCH_WINDOW_MS`'s default (`batch::BATCH_WINDOW`), for clap.
const DEFAULT_WINDOW_MS: u64 = crate::batch::BATCH_WINDOW.as_millis() as u64;

/// `RETRY_BUDGET_MS`'s default (`retry::DEFAULT_BUDGET`), for clap.
const DEFAULT_BUDGET_MS: u64 = crate::retry::DEFAULT_BUDGET.as_millis() as u64;

/// The request and retry flags `backfill` and `redrive` share.
#[derive(Clone, Debug, clap::Args)]
pub struct WriteArgs {
    /// AppendRows request size bound, as the Lambda's `BATCH_MAX_BYTES`.
    #[arg(long, env = "BATCH_MAX_BYTES", default_value_t = crate::batch::BATCH_MAX_BYTES)]
    pub max_request_bytes: usize,
    /// Rows per AppendRows request, as the Lambda's `BATCH_MAX_ROWS`.
    #[arg(long, env = "BATCH_MAX_ROWS", default_value_t = crate::batch::BATCH_MAX_ROWS)]
    pub max_rows: usize,
    /// How long a request's oldest row may wait for more while records are
    /// encoded and appended, in ms, as the Lambda's `BATCH_WINDOW_MS`.
    #[arg(long, env = "BATCH_WINDOW_MS", default_value_t = DEFAULT_WINDOW_MS)]
    pub batch_window_ms: u64,
    /// Total time transient BigQuery failures are retried, from the first
    /// one, in ms, as the Lambda's `RETRY_BUDGET_MS` (at most an hour).
    #[arg(
        long,
        env = "RETRY_BUDGET_MS",
        default_value_t = DEFAULT_BUDGET_MS,
        value_parser = clap::value_parser!(u64).range(0..=3_600_000)
    )]
    pub retry_budget_ms: u64,
    /// How long one object's appends may take before it is left behind.
    #[arg(long, default_value_t = 300)]
    pub append_timeout_secs: u64,
}

impl WriteArgs {
    /// The request limits.
    ///
    /// # Errors
    /// [`BatchError`] for a bound the service or the batcher cannot honour.
    pub fn limits(&self) -> Result<BatchLimits, BatchError> {
        BatchLimits::new(
            self.max_rows,
            self.max_request_bytes,
            Duration::from_millis(self.batch_window_ms),
        )
    }

    /// The appender's options: default pipelining, the retry budget given.
    pub fn appender(&self) -> AppenderOptions {
        let retry = RetryPolicy::with_budget(Duration::from_millis(self.retry_budget_ms));
        AppenderOptions { retry, ..AppenderOptions::default() }
    }

    pub fn append_timeout(&self) -> Duration {
        Duration::from_secs(self.append_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        write: WriteArgs,
    }

    #[test]
    fn the_retry_budget_and_request_limits_reach_the_writer() {
        let cli = Cli::try_parse_from([
            "run",
            "--retry-budget-ms",
            "1500",
            "--max-rows",
            "10",
            "--max-request-bytes",
            "1048576",
            "--batch-window-ms",
            "0",
        ])
        .expect("valid flags");
        let appender = cli.write.appender();
        assert_eq!(appender.retry, RetryPolicy::with_budget(Duration::from_millis(1500)));
        assert_eq!(
            appender.max_inflight_requests,
            AppenderOptions::default().max_inflight_requests
        );
        let limits = cli.write.limits().expect("valid limits");
        assert_eq!(limits, BatchLimits::new(10, 1_048_576, Duration::ZERO).expect("valid"));
    }

    #[test]
    fn a_retry_budget_past_an_hour_is_refused_by_name() {
        let err = Cli::try_parse_from(["run", "--retry-budget-ms", "3600001"])
            .err()
            .expect("past the bound");
        assert!(err.to_string().contains("--retry-budget-ms"), "{err}");
    }

    #[test]
    fn request_limits_the_service_cannot_take_are_an_error() {
        let cli = Cli::try_parse_from(["run", "--max-request-bytes", "20000000"]).expect("parses");
        assert!(matches!(cli.write.limits(), Err(BatchError::AboveService(20_000_000))));
    }
}
