//! The backfill never deletes what it did not replay unless asked (issue 12,
//! scenario 5): objects another `WRITE_MODE` wrote are left alone and
//! reported; orphans (unlisted, the shard state past them) go to
//! `quarantine/`, not the bin, unless `--delete-orphans`; a deleted state
//! object leaves its objects pending; a CDC backfill given a state store
//! replays its objects instead of gating them on a state CDC never writes.
//! On `file://` and on S3 (moto), against the emulator over gRPC.

use crate::backfill_support;
use crate::cdc_support::keyed_schema;
use crate::common;

use std::sync::Arc;

use futures::future::BoxFuture;

use backfill_support::*;
use common::Harness;
use kinesis_bigquery::backfill::BackfillOptions;
use kinesis_bigquery::cdc::CdcSettings;
use kinesis_bigquery::delivery::WriteMode;
use kinesis_bigquery::delivery::store::{FileStateStore, S3StateStore, StateStore};
use kinesis_bigquery::source::SourceRecord;
use kinesis_bigquery::spill::{FileSpill, S3Spill, SpillFilter, SpillKey, SpillSink, SpilledBatch};
use kinesis_bigquery::table::TableName;

const SHARD: &str = "shardId-000000000000";

/// Reads a relative path under the spill root, `None` when absent.
type RawRead = Box<dyn Fn(&str) -> BoxFuture<'static, Option<Vec<u8>>> + Send + Sync>;

/// A spillover and a state store, on files or in one moto bucket.
struct Stores {
    spill: Arc<dyn SpillSink>,
    state: Arc<dyn StateStore>,
    /// Reads an object the spillover's `list` does not show (quarantine).
    raw: RawRead,
    _dir: tempfile::TempDir,
}

async fn stores(h: &Harness, on_s3: bool) -> anyhow::Result<Stores> {
    let dir = tempfile::tempdir()?;
    if on_s3 {
        let bucket = h.new_bucket().await?;
        let s3 = h.moto.s3_client();
        let spill = Arc::new(S3Spill::new(s3.clone(), bucket.clone(), "spill".into()));
        let state = Arc::new(S3StateStore::new(s3.clone(), bucket.clone(), "state".into()));
        let raw = Box::new(move |rel: &str| {
            let (s3, bucket, key) = (s3.clone(), bucket.clone(), format!("spill/{rel}"));
            let fut: BoxFuture<'static, Option<Vec<u8>>> = Box::pin(async move {
                let out = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
                Some(out.body.collect().await.ok()?.into_bytes().to_vec())
            });
            fut
        });
        return Ok(Stores { spill, state, raw, _dir: dir });
    }
    let root = dir.path().join("spill");
    let spill = Arc::new(FileSpill::new(root.clone()));
    let state = Arc::new(FileStateStore::new(dir.path().join("state")));
    let raw = Box::new(move |rel: &str| {
        let path = root.join(rel);
        let fut: BoxFuture<'static, Option<Vec<u8>>> =
            Box::pin(async move { std::fs::read(path).ok() });
        fut
    });
    Ok(Stores { spill, state, raw, _dir: dir })
}

fn spilled_as(table: &TableName, records: &[SourceRecord], mode: WriteMode) -> SpilledBatch {
    SpilledBatch { write_mode: Some(mode), ..spilled(table, records) }
}

async fn listed_keys(spill: &dyn SpillSink) -> anyhow::Result<Vec<SpillKey>> {
    Ok(spill.list(&SpillFilter::default()).await?)
}

/// Switching `WRITE_MODE` cannot make pending data disappear: each mode's
/// backfill replays its own objects and leaves the other's, reported, with a
/// non-zero exit; together they land every record once.
async fn other_mode_objects_are_left_alone(on_s3: bool) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let s = stores(&h, on_s3).await?;
    let recs = records(SHARD, 0, 20);
    let exactly_once = spilled_as(&table, &recs[..10], WriteMode::ExactlyOnce);
    let at_least_once = spilled_as(&table, &recs[10..], WriteMode::AtLeastOnce);
    s.spill.spill(&exactly_once).await?;
    s.spill.spill(&at_least_once).await?;
    // The shard state is past both and lists the exactly-once object: the
    // at-least-once one would have looked like an orphan.
    commit_state(s.state.as_ref(), &table, &recs, &[&exactly_once]).await;

    let mut eo = deps(&h.emulator, Arc::clone(&s.spill), None).await;
    eo.state = Some(Arc::clone(&s.state));
    let first = run(&eo, &options()).await;
    assert_eq!((first.replayed, first.other_mode, first.failed), (1, 1, 0), "{first:?}");
    assert!(first.left_behind(), "another mode's object must make the run exit non-zero");
    let why = &first.failures[0].1;
    assert!(why.contains("WRITE_MODE=at_least_once") && why.contains("exactly_once"), "{why}");
    assert_eq!(listed_keys(s.spill.as_ref()).await?, [SpillKey::of(&at_least_once)?]);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs[..10]));

    let alo = deps(&h.emulator, Arc::clone(&s.spill), None).await;
    let second = run(&alo, &options()).await;
    assert_eq!((second.replayed, second.other_mode), (1, 0), "{second:?}");
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs));
    assert!(listed_keys(s.spill.as_ref()).await?.is_empty());
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn other_mode_objects_are_left_alone_on_files() -> anyhow::Result<()> {
    other_mode_objects_are_left_alone(false).await
}

