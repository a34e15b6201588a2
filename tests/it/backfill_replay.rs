//! Backfill behaviour beyond crashes: in-doubt records resolved against the
//! stream they were sent to (DESIGN.md invariant 6), records that still
//! cannot be rows, BigQuery down during a backfill, dry runs, filters and
//! archiving. Emulator over gRPC; `file://` spillover and dead-letter queue.

use crate::backfill_support;
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use backfill_support::*;
use common::Harness;
use kinesis_bigquery::backfill::{BackfillOptions, Filter};
use kinesis_bigquery::bigquery::{
    AppendRequest, Appender, AppenderOptions, RetryPolicy, write_stream,
};
use kinesis_bigquery::delivery::store::{FileStateStore, StateStore};
use kinesis_bigquery::dlq::Reason;
use kinesis_bigquery::pb::storage::append_rows_request::{ProtoData, Rows};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RecordMeta, WriterSchema};
use kinesis_bigquery::source::SourceRecord;
use kinesis_bigquery::spill::{
    FileSpill, SpillFilter, SpillKey, SpillReason, SpillSink, SpilledRecord,
};
use kinesis_bigquery::table::TableName;

/// One test's world: the harness, a fresh events table, and a file
/// spillover in a temporary directory (kept for the test's life).
struct World {
    h: Harness,
    table: TableName,
    dir: tempfile::TempDir,
    spill: Arc<dyn SpillSink>,
}

impl World {
    async fn start() -> anyhow::Result<Self> {
        let h = Harness::start().await?;
        let table = h.new_events_table()?;
        let dir = tempfile::tempdir()?;
        let spill = file_spill(&dir);
        Ok(Self { h, table, dir, spill })
    }
}

fn file_spill(dir: &tempfile::TempDir) -> Arc<dyn SpillSink> {
    Arc::new(FileSpill::new(dir.path().join("spill")))
}

/// Appends `records` to a new COMMITTED stream at offsets 0.., as the Lambda
/// does, and returns the stream's name.
async fn append_committed(
    h: &Harness,
    table: &TableName,
    records: &[SourceRecord],
) -> anyhow::Result<String> {
    let client = client(&h.emulator).await;
    let schema = client.table_schema(table).await?;
    let encoder = Encoder::new(&schema, EncoderOptions::default())?;
    let stream = client.create_write_stream(table, write_stream::Type::Committed).await?.name;
    let mut rows = Vec::new();
    for r in records {
        let mut row = Vec::new();
        encoder.encode(&r.data, &RecordMeta::from(r), &mut row)?;
        rows.push(bytes::Bytes::from(row));
    }
    let slices = rows;
    let WriterSchema::Proto(schema) = encoder.writer_schema() else { unreachable!() };
    let mut appender = Appender::new(
        client,
        stream.clone(),
        Rows::ProtoRows(ProtoData { writer_schema: Some(schema), rows: None }),
        AppenderOptions { retry: RetryPolicy::none(), ..AppenderOptions::default() },
    );
    if !slices.is_empty() {
        let request = AppendRequest {
            offset: Some(0),
            rows: encoder.request_rows(&slices, false)?,
            row_count: slices.len(),
            bytes: encoder.request_bytes(slices.iter().map(|r| r.len())),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let outcomes = appender.append_all(vec![request], deadline).await;
        assert!(outcomes.iter().all(|o| o.is_success()), "{outcomes:?}");
    }
    Ok(stream)
}

/// The Lambda sent 12 records to its COMMITTED stream at offsets 0..12 and
/// lost the answers; only the first 5 landed. It spilled all 12 with the
/// stream and offsets. The backfill must add exactly the 7 missing ones.
#[tokio::test]
async fn in_doubt_records_already_in_the_table_are_skipped() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let dir = tempfile::tempdir()?;
    for landed in [0usize, 5, 12] {
        let table = h.new_events_table()?;
        let all = records("shardId-000000000003", 0, 12);
        let stream = append_committed(&h, &table, &all[..landed]).await?;
        let mut batch = spilled(&table, &all);
        batch.reason = SpillReason::InDoubt;
        batch.write_stream = Some(stream);
        batch.records = all
            .iter()
            .enumerate()
            .map(|(i, r)| SpilledRecord::from_source(r, Some(i as i64)))
            .collect();
        let spill = Arc::new(FileSpill::new(dir.path().join(format!("spill-{landed}"))));
        spill.spill(&batch).await?;

        let deps = deps(&h.emulator, spill.clone(), None).await;
        let summary = run(&deps, &options()).await;
        assert!(!summary.left_behind(), "{:?}", summary.failures);
        assert_eq!(summary.already_in_table, landed as u64);
        assert_eq!(summary.rows, (12 - landed) as u64);
        assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&all), "landed={landed}");
    }
    h.shutdown().await;
    Ok(())
}

