//! `kinesis-bigquery redrive DLQ_URL`: the flags, and the clients they name.

use super::letters::Letters;
use super::run::{RedriveDeps, RedriveOptions};
use crate::backfill::{BackfillDeps, SetupError, WriteArgs};
use crate::bigquery::{DEFAULT_ENDPOINT, Endpoint, WriteClient};
use crate::dlq;
use crate::rows::{EncoderOptions, RowFormat, UnknownFields};
use crate::sink_url::{SinkUrl, sqs_client};
use crate::spill;

/// Bring dead letters back: what now fits the table is written exactly once.
#[derive(Clone, Debug, clap::Args)]
pub struct RedriveArgs {
    /// The dead-letter queue: an SQS queue URL or `file:///PATH.ndjson` (the Lambda's `DLQ_URL`).
    pub dlq_url: String,
    /// The redrive's own spillover area, `s3://BUCKET/PREFIX` or
    /// `file:///DIR`: records that fit are parked here before they leave the
    /// queue, then written by the backfill protocol. Use a prefix of its own,
    /// not the Lambda's `SPILL_URL`.
    #[arg(long)]
    pub work: String,
    /// The Storage Write API endpoint (`http://HOST:PORT` for the emulator).
    #[arg(long, env = "BIGQUERY_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: Endpoint,
    /// Row format, as the Lambda's `ROW_FORMAT`.
    #[arg(long, env = "ROW_FORMAT", default_value = "proto")]
    pub format: RowFormat,
    /// Print what would go where, by reason; write and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Letters read in one run at most.
    #[arg(long, default_value_t = 100_000)]
    pub max_letters: usize,
    /// Seconds received SQS messages stay hidden from other readers; must
    /// cover the run.
    #[arg(long, default_value_t = 900)]
    pub visibility_secs: i32,
    #[command(flatten)]
    pub write: WriteArgs,
}

impl RedriveArgs {
    pub fn options(&self) -> RedriveOptions {
        RedriveOptions {
            dry_run: self.dry_run,
            max_letters: self.max_letters,
            visibility_secs: self.visibility_secs,
            crash_after_park: false,
        }
    }

    /// Opens the queue, the work area and the BigQuery client.
    ///
    /// # Errors
    /// [`SetupError`] naming what could not be opened.
    pub async fn deps(&self) -> Result<RedriveDeps, SetupError> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let dlq_url = self.dlq_url.parse::<SinkUrl>()?;
        let work_url = self.work.parse::<SinkUrl>()?;
        let letters = match &dlq_url {
            SinkUrl::Sqs { queue_url } => {
                Letters::Sqs { client: sqs_client(&aws), queue_url: queue_url.clone() }
            }
            SinkUrl::File { path } => Letters::File { path: path.clone() },
            SinkUrl::S3 { .. } => {
                return Err(SetupError::Dlq(dlq::DlqError::Unsupported { url: dlq_url }));
            }
        };
        let payloads = matches!(work_url, SinkUrl::S3 { .. }).then(|| work_url.clone());
        let client = WriteClient::connect(&self.endpoint).await?;
        let backfill = BackfillDeps {
            client,
            spill: spill::open(&work_url, &aws)?,
            // Every object in the work area is a redrive's: no shard state gates them.
            state: None,
            dlq: Some(dlq::open(&dlq_url, payloads.as_ref(), &aws)?),
            encoder: EncoderOptions { format: self.format, unknown_fields: UnknownFields::Reject },
            // Dead letters of a CDC table are not redriven yet (see docs/operations.md).
            cdc: None,
            limits: self.write.limits()?,
            appender: self.write.appender(),
            append_timeout: self.write.append_timeout(),
        };
        Ok(RedriveDeps { letters, backfill })
    }
}
