//! Issue 6 acceptance: BigQuery is lost mid-invocation with appends in
//! flight → the exactly-once driver spills the batch with its write stream
//! and offsets → BigQuery comes back, the shard carries on → backfill →
//! every record exactly once in the table (DESIGN.md invariant 6: the
//! in-doubt rows that did land are recognised, not written twice).
//!
//! The real delivery driver, the emulator over gRPC, state and spillover in
//! moto S3 through the real AWS SDK.

use crate::backfill_support;
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use backfill_support::*;
use common::Harness;
use kinesis_bigquery::batch::BatchLimits;
use kinesis_bigquery::bigquery::AppenderOptions;
use kinesis_bigquery::delivery::store::{S3StateStore, StateStore};
use kinesis_bigquery::delivery::{
    DeliveryDeps, DeliveryMode, EncoderCell, Landing, ShardBatch, WriteMode, deliver,
};
use kinesis_bigquery::rows::{Encoder, EncoderOptions};
use kinesis_bigquery::source::SourceRecord;
use kinesis_bigquery::spill::{S3Spill, SpillFilter, SpillReason, SpillSink};
use tonic::Code;

const SHARD: &str = "shardId-000000000007";

async fn invoke(
    deps: &DeliveryDeps,
    table: &kinesis_bigquery::table::TableName,
    recs: &[SourceRecord],
) -> Vec<Landing> {
    let records: Vec<_> = recs.iter().cloned().map(Ok).collect();
    let batch = ShardBatch { table, stream_arn: STREAM_ARN, shard_id: SHARD, records: &records };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let outcome = deliver(batch, deps, deadline).await;
    assert_eq!(outcome.first_not_landed(), None, "{outcome:?}");
    outcome
        .records
        .iter()
        .map(|r| match r {
            kinesis_bigquery::delivery::RecordOutcome::Landed(l) => *l,
            other => panic!("not landed: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn appends_in_doubt_are_spilled_resolved_and_backfilled_exactly_once() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let bucket = h.new_bucket().await?;
    let state: Arc<dyn StateStore> =
        Arc::new(S3StateStore::new(h.moto.s3_client(), bucket.clone(), "state".into()));
    let spill: Arc<dyn SpillSink> =
        Arc::new(S3Spill::new(h.moto.s3_client(), bucket, "spill".into()));
    let dir = tempfile::tempdir()?;
    let dlq = file_dlq(&dir.path().join("dlq.ndjson"));

    let bq = client(&h.emulator).await;
    let schema = bq.table_schema(&table).await?;
    let encoder = Encoder::new(&schema, EncoderOptions::default())?;
    let mut lambda = DeliveryDeps::new(
        bq,
        EncoderCell::new(encoder, EncoderOptions::default()),
        DeliveryMode::of(WriteMode::ExactlyOnce, Arc::clone(&state)),
        Arc::clone(&spill),
        dlq,
    );
    // Small requests, so several are in flight when BigQuery goes away.
    lambda.limits = BatchLimits::new(5, 1 << 20, Duration::ZERO)?;
    lambda.appender = AppenderOptions { retry: fast_retry(4), ..AppenderOptions::default() };
    lambda.spill_reserve = Duration::from_millis(500);

    let all = records(SHARD, 0, 80);
    // 1. A healthy invocation.
    assert!(invoke(&lambda, &table, &all[..20]).await.iter().all(|l| *l == Landing::Table));

    // 2. The first two requests land but their answers are lost; then
    //    BigQuery is unreachable, even for the FinalizeWriteStream that
    //    would tell which landed.
    h.emulator.faults().write_then_drop(2);
    h.emulator.faults().fail_next("AppendRows", 10_000, Code::Unavailable, "lost");
    h.emulator.faults().fail_next("FinalizeWriteStream", 10_000, Code::Unavailable, "lost");
    let landings = invoke(&lambda, &table, &all[20..60]).await;
    assert!(landings.iter().all(|l| *l == Landing::Spill), "{landings:?}");
    h.emulator.faults().clear();

    let keys = spill.list(&SpillFilter::default()).await?;
    assert_eq!(keys.len(), 1);
    let spilled = spill.read(&keys[0]).await?;
    assert_eq!(spilled.reason, SpillReason::InDoubt);
    assert!(spilled.write_stream.is_some());
    assert!(spilled.records.iter().all(|r| r.offset.is_some()));
    let visible = ids_in_table(&h.emulator, &table);
    assert!(visible.len() > 20, "some in-doubt rows did land: {}", visible.len());

    // 3. BigQuery is back; the shard carries on.
    invoke(&lambda, &table, &all[60..80]).await;

    // 4. Backfill with the Lambda's state.
    let mut backfill = deps(&h.emulator, Arc::clone(&spill), None).await;
    backfill.state = Some(Arc::clone(&state));
    let summary = run(&backfill, &options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    assert_eq!(summary.replayed, 1);
    assert!(summary.already_in_table > 0, "{summary:?}");
    assert_eq!(summary.already_in_table + summary.rows, 40);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&all), "every record exactly once");
    assert!(spill.list(&SpillFilter::default()).await?.is_empty());
    h.shutdown().await;
    Ok(())
}
