//! Exactly-once state on S3 (moto, through the real AWS SDK): two writers on
//! one shard that read the same state version race; exactly one commits,
//! the other gives its batch back (DESIGN.md, invariant 4), and every record
//! is in the table exactly once.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use kinesis_bigquery::bigquery::{AppenderOptions, RetryPolicy, WriteClient};
use kinesis_bigquery::delivery::store::{S3StateStore, StateStore};
use kinesis_bigquery::delivery::{
    DeliveryDeps, DeliveryMode, EncoderCell, GaveBack, Landing, RecordOutcome, ShardBatch,
    ShardState, WriteMode, deliver, state_key,
};
use kinesis_bigquery::dlq::FileDeadLetter;
use kinesis_bigquery::emulator::{self, EmulatorConfig};
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{TableFieldSchema, TableSchema};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RowFormat, UnknownFields};
use kinesis_bigquery::source::{BadRecord, Position, SequenceNumber, SourceRecord};
use kinesis_bigquery::spill::FileSpill;
use kinesis_bigquery::table::TableName;

const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/s3-state";
const SHARD: &str = "shardId-000000000001";

fn schema() -> TableSchema {
    TableSchema {
        fields: vec![TableFieldSchema {
            name: "key".into(),
            r#type: Type::String as i32,
            mode: Mode::Required as i32,
            ..Default::default()
        }],
    }
}

fn records(seqs: std::ops::Range<u64>) -> Vec<Result<SourceRecord, BadRecord>> {
    seqs.map(|s| {
        Ok(SourceRecord {
            shard_id: Arc::from(SHARD),
            stream_arn: Arc::from(ARN),
            position: Position {
                sequence_number: SequenceNumber::new(&s.to_string()).unwrap(),
                sub_sequence_number: 0,
            },
            event_index: 0,
            partition_key: Arc::from("pk"),
            explicit_hash_key: None,
            arrival_micros: None,
            data: Bytes::from(format!(r#"{{"key":"k{s}"}}"#)),
        })
    })
    .collect()
}

async fn deps(
    client: &WriteClient,
    store: Arc<dyn StateStore>,
    dir: &std::path::Path,
) -> anyhow::Result<DeliveryDeps> {
    let options =
        EncoderOptions { format: RowFormat::Proto, unknown_fields: UnknownFields::Reject };
    let mut d = DeliveryDeps::new(
        client.clone(),
        EncoderCell::new(Encoder::new(&schema(), options)?, options),
        DeliveryMode::of(WriteMode::ExactlyOnce, store),
        Arc::new(FileSpill::new(dir.join("spill"))),
        Arc::new(FileDeadLetter::new(dir.join("dlq.ndjson"))),
    );
    d.appender = AppenderOptions {
        retry: RetryPolicy {
            max_attempts: 2,
            jitter: false,
            ..RetryPolicy::with_budget(Duration::from_secs(60))
        },
        ..AppenderOptions::default()
    };
    Ok(d)
}

#[tokio::test]
async fn two_writers_one_shard_exactly_one_commits() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let bucket = moto.new_bucket().await?;
    let store: Arc<dyn StateStore> =
        Arc::new(S3StateStore::new(moto.s3_client(), bucket.clone(), "state".into()));
    let table = TableName::new("p", "s3state", "events")?;
    let emu = emulator::start(EmulatorConfig {
        tables: vec![(table.clone(), schema())],
        ..Default::default()
    })
    .await?;
    let client = WriteClient::connect(&emu.endpoint()).await?;
    let dir = tempfile::tempdir()?;
    let first = deps(&client, store.clone(), &dir.path().join("a")).await?;
    let second = deps(&client, store.clone(), &dir.path().join("b")).await?;
    let deadline = || Instant::now() + Duration::from_secs(10);

    // A first invocation creates the state and the stream.
    let warm = records(100..103);
    let out = deliver(
        ShardBatch { table: &table, stream_arn: ARN, shard_id: SHARD, records: &warm },
        &first,
        deadline(),
    )
    .await;
    assert_eq!(out.gave_back, None);
    assert!(out.records.iter().all(|r| *r == RecordOutcome::Landed(Landing::Table)), "{out:?}");
    let key = state_key(&table, ARN, SHARD);
    let (bytes, _) = store.load(&key).await?.expect("state object in S3");
    let before = ShardState::from_json(&bytes)?;
    assert_eq!(before.next_offset, 3);

    // Two writers read that state and race: appends are slow, so both load
    // the same version before either commits.
    emu.faults().delay("AppendRows", Duration::from_millis(300));
    let batch = records(103..106);
    let (a, b) = tokio::join!(
        deliver(
            ShardBatch { table: &table, stream_arn: ARN, shard_id: SHARD, records: &batch },
            &first,
            deadline()
        ),
        deliver(
            ShardBatch { table: &table, stream_arn: ARN, shard_id: SHARD, records: &batch },
            &second,
            deadline()
        ),
    );
    emu.faults().clear();
    let conflicts = [&a, &b].iter().filter(|o| o.gave_back == Some(GaveBack::Conflict)).count();
    assert_eq!(conflicts, 1, "exactly one writer loses the CAS: {a:?} {b:?}");
    let (winner, loser) = if a.gave_back.is_none() { (&a, &b) } else { (&b, &a) };
    assert_eq!(winner.gave_back, None);
    assert!(winner.records.iter().all(RecordOutcome::is_landed), "{winner:?}");
    assert!(
        loser.records.iter().all(|r| !r.is_landed()),
        "the loser gives everything back: {loser:?}"
    );

    // Kinesis redelivers the loser's batch (same records): nothing changes.
    let again = deliver(
        ShardBatch { table: &table, stream_arn: ARN, shard_id: SHARD, records: &batch },
        &first,
        deadline(),
    )
    .await;
    assert!(
        again.records.iter().all(|r| *r == RecordOutcome::Landed(Landing::Earlier)),
        "{again:?}"
    );

    let mut keys: Vec<String> = emu
        .read_rows(&table)?
        .iter()
        .filter_map(|r| r.get("key").and_then(|k| k.as_str()).map(str::to_string))
        .collect();
    keys.sort();
    let expected: Vec<String> = (100..106).map(|s| format!("k{s}")).collect();
    assert_eq!(keys, expected);
    let (bytes, _) = store.load(&key).await?.expect("state");
    let after = ShardState::from_json(&bytes)?;
    assert_eq!(after.last_position.map(|p| p.sequence_number.to_string()), Some("105".to_string()));
    emu.shutdown().await;
    Ok(())
}