/// Records that still cannot become rows go to the dead-letter queue with
/// their reason; without a queue the object stays and nothing is written.
#[tokio::test]
async fn records_that_cannot_be_rows_are_dead_lettered() -> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let mut recs = records("shardId-000000000000", 0, 6);
    recs.push(record("shardId-000000000000", 6, br#"{"event_id": "trunc"#.to_vec()));
    recs.push(record(
        "shardId-000000000000",
        7,
        br#"{"event_id": "bad-type", "user_id": "not-a-number"}"#.to_vec(),
    ));
    recs.push(record("shardId-000000000000", 8, br#"{"event_id": "x", "nope": 1}"#.to_vec()));
    spill.spill(&spilled(&table, &recs)).await?;

    let without = run(&deps(&h.emulator, spill.clone(), None).await, &options()).await;
    assert!(without.left_behind());
    assert!(without.failures[0].1.contains("no dead-letter queue"), "{:?}", without.failures);
    assert!(ids_in_table(&h.emulator, &table).is_empty());

    let dlq_path = dir.path().join("dlq.ndjson");
    let deps = deps(&h.emulator, spill.clone(), Some(file_dlq(&dlq_path))).await;
    let summary = run(&deps, &options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    assert_eq!((summary.rows, summary.dead_lettered), (6, 3));
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs[..6]));
    let mut reasons: Vec<Reason> = letters(&dlq_path).iter().map(|l| l.reason).collect();
    reasons.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(reasons, [Reason::InvalidJson, Reason::SchemaMismatch, Reason::UnknownField]);
    let letter =
        letters(&dlq_path).into_iter().find(|l| l.reason == Reason::SchemaMismatch).unwrap();
    assert_eq!(letter.field_path.as_deref(), Some("user_id"));
    assert_eq!(letter.table, table);
    assert!(spill.list(&SpillFilter::default()).await?.is_empty());
    h.shutdown().await;
    Ok(())
}

/// A record is lettered for the same reason by the backfill as by the
/// Lambda: bytes that are not a JSON object are `invalid_json` even where
/// the encoder stops at an unknown field before the syntax error (the
/// outage path spills records raw, so such a record reaches the backfill).
#[tokio::test]
async fn records_that_are_not_json_objects_are_lettered_as_the_lambda_letters_them()
-> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let recs = vec![
        record("shardId-000000000000", 0, br#"{"nope": 1, "event_id": "trunc"#.to_vec()),
        record("shardId-000000000000", 1, br#"[{"event_id": "in-an-array"}]"#.to_vec()),
        record("shardId-000000000000", 2, br#"{"event_id": "x", "nope": 1}"#.to_vec()),
    ];
    spill.spill(&spilled(&table, &recs)).await?;
    let dlq_path = dir.path().join("dlq.ndjson");
    let deps = deps(&h.emulator, spill.clone(), Some(file_dlq(&dlq_path))).await;
    let summary = run(&deps, &options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    let mut reasons: Vec<(String, Reason)> = letters(&dlq_path)
        .into_iter()
        .map(|l| (l.sequence_number.as_str().to_string(), l.reason))
        .collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    let reasons: Vec<Reason> = reasons.into_iter().map(|(_, r)| r).collect();
    assert_eq!(reasons, [Reason::InvalidJson, Reason::InvalidJson, Reason::UnknownField]);
    h.shutdown().await;
    Ok(())
}

/// An object whose records all turn out to be dead letters is settled
/// without a write stream: the streamed replay creates its PENDING stream
/// for the first row, and there is none (no stream left uncommitted).
#[tokio::test]
async fn an_object_of_dead_letters_only_creates_no_stream() -> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let recs = vec![
        record("shardId-000000000000", 0, br#"{"event_id": "trunc"#.to_vec()),
        record("shardId-000000000000", 1, br#"{"event_id": "x", "nope": 1}"#.to_vec()),
    ];
    spill.spill(&spilled(&table, &recs)).await?;
    let before = h.emulator.activity().borrow().streams_created;

    let dlq_path = dir.path().join("dlq.ndjson");
    let deps = deps(&h.emulator, spill.clone(), Some(file_dlq(&dlq_path))).await;
    let summary = run(&deps, &options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    assert_eq!((summary.rows, summary.dead_lettered), (0, 2));
    assert_eq!(letters(&dlq_path).len(), 2);
    assert!(spill.list(&SpillFilter::default()).await?.is_empty());
    assert_eq!(h.emulator.activity().borrow().streams_created, before, "no stream created");

    // The same run with one good record creates exactly one stream.
    let recs = records("shardId-000000000000", 2, 1);
    spill.spill(&spilled(&table, &recs)).await?;
    let summary = run(&deps, &options()).await;
    assert_eq!((summary.rows, summary.dead_lettered), (1, 0), "{:?}", summary.failures);
    assert_eq!(h.emulator.activity().borrow().streams_created, before + 1);
    h.shutdown().await;
    Ok(())
}

/// BigQuery down during the backfill: objects are left behind, nothing is
/// visible, the exit status would be non-zero; once it is back a rerun lands
/// everything once.
#[tokio::test]
async fn bigquery_down_leaves_objects_for_the_next_run() -> anyhow::Result<()> {
    let World { h, table, dir: _dir, spill } = World::start().await?;
    let recs = records("shardId-000000000000", 0, 15);
    spill.spill(&spilled(&table, &recs)).await?;
    let deps = deps(&h.emulator, spill.clone(), None).await;

    h.emulator.faults().set_down(true);
    let down = run(&deps, &options()).await;
    assert_eq!((down.failed, down.replayed), (1, 0));
    h.emulator.faults().set_down(false);
    assert!(ids_in_table(&h.emulator, &table).is_empty());

    // Answers lost after the rows were written: the appender resends at the
    // same offsets and ALREADY_EXISTS counts as written.
    h.emulator.faults().write_then_drop(1);
    let back = run(&deps, &options()).await;
    assert!(!back.left_behind(), "{:?}", back.failures);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs));
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn dry_run_counts_and_writes_nothing() -> anyhow::Result<()> {
    let World { h, table, dir: _dir, spill } = World::start().await?;
    let mut recs = records("shardId-000000000000", 0, 4);
    recs.push(record("shardId-000000000000", 4, b"not json".to_vec()));
    spill.spill(&spilled(&table, &recs)).await?;
    let deps = deps(&h.emulator, spill.clone(), None).await;
    let summary = run(&deps, &BackfillOptions { dry_run: true, ..options() }).await;
    assert!(summary.dry_run);
    assert_eq!(
        (summary.counted, summary.records, summary.rows, summary.dead_lettered),
        (1, 5, 4, 1)
    );
    assert!(!summary.left_behind());
    assert!(ids_in_table(&h.emulator, &table).is_empty());
    assert_eq!(spill.list(&SpillFilter::default()).await?.len(), 1);
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn filters_select_shards_and_time_and_archive_keeps_a_copy() -> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let a = records("shardId-000000000000", 0, 3);
    let b = records("shardId-000000000001", 10, 4);
    let mut old = spilled(&table, &b);
    old.spilled_at = "2026-01-01T00:00:00Z".parse()?;
    spill.spill(&spilled(&table, &a)).await?;
    spill.spill(&old).await?;
    let deps = deps(&h.emulator, spill.clone(), None).await;

    let only_b = Filter { shards: vec!["shardId-000000000001".into()], ..Filter::default() };
    let since = Filter { since: Some("2026-06-01T00:00:00Z".parse()?), ..only_b.clone() };
    let none = run(&deps, &BackfillOptions { filter: since, ..options() }).await;
    assert_eq!(none.objects, 0);

    let archived =
        BackfillOptions { filter: only_b, archive_to: Some("archive".into()), ..options() };
    let summary = run(&deps, &archived).await;
    assert_eq!((summary.objects, summary.replayed), (1, 1), "{:?}", summary.failures);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&b));
    let left = spill.list(&SpillFilter::default()).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].shard, "shardId-000000000000");
    let archive = dir.path().join("spill/archive");
    assert!(walk(&archive).iter().any(|p| p.ends_with(".ndjson.zst")), "{archive:?}");

    let rest = run(&deps, &options()).await;
    assert_eq!(rest.replayed, 1);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&[a, b].concat()));
    h.shutdown().await;
    Ok(())
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

/// Exactly-once mode consults the shard state: an object it lists is
/// replayed and unlisted; an unlisted one the state has moved past is an
/// orphan of a crashed invocation (its records landed through the retry) and
/// is moved to the quarantine unreplayed; an unlisted one beyond the state is
/// not committed yet and stays.
#[tokio::test]
async fn only_objects_the_shard_state_lists_are_replayed() -> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let state: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path().join("state")));
    let shard = "shardId-000000000000";
    let recs = records(shard, 0, 30);
    // A crashed invocation spilled records 0..5, then the retry spilled 0..10.
    let orphan = spilled(&table, &recs[..5]);
    let genuine = spilled(&table, &recs[..10]);
    // An invocation that spilled 20..25 has not committed its state yet.
    let pending = spilled(&table, &recs[20..25]);
    for b in [&orphan, &genuine, &pending] {
        spill.spill(b).await?;
    }
    commit_state(state.as_ref(), &table, &recs[..10], &[&genuine]).await;

    let mut deps = deps(&h.emulator, spill.clone(), None).await;
    deps.state = Some(Arc::clone(&state));
    let dry = run(&deps, &BackfillOptions { dry_run: true, ..options() }).await;
    assert_eq!((dry.counted, dry.quarantined, dry.failed), (1, 1, 1));
    assert_eq!(spill.list(&SpillFilter::default()).await?.len(), 3);

    let first = run(&deps, &options()).await;
    let counts = (first.replayed, first.quarantined, first.orphaned, first.failed);
    assert_eq!(counts, (1, 1, 0, 1), "{:?}", first.failures);
    let quarantined = dir.path().join("spill/quarantine").join(SpillKey::of(&orphan)?.path());
    assert!(quarantined.is_file(), "{}", quarantined.display());
    assert!(first.failures[0].1.contains("not committed"), "{:?}", first.failures);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs[..10]));
    assert!(listed(state.as_ref(), &table, shard).await.is_empty());
    let left = spill.list(&SpillFilter::default()).await?;
    assert_eq!(left.len(), 1);
    assert_eq!(SpillKey::of(&pending)?, left[0]);

    // The invocation commits: the object is listed and the state moves on.
    commit_state(state.as_ref(), &table, &recs[..25], &[&pending]).await;
    let second = run(&deps, &options()).await;
    assert_eq!((second.replayed, second.failed), (1, 0), "{:?}", second.failures);
    let mut want = recs[..10].to_vec();
    want.extend_from_slice(&recs[20..25]);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&want));
    h.shutdown().await;
    Ok(())
}

