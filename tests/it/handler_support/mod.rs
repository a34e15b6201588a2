//! What the handler's integration tests share: a world (emulator + moto +
//! a temp dir), a config pointing at it, and readers of what landed where.

use crate::common::Harness;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use kinesis_bigquery::config::Config;
use kinesis_bigquery::delivery::store::{self, StateStore};
use kinesis_bigquery::handler::{self, Deps};
use kinesis_bigquery::metrics::LogOutput;
use kinesis_bigquery::sink_url::SinkUrl;
use kinesis_bigquery::spill::{self, SpillSink};
use kinesis_bigquery::table::TableName;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One test's local world: a fresh table, bucket and queue.
pub struct World {
    pub harness: Harness,
    pub table: TableName,
    pub bucket: String,
    pub queue: String,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn start() -> anyhow::Result<Self> {
        let harness = Harness::start().await?;
        let table = harness.new_events_table()?;
        let bucket = harness.new_bucket().await?;
        let queue = harness.new_queue().await?;
        Ok(Self { harness, table, bucket, queue, dir: tempfile::tempdir()? })
    }

    /// The environment of a deployed function, pointed at this world: state
    /// and spillover in S3, dead letters in SQS. `overrides` replace entries.
    pub fn env(&self, overrides: &[(&'static str, String)]) -> HashMap<&'static str, String> {
        let mut env = HashMap::from([
            ("BIGQUERY_TABLE", self.table.to_string()),
            ("BIGQUERY_ENDPOINT", self.harness.emulator.grpc_endpoint()),
            ("STATE_URL", format!("s3://{}/state", self.bucket)),
            ("SPILL_URL", format!("s3://{}/spill", self.bucket)),
            ("DLQ_URL", self.queue.clone()),
            ("RETRY_BUDGET_MS", "300".into()),
        ]);
        for (k, v) in overrides {
            env.insert(k, v.clone());
        }
        env
    }

    pub fn config(&self, overrides: &[(&'static str, String)]) -> anyhow::Result<Config> {
        let env = self.env(overrides);
        Ok(Config::from_lookup(|k| env.get(k).cloned())?)
    }

    /// Deps as a cold start builds them, with the AWS SDK pointed at moto.
    pub async fn deps(&self, overrides: &[(&'static str, String)]) -> anyhow::Result<Deps> {
        let config = self.config(overrides)?;
        let aws = self.harness.moto.sdk_config();
        Ok(Deps::build_with_aws(&config, LogOutput::Stderr, &aws).await?)
    }

    /// The `event_id`s of the table's visible rows, in write order.
    pub fn row_ids(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .harness
            .emulator
            .read_rows(&self.table)?
            .iter()
            .map(|r| r["event_id"].as_str().unwrap_or("?").to_string())
            .collect())
    }

    /// The messages now visible in the dead-letter queue, parsed. They are
    /// received with a 60 s visibility timeout, so a second call shows only
    /// messages sent since.
    pub async fn dead_letters(&self) -> anyhow::Result<Vec<Value>> {
        let sqs = self.harness.moto.sqs_client();
        let mut out = Vec::new();
        for _ in 0..20 {
            let got = sqs
                .receive_message()
                .queue_url(&self.queue)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .send()
                .await?;
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                break;
            }
            for m in messages {
                out.push(serde_json::from_str(m.body.as_deref().unwrap_or("null"))?);
            }
        }
        Ok(out)
    }

    /// Keys of the bucket's objects under `prefix`.
    pub async fn objects(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let listed = self
            .harness
            .moto
            .s3_client()
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await?;
        Ok(listed.contents.unwrap_or_default().into_iter().filter_map(|o| o.key).collect())
    }

    /// The spillover the Lambda's `SPILL_URL` names, opened as it opens it.
    pub fn spill_sink(&self) -> anyhow::Result<Arc<dyn SpillSink>> {
        let url: SinkUrl = format!("s3://{}/spill", self.bucket).parse()?;
        Ok(spill::open(&url, &self.harness.moto.sdk_config())?)
    }

    /// The state store the Lambda's `STATE_URL` names.
    pub fn state_store(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        let url: SinkUrl = format!("s3://{}/state", self.bucket).parse()?;
        Ok(store::open(&url, &self.harness.moto.sdk_config())?)
    }
}

/// Runs one invocation with a Lambda-like context (60 s timeout).
pub async fn invoke(deps: &Deps, event: KinesisEvent) -> anyhow::Result<KinesisEventResponse> {
    handler::handle(handler::local_event(event, Duration::from_secs(60)), deps)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// A Kinesis event from the JSON the `support::events` builders make.
pub fn event(json: Value) -> anyhow::Result<KinesisEvent> {
    Ok(serde_json::from_value(json)?)
}

/// The sequence numbers a response names.
pub fn failures(r: &KinesisEventResponse) -> Vec<String> {
    r.batch_item_failures.iter().filter_map(|f| f.item_identifier.clone()).collect()
}
