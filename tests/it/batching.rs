//! The micro-batcher's knobs, observed where they matter: the AppendRows
//! requests the emulator receives over real gRPC. `WRITE_MODE=at_least_once`
//! streams records through encoder → batcher → appender, so each knob shapes
//! the requests: `BATCH_MAX_ROWS` caps their rows, `BATCH_MAX_BYTES` their
//! whole encoded size, and `BATCH_WINDOW_MS` how long a row may wait for
//! company. The tokio clock is paused: no time passes while records are
//! encoded, so a window of 0 (every row already waited long enough) and one
//! of 300 s (never reached) are the two deterministic ends.

use crate::common::{col, key_pad_delivery};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use kinesis_bigquery::batch::{BatchLimits, MIN_BATCH_MAX_BYTES};
use kinesis_bigquery::bigquery::AppendOutcome;
use kinesis_bigquery::delivery::{DeliveryMode, Landing, RecordOutcome, ShardBatch, deliver};
use kinesis_bigquery::emulator::{Emulator, ReceivedAppend};
use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::source::SourceRecord;
use kinesis_bigquery::table::TableName;

const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/batching";
const SHARD: &str = "shardId-000000000001";
const RECORDS: u64 = 200;
/// Padding per record: 200 records of ~1 KB, ~200 KB in all.
const PAD: usize = 1000;
const LONG_WINDOW: Duration = Duration::from_secs(300);