/// Objects spilled before keys carried a content digest
/// (`{first}-{last}.ndjson.zst`) are still listed, gated by their exact
/// path and replayed; an unlisted one the state has passed is still
/// quarantined.
#[tokio::test]
async fn objects_under_keys_without_a_digest_still_replay() -> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let state: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path().join("state")));
    let shard = "shardId-000000000000";
    let recs = records(shard, 0, 10);
    let root = dir.path().join("spill");
    let mut legacy = Vec::new();
    for b in [&spilled(&table, &recs[..5]), &spilled(&table, &recs[..10])] {
        let key = spill.spill(b).await?;
        let old = SpillKey { digest: None, ..key.clone() };
        std::fs::rename(root.join(key.path()), root.join(old.path()))?;
        legacy.push(old);
    }
    let (orphan, genuine) = (&legacy[0], &legacy[1]);
    assert_eq!(spill.list(&SpillFilter::default()).await?, legacy);
    commit_state_listing(state.as_ref(), &table, &recs, &[genuine.path()]).await;

    let mut deps = deps(&h.emulator, spill.clone(), None).await;
    deps.state = Some(Arc::clone(&state));
    let summary = run(&deps, &options()).await;
    let counts = (summary.replayed, summary.quarantined, summary.failed);
    assert_eq!(counts, (1, 1, 0), "{:?}", summary.failures);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs));
    assert!(root.join("quarantine").join(orphan.path()).is_file());
    assert!(listed(state.as_ref(), &table, shard).await.is_empty());
    assert!(spill.list(&SpillFilter::default()).await?.is_empty());
    Ok(())
}

