//! Exactly-once under the failures a deployment meets in its first month
//! (issue 12), one deterministic scenario each, against the in-process
//! emulator over real gRPC with `file://` state, spillover and dead letters.

use crate::backfill_support;
use crate::delivery_scenarios::{TABLE, good, keys, setup};
use std::sync::Arc;

use kinesis_bigquery::delivery::store::StateStore;
use kinesis_bigquery::delivery::{Boundary, CrashPoints, Landing, RecordOutcome, WriteMode};
use kinesis_bigquery::spill::{SpillFilter, SpillReason, SpillSink};

const SPILL: RecordOutcome = RecordOutcome::Landed(Landing::Spill);

/// Scenario 2: an attempt appends a batch and dies before its commit; the
/// event source mapping gives up on that batch and hands over the next one.
/// The rows at the state's `next_offset` are the discarded batch's, not the
/// new one's: the new records must be written, not reported landed.
#[tokio::test]
async fn a_batch_after_a_discarded_one_is_written_not_mistaken_for_it() -> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);
    let discarded: Vec<_> = (2..=4).map(good).collect();
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    let crashed = s.run(&discarded).await;
    assert!(crashed.gave_back.is_some());
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4]), "the discarded batch's rows landed");
    s.deps.crash = None;

    // MaximumRetryAttempts reached: records 2..=4 are skipped.
    let out = s.run(&[good(5), good(6)]).await;
    assert_eq!(out.records, vec![TABLE, TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5, 6]), "5 and 6 are in the table");
    assert_eq!(out.stats.discarded_landed, 3, "{:?}", out.stats);
    // And the shard goes on from there.
    let out = s.run(&[good(7)]).await;
    assert_eq!(out.records, vec![TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5, 6, 7]));
    Ok(())
}

/// The common path after the claim: one claim write and one commit per
/// invocation, no finalize, no rotation.
#[tokio::test]
async fn the_common_path_costs_a_claim_and_a_commit() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    for seq in 2..=4 {
        let out = s.run(&[good(seq)]).await;
        assert_eq!(out.records, vec![TABLE]);
        assert_eq!(
            (out.stats.state_writes, out.stats.claims, out.stats.finalizes, out.stats.rotations),
            (2, 1, 0, 0),
            "{:?}",
            out.stats
        );
    }
    Ok(())
}

/// Scenario 1, nothing in doubt: a quiet shard's stream is garbage-collected
/// (or its table re-created). The next invocation rotates at once and
/// writes; nothing is spilled.
#[tokio::test]
async fn a_lost_stream_with_nothing_in_doubt_rotates_at_once() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);
    s.emu.expire_stream(&s.state().await.write_stream)?;
    let out = s.run(&[good(2), good(3)]).await;
    assert_eq!(out.records, vec![TABLE, TABLE], "{out:?}");
    assert_eq!((out.stats.spilled, out.stats.rotations), (0, 1), "{:?}", out.stats);
    assert_eq!(s.keys(), keys(&[1, 2, 3]));
    assert!(s.spill.list(&SpillFilter::default()).await?.is_empty());
    // The table is re-created (CREATE OR REPLACE): same again.
    s.emu.recreate_table(&s.table)?;
    assert_eq!(s.run(&[good(4)]).await.records, vec![TABLE]);
    assert_eq!(s.run(&[good(5)]).await.records, vec![TABLE]);
    assert_eq!(s.keys(), keys(&[4, 5]));
    Ok(())
}

/// Scenario 1, something in doubt: an attempt appended and died, and the
/// stream is lost before the retry can learn its end. Those records are
/// spilled marked as unresolvable, the shard writes again at once, and the
/// backfill replays them under the at-least-once policy, counted.
#[tokio::test]
async fn records_in_doubt_on_a_lost_stream_are_spilled_and_replayed_at_least_once()
-> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    assert!(s.run(&[good(2), good(3)]).await.gave_back.is_some());
    s.deps.crash = None;
    s.emu.expire_stream(&s.state().await.write_stream)?;
    let out = s.run(&[good(2), good(3)]).await;
    assert_eq!(out.records, vec![SPILL, SPILL], "{out:?}");
    assert_eq!(out.stats.lost_in_doubt, 2);
    let objects = s.spill.list(&SpillFilter::default()).await?;
    assert_eq!(objects.len(), 1);
    let spilled = s.spill.read(&objects[0]).await?;
    assert_eq!(spilled.reason, SpillReason::StreamLost);
    assert!(spilled.records.iter().all(|r| r.offset.is_none()));
    // The very next invocation writes rows again.
    assert_eq!(s.run(&[good(4)]).await.records, vec![TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4]));

    let mut deps = backfill_support::deps(&s.emu, s.spill.clone(), None).await;
    let state: Arc<dyn StateStore> = s.state.clone();
    deps.state = Some(state);
    let summary = backfill_support::run(&deps, &backfill_support::options()).await;
    assert_eq!((summary.replayed, summary.at_least_once), (1, 2), "{summary:?}");
    // 2 and 3 had landed before the stream was lost: at least once, as documented.
    assert_eq!(s.keys(), keys(&[1, 2, 2, 3, 3, 4]));
    Ok(())
}

/// Scenario 1, the table is gone for good: everything is spilled, each
/// invocation ends (no loop), and the spillover says why.
#[tokio::test]
async fn a_table_that_is_gone_spills_everything_without_looping() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    s.emu.drop_table(&s.table)?;
    for seq in [2, 3] {
        let out = s.run(&[good(seq)]).await;
        assert_eq!(out.records, vec![SPILL], "{out:?}");
        assert!(out.stats.finalizes <= 1, "{:?}", out.stats);
    }
    assert_eq!(s.spill.list(&SpillFilter::default()).await?.len(), 2);
    Ok(())
}
