//! `kinesis-bigquery backfill`: the flags, and the clients and sinks they
//! name, built once.

use super::options::{BackfillOptions, Filter};
use super::run::BackfillDeps;
use super::write_args::WriteArgs;
use crate::batch::BatchError;
use crate::bigquery::{ClientError, DEFAULT_ENDPOINT, Endpoint, WriteClient};
use crate::config::Delivery;

use crate::cdc::{CdcSettings, FieldPath};
use crate::delivery::WriteMode;
use crate::delivery::store::{self, StoreError};
use crate::dlq::{self, DlqError};
use crate::rows::{EncoderOptions, RowFormat, UnknownFields};
use crate::sink_url::{SinkUrl, SinkUrlError};
use crate::spill::{self, SpillError};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// Replay spillover objects into BigQuery, exactly once.
#[derive(Clone, Debug, clap::Args)]
pub struct BackfillArgs {
    /// Where the Lambda spilled: `s3://BUCKET/PREFIX` or `file:///DIR` (its `SPILL_URL`).
    pub spill_url: String,
    /// The Lambda's `WRITE_MODE`. With `exactly_once` only the spillover
    /// objects the shard state lists are replayed (`--state` is required).
    #[arg(long, env = "WRITE_MODE", default_value = "exactly_once", value_parser = parse_mode)]
    pub write_mode: WriteMode,
    /// The Lambda's `STATE_URL` (`s3://BUCKET/PREFIX` or `file:///DIR`). It
    /// also holds the run's lease; without it the lease goes under the
    /// spill root.
    #[arg(long, env = "STATE_URL")]
    pub state: Option<String>,
    /// Dead-letter queue for records that still cannot become rows: an SQS
    /// queue URL or `file:///PATH.ndjson`. Without it such objects are left behind.
    #[arg(long, env = "DLQ_URL")]
    pub dlq: Option<String>,
    /// `s3://BUCKET/PREFIX` for dead letters too large for an SQS message
    /// (stored under `PREFIX/dead-letter-payloads/`); by default the spill
    /// URL when it is `s3://`.
    #[arg(long)]
    pub dlq_payloads: Option<String>,
    /// With `--write-mode cdc`: the Lambda's `CDC_CHANGE_TYPE_FIELD`.
    #[arg(long, env = "CDC_CHANGE_TYPE_FIELD", value_parser = parse_field)]
    pub cdc_change_type_field: Option<FieldPath>,
    /// With `--write-mode cdc`: the Lambda's `CDC_SEQUENCE_FIELD`.
    #[arg(long, env = "CDC_SEQUENCE_FIELD", value_parser = parse_field)]
    pub cdc_sequence_field: Option<FieldPath>,
    /// The Storage Write API endpoint (`http://HOST:PORT` for the emulator).
    #[arg(long, env = "BIGQUERY_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: Endpoint,
    /// Row format, as the Lambda's `ROW_FORMAT`.
    #[arg(long, env = "ROW_FORMAT", default_value = "proto", value_parser = parse_format)]
    pub format: RowFormat,
    /// As the Lambda's `UNKNOWN_FIELDS`: `reject` dead-letters a record with a
    /// field the table lacks, `ignore` drops the field.
    #[arg(long, env = "UNKNOWN_FIELDS", default_value = "reject", value_parser = parse_unknown)]
    pub unknown_fields: UnknownFields,
    /// Read and encode every object and count; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Objects replayed at once (each on its own PENDING stream).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Only objects of this shard (repeatable), e.g. `shardId-000000000001`.
    #[arg(long = "shard")]
    pub shards: Vec<String>,
    /// Only objects spilled at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Only objects spilled before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// Move replayed objects under this prefix (relative to the spill root)
    /// instead of deleting them.
    #[arg(long)]
    pub archive_to: Option<String>,
    /// Delete orphans (objects the shard state does not list and has moved
    /// past) instead of moving them under `quarantine/`.
    #[arg(long)]
    pub delete_orphans: bool,
    /// Seconds the run's lease on the spillover root holds without renewal
    /// (renewed every third of it; a crashed run's lease expires after it).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u64).range(3..=86_400))]
    pub lease_secs: u64,
    #[command(flatten)]
    pub write: WriteArgs,
}