/// A row too large for any AppendRows request under the limits goes to the
/// dead-letter queue; the rest of the object lands.
#[tokio::test]
async fn a_row_too_large_for_a_request_is_dead_lettered() -> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let mut recs = records("shardId-000000000000", 0, 5);
    let huge = serde_json::json!({"event_id": "huge", "type": "x".repeat(8192)}).to_string();
    recs.push(record("shardId-000000000000", 5, huge.into_bytes()));
    spill.spill(&spilled(&table, &recs)).await?;
    let dlq_path = dir.path().join("dlq.ndjson");
    let mut deps = deps(&h.emulator, spill.clone(), Some(file_dlq(&dlq_path))).await;
    // Below what config accepts, to keep the record small: built field by field.
    deps.limits = kinesis_bigquery::batch::BatchLimits {
        max_rows: 7,
        max_bytes: 4096,
        window: Duration::ZERO,
    };

    let dry = run(&deps, &BackfillOptions { dry_run: true, ..options() }).await;
    assert_eq!((dry.rows, dry.dead_lettered), (5, 1));
    let summary = run(&deps, &options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    assert_eq!((summary.rows, summary.dead_lettered), (5, 1));
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs[..5]));
    let letters = letters(&dlq_path);
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].reason, Reason::RowTooLarge);
    // The Lambda's letter for the same record: it says what the limit is.
    assert!(letters[0].error.contains("BATCH_MAX_BYTES"), "{:?}", letters[0].error);
    h.shutdown().await;
    Ok(())
}