fn record(seq: u64) -> SourceRecord {
    crate::common::source_record(
        ARN,
        SHARD,
        seq,
        format!(r#"{{"key":"k{seq}","pad":"{}"}}"#, "p".repeat(PAD)),
    )
}

/// Delivers `RECORDS` records at least once under `limits` to a fresh
/// emulator whose request limit is `limits.max_bytes`; returns the requests
/// it received. Every record must land in the table.
async fn requests_under(limits: BatchLimits) -> anyhow::Result<Vec<ReceivedAppend>> {
    let dir = tempfile::tempdir()?;
    // The emulator refuses any request over BATCH_MAX_BYTES, as the service
    // refuses one over its own limit.
    let (table, emu, deps) = key_pad_delivery(
        "batching",
        DeliveryMode::AtLeastOnce,
        dir.path(),
        limits,
        Some(limits.max_bytes),
    )
    .await?;
    let records: Vec<_> = (1..=RECORDS).map(|s| Ok(record(s))).collect();
    let batch = ShardBatch { table: &table, stream_arn: ARN, shard_id: SHARD, records: &records };
    let outcome = deliver(batch, &deps, Instant::now() + Duration::from_secs(60)).await;
    assert!(
        outcome.records.iter().all(|r| *r == RecordOutcome::Landed(Landing::Table)),
        "{outcome:?}"
    );
    assert_eq!(emu.read_rows(&table)?.len(), RECORDS as usize);
    let appends = appends_to(&emu, &table);
    emu.shutdown().await;
    Ok(appends)
}

fn appends_to(emu: &Emulator, table: &TableName) -> Vec<ReceivedAppend> {
    let path = table.path();
    emu.appends().into_iter().filter(|a| a.write_stream.starts_with(&path)).collect()
}

fn rows_of(appends: &[ReceivedAppend]) -> Vec<usize> {
    appends.iter().map(|a| a.rows).collect()
}

fn limits(max_rows: usize, max_bytes: usize, window: Duration) -> BatchLimits {
    BatchLimits::new(max_rows, max_bytes, window).expect("valid limits")
}

#[tokio::test(start_paused = true)]
async fn batch_max_rows_caps_the_rows_of_every_request() -> anyhow::Result<()> {
    let seven = requests_under(limits(7, 1 << 20, LONG_WINDOW)).await?;
    let mut want = vec![7; (RECORDS / 7) as usize];
    want.push((RECORDS % 7) as usize);
    assert_eq!(rows_of(&seven), want);

    let unbounded = requests_under(limits(10_000, 1 << 20, LONG_WINDOW)).await?;
    assert_eq!(rows_of(&unbounded), vec![RECORDS as usize], "one request holds all 200 KB");
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn batch_max_bytes_caps_the_whole_encoded_request() -> anyhow::Result<()> {
    let max = MIN_BATCH_MAX_BYTES;
    let appends = requests_under(limits(10_000, max, LONG_WINDOW)).await?;
    assert!(appends.len() >= 4, "~200 KB in requests of at most 64 KiB: {appends:?}");
    assert_eq!(rows_of(&appends).iter().sum::<usize>(), RECORDS as usize);
    // Whole requests count (the first carries the stream name and writer
    // schema), and every request but the last is full: one more ~1 KB row
    // would not have fitted.
    assert!(appends[0].with_schema);
    for a in &appends {
        assert!(a.bytes <= max, "{} > {max}", a.bytes);
    }
    for a in &appends[..appends.len() - 1] {
        assert!(a.bytes > max - 2 * (PAD + 64), "a request cut early: {a:?}");
    }

    let big = requests_under(limits(10_000, 4 * max, LONG_WINDOW)).await?;
    assert!(big.len() < appends.len(), "{} vs {}", big.len(), appends.len());
    assert!(big.iter().all(|a| a.bytes <= 4 * max));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn batch_window_ms_zero_sends_each_row_as_soon_as_it_is_encoded() -> anyhow::Result<()> {
    let zero = requests_under(limits(10_000, 1 << 20, Duration::ZERO)).await?;
    assert_eq!(rows_of(&zero), vec![1; RECORDS as usize]);

    // Nothing waited 20 ms (the clock is paused): requests are cut by size
    // and at the end of the batch only.
    let default = requests_under(limits(10_000, 1 << 20, BatchLimits::default().window)).await?;
    assert_eq!(rows_of(&default), vec![RECORDS as usize]);
    Ok(())
}

/// The appender sends a request as soon as the batcher hands it over: the
/// first is answered by the emulator while the next one does not exist yet.
#[tokio::test]
async fn a_streamed_request_is_answered_before_the_next_is_built() -> anyhow::Result<()> {
    use crate::client_support::{in_secs, options, requests, world};
    use crate::common::{fast_retry, until_activity};
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(8, fast_retry(3)));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut batches = requests(0, 2, 5, true).into_iter();
    let producer = async {
        tx.send(batches.next().expect("two requests"))?;
        // The producer is "still encoding": nothing more until the first landed.
        let seen = until_activity(&w.emulator, |a| a.append_requests >= 1).await?;
        assert_eq!(w.ids(), (0..5).collect::<Vec<_>>(), "{seen:?}");
        tx.send(batches.next().expect("two requests"))?;
        drop(tx);
        anyhow::Ok(())
    };
    let (produced, outcomes) = tokio::join!(producer, appender.append_stream(rx, in_secs(30)));
    produced?;
    assert!(outcomes.iter().all(|o| matches!(o, AppendOutcome::Appended { .. })), "{outcomes:?}");
    assert_eq!(outcomes.len(), 2);
    assert_eq!(w.ids(), (0..10).collect::<Vec<_>>());
    Ok(())
}

/// A cold start refuses a `BATCH_MAX_BYTES` that config accepts but that
/// leaves too little room for rows once this table's writer schema (4,000
/// columns) is counted, and says which variable to change.
#[tokio::test]
async fn cold_start_refuses_a_batch_max_bytes_the_table_schema_fills() -> anyhow::Result<()> {
    use crate::handler_support::World;
    let mut world = World::start().await?;
    let wide = TableSchema {
        fields: (0..4000).map(|i| col(&format!("c{i:04}"), Type::String, Mode::Nullable)).collect(),
    };
    world.table = world.harness.new_table(wide)?;
    let write_mode = ("WRITE_MODE", "at_least_once".to_string());
    let tight = [write_mode.clone(), ("BATCH_MAX_BYTES", MIN_BATCH_MAX_BYTES.to_string())];
    let err = match world.deps(&tight).await {
        Ok(_) => anyhow::bail!("a 64 KiB request cannot hold a 4,000-column schema and a row"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("BATCH_MAX_BYTES") && err.contains("for rows"), "{err}");
    // The default leaves room for it.
    world.deps(&[write_mode]).await?;
    world.harness.shutdown().await;
    Ok(())
}

/// The backfill streams an object's records into its PENDING stream through
/// the same batcher: requests at consecutive offsets, cut by
/// `BATCH_MAX_ROWS`, or one row each under a zero window; a record that
/// cannot be a row is a dead letter and takes no offset.
#[tokio::test]
async fn the_backfill_cuts_its_pending_stream_requests_with_the_same_knobs() -> anyhow::Result<()> {
    use crate::backfill_support::{
        deps, file_dlq, ids_in_table, ids_of, options, records, run, spilled,
    };
    use kinesis_bigquery::spill::{FileSpill, SpillSink};
    let h = crate::common::Harness::start().await?;
    for (window, want) in [(LONG_WINDOW, vec![7, 7, 5]), (Duration::ZERO, vec![1; 19])] {
        let table = h.new_events_table()?;
        let dir = tempfile::tempdir()?;
        let spill: Arc<dyn SpillSink> = Arc::new(FileSpill::new(dir.path().join("spill")));
        let mut recs = records("shardId-000000000000", 0, 20);
        recs[3].data = Bytes::from_static(b"not json");
        spill.spill(&spilled(&table, &recs)).await?;
        let mut deps =
            deps(&h.emulator, spill, Some(file_dlq(&dir.path().join("dlq.ndjson")))).await;
        deps.limits = limits(7, 1 << 20, window);
        let summary = run(&deps, &options()).await;
        assert!(!summary.left_behind(), "{:?}", summary.failures);
        assert_eq!((summary.rows, summary.dead_lettered), (19, 1));
        let mut good = recs.clone();
        good.remove(3);
        assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&good));
        let appends = appends_to(&h.emulator, &table);
        assert_eq!(rows_of(&appends), want, "window {window:?}");
        let offsets: Vec<Option<i64>> = appends.iter().map(|a| a.offset).collect();
        let mut at = 0;
        let expected: Vec<Option<i64>> = want
            .iter()
            .map(|n| {
                let o = Some(at);
                at += *n as i64;
                o
            })
            .collect();
        assert_eq!(offsets, expected);
    }
    h.shutdown().await;
    Ok(())
}
