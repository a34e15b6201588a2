//! Backfill crash safety (issue 6 acceptance): a crash at every step boundary
//! of an object's replay — after the stream is created, after the appends,
//! after finalize, after the marker, after the commit (before the delete),
//! after the delete — and then a rerun: every spilled record is in the table
//! exactly once, and the spillover is empty. Against the emulator over gRPC
//! and moto S3 through the real AWS SDK (and once with `file://`).

mod backfill_support;
mod common;

use std::sync::Arc;

use backfill_support::*;
use common::Harness;
use kinesis_bigquery::backfill::{BackfillOptions, CrashPoint};
use kinesis_bigquery::spill::{FileSpill, S3Spill, SpillFilter, SpillSink};

async fn s3_spill(h: &Harness) -> anyhow::Result<Arc<dyn SpillSink>> {
    let bucket = h.new_bucket().await?;
    Ok(Arc::new(S3Spill::new(h.moto.s3_client(), bucket, "spill".into())))
}

/// Spills two objects (two shards, 20 and 9 records) and returns their records.
async fn spill_two(
    spill: &dyn SpillSink,
    table: &kinesis_bigquery::table::TableName,
) -> anyhow::Result<Vec<kinesis_bigquery::source::SourceRecord>> {
    let a = records("shardId-000000000000", 0, 20);
    let b = records("shardId-000000000001", 100, 9);
    spill.spill(&spilled(table, &a)).await?;
    spill.spill(&spilled(table, &b)).await?;
    Ok([a, b].concat())
}

#[tokio::test]
async fn a_crash_at_any_step_then_a_rerun_lands_every_record_once() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    for point in CrashPoint::ALL {
        let table = h.new_events_table()?;
        let spill = s3_spill(&h).await?;
        let all = spill_two(spill.as_ref(), &table).await?;
        let deps = deps(&h.emulator, Arc::clone(&spill), None).await;

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
            CrashPoint::AfterCommit | CrashPoint::AfterDelete => {
                assert_eq!(visible, ids_of(&all), "{point:?}")
            }
        }

        let rerun = run(&deps, &options()).await;
        assert!(!rerun.left_behind(), "{point:?}: {:?}", rerun.failures);
        assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&all), "{point:?}: exactly once");
        assert!(spill.list(&SpillFilter::default()).await?.is_empty(), "{point:?}");
        let expected_status = match point {
            // The marker's stream was committed by the crashed run: only the
            // removal was left (AfterDelete: the object is already gone).
            CrashPoint::AfterCommit => (0, 2),
            CrashPoint::AfterDelete => (0, 0),
            _ => (2, 0),
        };
        assert_eq!((rerun.replayed, rerun.already_committed), expected_status, "{point:?}");
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
    let spill = s3_spill(&h).await?;
    let all = spill_two(spill.as_ref(), &table).await?;
    let deps = deps(&h.emulator, Arc::clone(&spill), None).await;
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
    let spill: Arc<dyn SpillSink> = Arc::new(FileSpill::new(dir.path().to_path_buf()));
    let all = spill_two(spill.as_ref(), &table).await?;
    let deps = deps(&h.emulator, Arc::clone(&spill), None).await;
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