#[tokio::test]
async fn other_mode_objects_are_left_alone_on_s3() -> anyhow::Result<()> {
    other_mode_objects_are_left_alone(true).await
}

/// Orphans go to `quarantine/` (not replayed, not deleted); a different copy
/// already there is not overwritten; `--delete-orphans` deletes; a missing
/// state object leaves objects where they are.
async fn orphans_are_quarantined_unless_asked(on_s3: bool) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let s = stores(&h, on_s3).await?;
    let recs = records(SHARD, 0, 12);
    let orphan = spilled_as(&table, &recs[..6], WriteMode::ExactlyOnce);
    let key = SpillKey::of(&orphan)?;
    s.spill.spill(&orphan).await?;
    let mut deps = deps(&h.emulator, Arc::clone(&s.spill), None).await;
    deps.state = Some(Arc::clone(&s.state));

    // No state object (never written, or deleted): pending, left in place.
    let none = run(&deps, &options()).await;
    assert_eq!((none.failed, none.quarantined, none.orphaned), (1, 0, 0), "{none:?}");
    assert_eq!(listed_keys(s.spill.as_ref()).await?, std::slice::from_ref(&key));

    // The state moved past it without listing it: an orphan, quarantined.
    commit_state(s.state.as_ref(), &table, &recs, &[]).await;
    let bytes = (s.raw)(&key.path()).await.expect("the object is there");
    let first = run(&deps, &options()).await;
    assert_eq!((first.quarantined, first.orphaned, first.failed), (1, 0, 0), "{first:?}");
    assert!(!first.left_behind());
    assert!(listed_keys(s.spill.as_ref()).await?.is_empty());
    let quarantined = format!("quarantine/{}", key.path());
    assert_eq!((s.raw)(&quarantined).await, Some(bytes.clone()), "moved, byte for byte");
    assert!(ids_in_table(&h.emulator, &table).is_empty(), "an orphan is not replayed");

    // The same key spilled again (different bytes): the copy in quarantine
    // is not overwritten, and the object stays where it is, reported.
    let again = SpilledBatch { error: "spilled again".into(), ..orphan.clone() };
    s.spill.spill(&again).await?;
    let second = run(&deps, &options()).await;
    assert_eq!((second.failed, second.quarantined), (1, 0), "{second:?}");
    assert!(second.failures[0].1.contains("already holds a different object"), "{second:?}");
    assert_eq!(listed_keys(s.spill.as_ref()).await?, std::slice::from_ref(&key));
    assert_eq!((s.raw)(&quarantined).await, Some(bytes));

    // Asked to: deleted, not replayed.
    let third = run(&deps, &BackfillOptions { delete_orphans: true, ..options() }).await;
    assert_eq!((third.orphaned, third.quarantined, third.failed), (1, 0, 0), "{third:?}");
    assert!(listed_keys(s.spill.as_ref()).await?.is_empty());
    assert!(ids_in_table(&h.emulator, &table).is_empty());
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn orphans_are_quarantined_unless_asked_on_files() -> anyhow::Result<()> {
    orphans_are_quarantined_unless_asked(false).await
}

#[tokio::test]
async fn orphans_are_quarantined_unless_asked_on_s3() -> anyhow::Result<()> {
    orphans_are_quarantined_unless_asked(true).await
}

/// The guard: a CDC backfill given a state store replays its objects. A CDC
/// Lambda keeps no shard state, so gating on one (here an exactly-once
/// state left from before the switch, past the records) would have called
/// the object an orphan and replayed nothing.
#[tokio::test]
async fn a_cdc_backfill_given_a_state_store_replays_its_objects() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_table(keyed_schema())?;
    h.emulator.set_primary_key(&table, &["id"])?;
    let s = stores(&h, false).await?;
    let changes = [(1, 10, "c"), (2, 20, "c"), (1, 11, "u")];
    let recs: Vec<SourceRecord> = changes
        .iter()
        .enumerate()
        .map(|(i, (id, v, op))| {
            let data = serde_json::json!({"id": id, "v": v, "op": op}).to_string();
            record(SHARD, i as u64, data.into_bytes())
        })
        .collect();
    s.spill.spill(&spilled_as(&table, &recs, WriteMode::Cdc)).await?;
    commit_state(s.state.as_ref(), &table, &recs, &[]).await;

    let mut deps = deps(&h.emulator, Arc::clone(&s.spill), None).await;
    deps.cdc = Some(CdcSettings {
        change_type_field: Some("op".parse().map_err(anyhow::Error::msg)?),
        sequence_field: None,
    });
    deps.state = Some(Arc::clone(&s.state));
    let summary = run(&deps, &options()).await;
    assert_eq!((summary.replayed, summary.failed, summary.quarantined), (1, 0, 0), "{summary:?}");
    let mut rows: Vec<(String, String)> = h
        .emulator
        .read_rows(&table)?
        .iter()
        .map(|r| (r["id"].to_string(), r["v"].to_string()))
        .collect();
    rows.sort();
    assert_eq!(rows, [("\"1\"".into(), "\"11\"".into()), ("\"2\"".into(), "\"20\"".into())]);
    assert!(listed_keys(s.spill.as_ref()).await?.is_empty());
    h.shutdown().await;
    Ok(())
}
