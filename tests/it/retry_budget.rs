//! `RETRY_BUDGET_MS` bounds an invocation against a BigQuery that refuses
//! everything: every RPC and every AppendRows request of the invocation
//! answers RESOURCE_EXHAUSTED. The records must be spilled and the invocation
//! must end once the budget is spent — not keep reconnecting, rotating and
//! resending until the Lambda deadline. Paused tokio clock: the 30 s budget
//! and the 10-minute deadline pass in virtual time, and the elapsed virtual
//! time is exact, not a wall-clock measurement.

use crate::common::col;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kinesis_bigquery::bigquery::{AppenderOptions, RetryPolicy, WriteClient};
use kinesis_bigquery::delivery::store::FileStateStore;
use kinesis_bigquery::delivery::{
    DeliveryDeps, DeliveryMode, EncoderCell, Landing, RecordOutcome, ShardBatch, WriteMode, deliver,
};
use kinesis_bigquery::dlq::FileDeadLetter;
use kinesis_bigquery::emulator::{self, EmulatorConfig, FaultSpec};
use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RowFormat, UnknownFields};
use kinesis_bigquery::source::SourceRecord;
use kinesis_bigquery::spill::{FileSpill, SpillFilter, SpillSink};
use kinesis_bigquery::table::TableName;

const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/budget";
const SHARD: &str = "shardId-000000000009";
const BUDGET: Duration = Duration::from_secs(30);
const LAMBDA_DEADLINE: Duration = Duration::from_secs(600);

fn record(seq: u64) -> SourceRecord {
    crate::common::source_record(ARN, SHARD, seq, format!(r#"{{"key":"k{seq}"}}"#))
}

async fn refused_everything(mode: WriteMode) -> anyhow::Result<()> {
    let schema = TableSchema { fields: vec![col("key", Type::String, Mode::Required)] };
    let table = TableName::new("p", "budget", &format!("t{}", uuid::Uuid::new_v4().simple()))?;
    let emu = emulator::start(EmulatorConfig {
        tables: vec![(table.clone(), schema.clone())],
        ..Default::default()
    })
    .await?;
    let policy = RetryPolicy::with_budget(BUDGET);
    let client = WriteClient::connect(&emu.endpoint()).await?.with_unary_retry(policy.clone());
    let dir = tempfile::tempdir()?;
    let spill = Arc::new(FileSpill::new(dir.path().join("spill")));
    let options =
        EncoderOptions { format: RowFormat::Proto, unknown_fields: UnknownFields::Reject };
    let mut deps = DeliveryDeps::new(
        client,
        EncoderCell::new(Encoder::new(&schema, options)?, options),
        DeliveryMode::of(mode, Arc::new(FileStateStore::new(dir.path().join("state")))),
        spill.clone(),
        Arc::new(FileDeadLetter::new(dir.path().join("dlq.ndjson"))),
    );
    deps.appender = AppenderOptions { retry: policy, ..AppenderOptions::default() };

    // Every call of every RPC, and every AppendRows request, in band or not.
    for in_band in [false, true] {
        emu.faults().add(FaultSpec::Fail {
            method: "*".into(),
            times: u32::MAX,
            code: tonic::Code::ResourceExhausted,
            message: "quota exceeded".into(),
            in_band,
        });
    }

    let records: Vec<_> = (1..=20).map(|s| Ok(record(s))).collect();
    let batch = ShardBatch { table: &table, stream_arn: ARN, shard_id: SHARD, records: &records };
    let started = Instant::now();
    let outcome = deliver(batch, &deps, started + LAMBDA_DEADLINE).await;
    let spent = started.elapsed();

    assert!(
        outcome.records.iter().all(|r| *r == RecordOutcome::Landed(Landing::Spill)),
        "{outcome:?}"
    );
    let spilled = spill.list(&SpillFilter::default()).await?;
    assert!(!spilled.is_empty());
    assert_eq!(emu.read_rows(&table)?.len(), 0);
    // One budget from the first refusal (its last delay may start just
    // before the end), plus the attempts themselves: far from the deadline.
    assert!(spent <= BUDGET + Duration::from_secs(5), "{mode:?} took {spent:?} (virtual)");
    emu.shutdown().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn exactly_once_spills_and_ends_after_the_budget() -> anyhow::Result<()> {
    refused_everything(WriteMode::ExactlyOnce).await
}

#[tokio::test(start_paused = true)]
async fn at_least_once_spills_and_ends_after_the_budget() -> anyhow::Result<()> {
    refused_everything(WriteMode::AtLeastOnce).await
}