/// Column names that are not proto identifiers reach the table: the writer
/// descriptor carries their `column_name` option.
#[tokio::test]
async fn columns_whose_names_are_not_proto_identifiers() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let schema = kinesis_bigquery::emulator::parse_bq_schema(
        r#"[{"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "user-name", "type": "STRING"}]"#,
    )?;
    let table = h.new_table(schema)?;
    let dir = tempfile::tempdir()?;
    let spill = file_spill(&dir);
    let recs: Vec<SourceRecord> = (0..3)
        .map(|i| {
            let json =
                serde_json::json!({"event_id": format!("e{i}"), "user-name": format!("ü{i}")});
            record("shardId-000000000000", i, json.to_string().into_bytes())
        })
        .collect();
    spill.spill(&spilled(&table, &recs)).await?;
    let summary = run(&deps(&h.emulator, spill, None).await, &options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    let rows = h.emulator.read_rows(&table)?;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["user-name"], "ü0");
    h.shutdown().await;
    Ok(())
}

/// Objects of one shard replayed concurrently all unlist themselves from the
/// same state object: compare-and-swap losers reload and retry.
#[tokio::test]
async fn concurrent_unlisting_from_one_shard_state() -> anyhow::Result<()> {
    let World { h, table, dir, spill } = World::start().await?;
    let state: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path().join("state")));
    let shard = "shardId-000000000000";
    let recs = records(shard, 0, 48);
    let batches: Vec<_> = recs.chunks(6).map(|c| spilled(&table, c)).collect();
    for b in &batches {
        spill.spill(b).await?;
    }
    commit_state(state.as_ref(), &table, &recs, &batches.iter().collect::<Vec<_>>()).await;
    let mut deps = deps(&h.emulator, spill.clone(), None).await;
    deps.state = Some(Arc::clone(&state));
    let summary = run(&deps, &BackfillOptions { concurrency: 8, ..options() }).await;
    assert_eq!((summary.replayed, summary.failed), (8, 0), "{:?}", summary.failures);
    assert!(listed(state.as_ref(), &table, shard).await.is_empty());
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs));
    h.shutdown().await;
    Ok(())
}
