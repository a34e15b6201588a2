//! Shared by the `backfill_*` tests: spilled batches of sample events, the
//! backfill's dependencies against the emulator, and the exactly-once check.

pub use crate::common::fast_retry;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kinesis_bigquery::backfill::{self, BackfillDeps, BackfillOptions, Progress, Summary};
use kinesis_bigquery::batch::BatchLimits;
use kinesis_bigquery::bigquery::{AppenderOptions, RetryPolicy, WriteClient};
use kinesis_bigquery::delivery::store::StateStore;
use kinesis_bigquery::delivery::{ShardState, state_key};
use kinesis_bigquery::dlq::{DeadLetter, DeadLetterSink, FileDeadLetter};
use kinesis_bigquery::emulator::Emulator;
use kinesis_bigquery::rows::{EncoderOptions, RowFormat, UnknownFields};
use kinesis_bigquery::source::{Position, SequenceNumber, SourceRecord};
use kinesis_bigquery::spill::{SpillKey, SpillReason, SpillSink, SpilledBatch};
use kinesis_bigquery::table::TableName;

pub const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks";

/// `n` sample-event records of `shard`, ids `{shard}-{first + i}`.
pub fn records(shard: &str, first: u64, n: u64) -> Vec<SourceRecord> {
    (first..first + n)
        .map(|i| record(shard, i, event(&format!("{shard}-{i}"), i).into_bytes()))
        .collect()
}

/// One record at sequence number `i` (KPL-style sub-sequence 0).
pub fn record(shard: &str, i: u64, data: Vec<u8>) -> SourceRecord {
    SourceRecord {
        shard_id: Arc::from(shard),
        stream_arn: Arc::from(STREAM_ARN),
        position: Position {
            sequence_number: SequenceNumber::new(&format!("4959{:050}", i + 1)).unwrap(),
            sub_sequence_number: 0,
        },
        event_index: i as usize,
        partition_key: Arc::from(format!("pk-{}", i % 7).as_str()),
        explicit_hash_key: None,
        arrival_micros: Some(1_760_000_000_000_000 + i as i64),
        data: Bytes::from(data),
    }
}

/// A sample event of the events table (`tests/fixtures/events.schema.json`).
pub fn event(id: &str, i: u64) -> String {
    serde_json::json!({
        "event_id": id,
        "type": if i.is_multiple_of(2) { "click" } else { "view" },
        "user_id": 1000 + i,
        "ts": "2026-11-26T08:00:00.123456Z",
        "tags": ["a", "b"],
        "lat": 52.5,
        "lng": 13.4,
    })
    .to_string()
}

/// The batch the Lambda would spill for `records`.
pub fn spilled(table: &TableName, records: &[SourceRecord]) -> SpilledBatch {
    SpilledBatch::new(table.clone(), SpillReason::RetriesExhausted, "UNAVAILABLE", records)
}

pub async fn client(emulator: &Emulator) -> WriteClient {
    WriteClient::connect(&emulator.endpoint()).await.unwrap().with_unary_retry(RetryPolicy::none())
}

pub async fn deps(
    emulator: &Emulator,
    spill: Arc<dyn SpillSink>,
    dlq: Option<Arc<dyn DeadLetterSink>>,
) -> BackfillDeps {
    BackfillDeps {
        client: client(emulator).await,
        state: None,
        spill,
        dlq,
        encoder: EncoderOptions { format: RowFormat::Proto, unknown_fields: UnknownFields::Reject },
        cdc: None,
        limits: BatchLimits::new(7, 1 << 20, Duration::ZERO).unwrap(),
        appender: AppenderOptions { retry: fast_retry(4), ..AppenderOptions::default() },
        append_timeout: Duration::from_secs(30),
    }
}

pub fn options() -> BackfillOptions {
    BackfillOptions { concurrency: 2, ..BackfillOptions::default() }
}

pub async fn run(deps: &BackfillDeps, options: &BackfillOptions) -> Summary {
    backfill::run(deps, options, &Progress::Silent).await.unwrap()
}

/// `event_id`s of the visible rows, sorted.
pub fn ids_in_table(emulator: &Emulator, table: &TableName) -> Vec<String> {
    let mut ids: Vec<String> = emulator
        .read_rows(table)
        .unwrap()
        .iter()
        .map(|row| row["event_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

pub fn ids_of(records: &[SourceRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
            v["event_id"].as_str().unwrap().to_string()
        })
        .collect();
    ids.sort();
    ids
}

/// The letters in a `file://` dead-letter queue.
pub fn letters(path: &std::path::Path) -> Vec<DeadLetter> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
        Err(_) => Vec::new(),
    }
}

pub fn file_dlq(path: &std::path::Path) -> Arc<dyn DeadLetterSink> {
    Arc::new(FileDeadLetter::new(path.to_path_buf()))
}

/// Writes the shard state the Lambda would have committed after spilling
/// `objects` of `records` (all of one shard): `last_position` at the last
/// record, the objects listed in `spills`.
pub async fn commit_state(
    state: &dyn StateStore,
    table: &TableName,
    records: &[SourceRecord],
    listed: &[&SpilledBatch],
) {
    let paths: Vec<String> = listed.iter().map(|b| SpillKey::of(b).unwrap().path()).collect();
    commit_state_listing(state, table, records, &paths).await;
}

/// [`commit_state`] listing the object paths `spills` as they are.
pub async fn commit_state_listing(
    state: &dyn StateStore,
    table: &TableName,
    records: &[SourceRecord],
    spills: &[String],
) {
    let first = &records[0];
    let mut shard = ShardState::new(format!("{}/streams/lambda", table.path()));
    shard.last_position = records.iter().map(|r| r.position.clone()).max();
    shard.spills = spills.to_vec();
    let key = state_key(table, &first.stream_arn, &first.shard_id);
    match state.load(&key).await.unwrap() {
        None => {
            state.create(&key, &shard.to_json()).await.unwrap();
        }
        Some((_, version)) => {
            state.replace(&key, &shard.to_json(), &version).await.unwrap();
        }
    }
}

/// The `spills` list of a shard's state.
pub async fn listed(state: &dyn StateStore, table: &TableName, shard: &str) -> Vec<String> {
    let key = state_key(table, STREAM_ARN, shard);
    let (bytes, _) = state.load(&key).await.unwrap().unwrap();
    ShardState::from_json(&bytes).unwrap().spills
}
