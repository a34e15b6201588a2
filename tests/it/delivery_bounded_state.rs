//! Issue 12, scenario 6, "Bounded state": during an outage every invocation
//! spills and its state lists the object. The state must stay small however
//! long the outage (older paths move into spill manifests), and the backfill
//! must still replay exactly the objects the state vouches for.

use crate::backfill_support;
use crate::delivery_scenarios::{ARN, SHARD, Setup, TABLE, good, keys, setup, table_schema};
use std::sync::Arc;

use kinesis_bigquery::delivery::spill_manifest::SPILL_LIST_CAP;
use kinesis_bigquery::delivery::store::StateStore;
use kinesis_bigquery::delivery::{
    Boundary, CrashPoints, Landing, RecordOutcome, WriteMode, state_key,
};
use kinesis_bigquery::spill::{SpillFilter, SpillReason, SpillSink, SpilledBatch};

const SPILL: RecordOutcome = RecordOutcome::Landed(Landing::Spill);

/// The state object's size in bytes, as stored.
async fn state_bytes(s: &Setup) -> usize {
    let key = state_key(&s.table, ARN, SHARD);
    s.state.load(&key).await.unwrap().map(|(b, _)| b.len()).unwrap_or(0)
}

/// Drops the table and runs `n` invocations of one record each from
/// `first`: every one spills. Returns the largest state seen.
async fn outage(s: &Setup, first: u64, n: u64) -> usize {
    let mut largest = 0;
    for seq in first..first + n {
        let out = s.run(&[good(seq)]).await;
        assert_eq!(out.records, vec![SPILL], "invocation {seq}: {out:?}");
        largest = largest.max(state_bytes(s).await);
    }
    largest
}

/// Bytes of state allowed whatever the outage: the inline cap of paths
/// (~100 bytes each) plus the stream, positions and one manifest key.
const BOUND: usize = 10_000;

#[tokio::test]
async fn the_state_stays_bounded_and_the_backfill_replays_what_it_vouches_for() -> anyhow::Result<()>
{
    let s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);
    s.emu.drop_table(&s.table)?;
    let n = 1_000;
    let largest = outage(&s, 2, n).await;
    assert!(largest < BOUND, "state grew to {largest} bytes over {n} spilling invocations");
    assert!(s.state().await.spill_manifest.is_some(), "older paths live in manifests");
    assert_eq!(s.spill.list(&SpillFilter::default()).await?.len(), n as usize);

    // An object the state never vouched for, of records that landed in the
    // table (a killed attempt's): it must not be replayed.
    let orphan = SpilledBatch::new(
        s.table.clone(),
        SpillReason::RetriesExhausted,
        "UNAVAILABLE",
        &[good(1).unwrap()],
    );
    s.spill.spill(&orphan).await?;

    s.emu.create_table(&s.table, table_schema())?;
    let mut deps = backfill_support::deps(&s.emu, s.spill.clone(), None).await;
    let state: Arc<dyn StateStore> = s.state.clone();
    deps.state = Some(state);
    let summary = backfill_support::run(&deps, &backfill_support::options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    assert_eq!((summary.replayed, summary.quarantined), (n, 1), "{summary:?}");
    let mut rows = s.keys();
    rows.dedup();
    assert_eq!(rows.len(), s.keys().len(), "no record twice");
    assert_eq!(rows.len(), n as usize, "the dropped table holds the replayed records only");
    let after = s.state().await;
    assert!(after.spills.is_empty() && after.spill_manifest.is_none(), "{after:?}");

    // A second outage starts a new chain; the first one's paths are gone.
    s.emu.drop_table(&s.table)?;
    assert!(outage(&s, 2 + n, 100).await < BOUND);
    s.emu.create_table(&s.table, table_schema())?;
    let summary = backfill_support::run(&deps, &backfill_support::options()).await;
    assert_eq!((summary.replayed, summary.quarantined), (100, 0), "{summary:?}");
    assert_eq!(s.keys().len(), 100, "the table, dropped again, holds the second outage's");
    Ok(())
}

/// The measurement asked for by the issue: the state's size after 10,000
/// spilling invocations (`cargo test --test it -- --ignored
/// delivery_bounded_state` prints it).
#[tokio::test]
#[ignore = "a measurement: 10,000 invocations"]
async fn state_size_after_ten_thousand_spilling_invocations() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);
    s.emu.drop_table(&s.table)?;
    let largest = outage(&s, 2, 10_000).await;
    let last = state_bytes(&s).await;
    println!("state after 10,000 spilling invocations: {last} bytes (largest {largest})");
    assert!(largest < BOUND);
    Ok(())
}

/// A crash between writing a manifest and the state that names it leaves an
/// unreferenced manifest; the retry writes the same one (same content, same
/// key) and the backfill still replays every spilled record exactly once.
#[tokio::test]
async fn a_crash_before_the_state_names_its_new_manifest_loses_nothing() -> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);
    s.emu.drop_table(&s.table)?;
    let cap = SPILL_LIST_CAP as u64;
    outage(&s, 2, cap).await;
    assert!(s.state().await.spill_manifest.is_none(), "the cap is not passed yet");

    let next = 2 + cap;
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::BeforeStateWrite)));
    assert!(s.run(&[good(next)]).await.gave_back.is_some());
    s.deps.crash = None;
    let kept = s.state().await;
    assert_eq!((kept.spills.len(), kept.spill_manifest), (SPILL_LIST_CAP, None));

    assert_eq!(s.run(&[good(next)]).await.records, vec![SPILL]);
    let state = s.state().await;
    assert!(state.spill_manifest.is_some() && state.spills.len() == 1, "{state:?}");

    s.emu.create_table(&s.table, table_schema())?;
    let mut deps = backfill_support::deps(&s.emu, s.spill.clone(), None).await;
    let store: Arc<dyn StateStore> = s.state.clone();
    deps.state = Some(store);
    let summary = backfill_support::run(&deps, &backfill_support::options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    assert_eq!(summary.replayed, cap + 1, "{summary:?}");
    let expected: Vec<u64> = (2..=next).collect();
    assert_eq!(s.keys(), keys(&expected));
    Ok(())
}
