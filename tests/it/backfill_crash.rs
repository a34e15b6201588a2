//! Backfill crash safety (issue 6 acceptance): a crash at every step boundary
//! of an object's replay — after the stream is created, after the appends,
//! after finalize, after the marker, after the commit, after unlisting it
//! from the shard state (before the delete), after the delete — and then a
//! rerun: every spilled record is in the table
//! exactly once, the spillover is empty and the shard states list no
//! spillover object. Against the emulator over gRPC
//! and moto S3 through the real AWS SDK (and once with `file://`).

use crate::backfill_support;
use crate::common;

use std::sync::Arc;

use backfill_support::*;
use common::Harness;
use kinesis_bigquery::backfill::{BackfillOptions, CrashPoint};
use kinesis_bigquery::delivery::store::{FileStateStore, S3StateStore, StateStore};
use kinesis_bigquery::source::SourceRecord;
use kinesis_bigquery::spill::{FileSpill, S3Spill, SpillFilter, SpillSink};
use kinesis_bigquery::table::TableName;

/// Spillover and state store in one moto bucket, as the template lays them out.
async fn s3_stores(h: &Harness) -> anyhow::Result<(Arc<dyn SpillSink>, Arc<dyn StateStore>)> {
    let bucket = h.new_bucket().await?;
    let spill = Arc::new(S3Spill::new(h.moto.s3_client(), bucket.clone(), "spill".into()));
    let state = Arc::new(S3StateStore::new(h.moto.s3_client(), bucket, "state".into()));
    Ok((spill, state))
}

/// Spills two objects (two shards, 20 and 9 records), commits the shard
/// states listing them as the Lambda does, and returns their records.
async fn spill_two(
    spill: &dyn SpillSink,
    state: &dyn StateStore,
    table: &TableName,
) -> anyhow::Result<Vec<SourceRecord>> {
    let a = records("shardId-000000000000", 0, 20);
    let b = records("shardId-000000000001", 100, 9);
    for recs in [&a, &b] {
        let batch = spilled(table, recs);
        spill.spill(&batch).await?;
        commit_state(state, table, recs, &[&batch]).await;
    }
    Ok([a, b].concat())
}

async fn deps_with_state(
    h: &Harness,
    spill: &Arc<dyn SpillSink>,
    state: &Arc<dyn StateStore>,
) -> kinesis_bigquery::backfill::BackfillDeps {
    let mut deps = deps(&h.emulator, Arc::clone(spill), None).await;
    deps.state = Some(Arc::clone(state));
    deps
}

#[tokio::test]
async fn a_crash_at_any_step_then_a_rerun_lands_every_record_once() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    for point in CrashPoint::ALL {
        let table = h.new_events_table()?;
        let (spill, state) = s3_stores(&h).await?;
        let all = spill_two(spill.as_ref(), state.as_ref(), &table).await?;
        let deps = deps_with_state(&h, &spill, &state).await;

        let crashed = run(&deps, &BackfillOptions { crash_at: Some(point), ..options() }).await;
        assert!(crashed.left_behind(), "{point:?}: the crash must leave the objects behind");
        assert_eq!(crashed.failed, 2, "{point:?}");
        let visible = ids_in_table(&h.emulator, &table);
        match point {
            // Nothing is visible before the commit.
            CrashPoint::AfterCreate
            | CrashPoint::AfterAppend
            | CrashPoint::AfterFinalize
            | CrashPoint::AfterMarker => assert!(visible.is_empty(), "{point:?}: {visible:?}"),
            CrashPoint::AfterCommit | CrashPoint::AfterUnlist | CrashPoint::AfterDelete => {
                assert_eq!(visible, ids_of(&all), "{point:?}")
            }
        }

        let rerun = run(&deps, &options()).await;
        assert!(!rerun.left_behind(), "{point:?}: {:?}", rerun.failures);
        assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&all), "{point:?}: exactly once");
        assert!(spill.list(&SpillFilter::default()).await?.is_empty(), "{point:?}");
        for shard in ["shardId-000000000000", "shardId-000000000001"] {
            assert!(listed(state.as_ref(), &table, shard).await.is_empty(), "{point:?}");
        }
        let expected_status = match point {
            // The marker's stream was committed by the crashed run: only the
            // unlisting and removal were left.
            CrashPoint::AfterCommit => (0, 2, 0),
            // Unlisted, so no longer genuine, but its marker names a
            // committed stream: done work, only the removal was left (not an
            // orphan for the quarantine).
            CrashPoint::AfterUnlist => (0, 2, 0),
            // Gone already.
            CrashPoint::AfterDelete => (0, 0, 0),
            _ => (2, 0, 0),
        };
        let status = (rerun.replayed, rerun.already_committed, rerun.orphaned + rerun.quarantined);
        assert_eq!(status, expected_status, "{point:?}");
    }
    h.shutdown().await;
    Ok(())
}

/// One run after another, each crashing one step further, then a clean run:
/// leftovers of every kind (abandoned streams, markers of uncommitted
/// streams, committed-but-not-deleted objects) pile up and are all resolved.
#[tokio::test]
async fn crashes_in_sequence_then_a_clean_run() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let (spill, state) = s3_stores(&h).await?;
    let all = spill_two(spill.as_ref(), state.as_ref(), &table).await?;
    let deps = deps_with_state(&h, &spill, &state).await;
    for point in CrashPoint::ALL {
        run(&deps, &BackfillOptions { crash_at: Some(point), ..options() }).await;
        let visible = ids_in_table(&h.emulator, &table);
        assert!(visible.is_empty() || visible == ids_of(&all), "{point:?}: {visible:?}");
    }
    let last = run(&deps, &options()).await;
    assert!(!last.left_behind(), "{:?}", last.failures);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&all));
    assert!(spill.list(&SpillFilter::default()).await?.is_empty());
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn file_spillover_crash_after_marker() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let dir = tempfile::tempdir()?;
    let spill: Arc<dyn SpillSink> = Arc::new(FileSpill::new(dir.path().join("spill")));
    let state: Arc<dyn StateStore> = Arc::new(FileStateStore::new(dir.path().join("state")));
    let all = spill_two(spill.as_ref(), state.as_ref(), &table).await?;
    let deps = deps_with_state(&h, &spill, &state).await;
    let crashed =
        run(&deps, &BackfillOptions { crash_at: Some(CrashPoint::AfterMarker), ..options() }).await;
    assert_eq!(crashed.failed, 2);
    let rerun = run(&deps, &options()).await;
    assert_eq!((rerun.replayed, rerun.failed), (2, 0), "{:?}", rerun.failures);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&all));
    assert!(spill.list(&SpillFilter::default()).await?.is_empty());
    h.shutdown().await;
    Ok(())
}