fn parse_format(s: &str) -> Result<RowFormat, String> {
    s.parse()
}

fn parse_mode(s: &str) -> Result<WriteMode, String> {
    s.parse()
}

fn parse_field(s: &str) -> Result<FieldPath, String> {
    s.parse()
}

fn parse_unknown(s: &str) -> Result<UnknownFields, String> {
    s.parse()
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("bad sink URL")]
    Url(#[from] SinkUrlError),
    #[error("opening the spillover")]
    Spill(#[from] SpillError),
    #[error("opening the dead-letter queue")]
    Dlq(#[from] DlqError),
    #[error("WRITE_MODE=exactly_once needs the Lambda's state store: pass --state (or STATE_URL)")]
    StateRequired,
    #[error("opening the state store")]
    State(#[from] StoreError),
    #[error("request limits")]
    Limits(#[from] BatchError),
    #[error("connecting to BigQuery")]
    Client(#[from] ClientError),
}

impl BackfillArgs {
    pub fn options(&self) -> BackfillOptions {
        BackfillOptions {
            dry_run: self.dry_run,
            concurrency: usize::from(self.concurrency),
            filter: Filter { shards: self.shards.clone(), since: self.since, until: self.until },
            archive_to: self.archive_to.clone(),
            delete_orphans: self.delete_orphans,
            lease: Some(Duration::from_secs(self.lease_secs)),
            crash_at: None,
        }
    }

    /// Opens the spillover, the dead-letter queue and the BigQuery client.
    ///
    /// # Errors
    /// [`SetupError`] naming what could not be opened.
    pub async fn deps(&self) -> Result<BackfillDeps, SetupError> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let state_url = self.state.as_deref().map(str::parse::<SinkUrl>).transpose()?;
        // The Lambda's own rule: exactly-once cannot run without its store.
        let delivery =
            Delivery::new(self.write_mode, state_url.clone()).ok_or(SetupError::StateRequired)?;
        let state = match (&delivery, &state_url) {
            (Delivery::ExactlyOnce { state }, _) => Some(store::open(state, &aws)?),
            // A CDC Lambda keeps no shard state: a state store given here
            // gates nothing and holds only the run's lease.
            (Delivery::Cdc, Some(url)) => Some(store::open(url, &aws)?),
            // At-least-once keeps no state either; the lease goes under the
            // spill root (a state store here would make the run exactly-once).
            (Delivery::AtLeastOnce | Delivery::Cdc, _) => None,
        };
        let spill_url = self.spill_url.parse::<SinkUrl>()?;
        let spill = spill::open(&spill_url, &aws)?;
        // The payload store puts its objects under `dead-letter-payloads/`.
        let payloads = match (&self.dlq_payloads, &spill_url) {
            (Some(url), _) => Some(url.parse::<SinkUrl>()?),
            (None, SinkUrl::S3 { .. }) => Some(spill_url.clone()),
            (None, _) => None,
        };
        let dlq = match &self.dlq {
            Some(url) => Some(dlq::open(&url.parse::<SinkUrl>()?, payloads.as_ref(), &aws)?),
            None => None,
        };
        let client = WriteClient::connect(&self.endpoint).await?;
        Ok(BackfillDeps {
            client,
            state,
            spill,
            dlq,
            encoder: EncoderOptions { format: self.format, unknown_fields: self.unknown_fields },
            cdc: (self.write_mode == WriteMode::Cdc).then(|| CdcSettings {
                change_type_field: self.cdc_change_type_field.clone(),
                sequence_field: self.cdc_sequence_field.clone(),
            }),
            limits: self.write.limits()?,
            appender: self.write.appender(),
            append_timeout: self.write.append_timeout(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: BackfillArgs,
    }

    fn parse(endpoint: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["backfill", "file:///tmp/spill", "--endpoint", endpoint])
    }

    #[test]
    fn endpoint_is_the_lambdas_type() {
        let err = parse("ftp://bigquery.example").err().expect("ftp is not an endpoint");
        assert!(err.to_string().contains("http://HOST:PORT"), "{err}");
        let cli = parse("http://127.0.0.1:9060").expect("the emulator's address parses");
        assert_eq!(cli.args.endpoint, Endpoint::Emulator { url: "http://127.0.0.1:9060".into() });
    }
}
