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

/// What the claim costs in bytes: one 8-byte fingerprint per row it maps,
/// base64 in the state's JSON (under 11 bytes a row), written once before
/// the first append; the commit that follows leaves it clean again.
#[tokio::test]
async fn the_claim_costs_under_eleven_bytes_a_row() -> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    let key = kinesis_bigquery::delivery::state_key(
        &s.table,
        crate::delivery_scenarios::ARN,
        crate::delivery_scenarios::SHARD,
    );
    let clean = s.state.load(&key).await?.map(|(b, _)| b.len()).unwrap_or(0);
    // Stop right after the claim is written: that is the state it wrote.
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterStateWrite)));
    let batch: Vec<_> = (2..=1001).map(good).collect();
    assert!(s.run(&batch).await.gave_back.is_some());
    let claimed = s.state.load(&key).await?.map(|(b, _)| b.len()).unwrap_or(0);
    let per_row = (claimed - clean) as f64 / 1000.0;
    println!("claim of 1000 rows: {} bytes of state ({per_row:.2} bytes a row)", claimed - clean);
    assert!(per_row < 11.0, "{per_row} bytes a row");
    s.deps.crash = None;
    // The retry fences the stream and settles the batch; the commit is clean.
    let out = s.run(&batch).await;
    assert!(out.records.iter().all(|r| r.is_landed()), "{out:?}");
    assert_eq!(s.keys().len(), 1001);
    assert_eq!(s.state().await.claim, kinesis_bigquery::delivery::state::Claim::Clean);
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

/// Scenario 2, a lost record after a discarded half: an attempt writes
/// 2..=4 and dies; its bisected retry [2] settles 2 and leaves 3 and 4 in
/// the stream ahead of the state; the mapping then discards [3] and hands
/// over [4, 5]. Offset by offset, 4 sits where 3 was mapped and 5 where 4
/// is: 5 must be written, not reported landed because 4 holds its offset.
#[tokio::test]
async fn a_record_is_not_reported_landed_because_another_sits_at_its_offset() -> anyhow::Result<()>
{
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    assert!(s.run(&[good(2), good(3), good(4)]).await.gave_back.is_some());
    s.deps.crash = None;
    // Kinesis bisects: the first half alone.
    assert_eq!(s.run(&[good(2)]).await.records, vec![TABLE]);
    // [3] fails until the mapping gives up on it (no attempt got far enough
    // to change anything), and the next batch starts at 4.
    let out = s.run(&[good(4), good(5)]).await;
    assert_eq!(out.records, vec![TABLE, TABLE], "{out:?}");
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5]), "5 is in the table, 4 once");
    assert_eq!(out.stats.discarded_landed, 1, "record 3 is counted: {:?}", out.stats);
    assert_eq!(s.run(&[good(6)]).await.records, vec![TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5, 6]));
    Ok(())
}

/// Scenario 2, rows a longer attempt wrote past a discarded batch: an
/// attempt writes 2..=4 and dies; its bisected retry [2] dies too and the
/// mapping discards [2]. The next batch [3, 4] is already in the table,
/// written by the longer attempt: found there, not written twice.
#[tokio::test]
async fn rows_a_longer_attempt_wrote_past_a_discarded_batch_land_once() -> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    assert!(s.run(&[good(2), good(3), good(4)]).await.gave_back.is_some());
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::BeforeFinalize)));
    assert!(s.run(&[good(2)]).await.gave_back.is_some());
    s.deps.crash = None;
    // MaximumRetryAttempts: [2] is discarded.
    let out = s.run(&[good(3), good(4)]).await;
    assert_eq!(out.records, vec![TABLE, TABLE], "{out:?}");
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4]), "3 and 4 once");
    assert_eq!(out.stats.discarded_landed, 1, "record 2 is counted: {:?}", out.stats);
    assert_eq!(s.run(&[good(5)]).await.records, vec![TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5]));
    Ok(())
}

/// Scenario 1 with a longer attempt: an attempt writes 2..=4 and dies, the
/// stream is lost, and Kinesis retries the first half alone. Records 3 and
/// 4 are still in doubt (claimed, maybe written): the state keeps the lost
/// stream and its claim, so the batch that delivers them spills them as in
/// doubt too instead of writing them again.
#[tokio::test]
async fn records_claimed_past_a_retry_on_a_lost_stream_are_not_written_twice() -> anyhow::Result<()>
{
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    assert!(s.run(&[good(2), good(3), good(4)]).await.gave_back.is_some());
    s.deps.crash = None;
    s.emu.expire_stream(&s.state().await.write_stream)?;
    let out = s.run(&[good(2)]).await;
    assert_eq!(out.records, vec![SPILL], "{out:?}");
    let out = s.run(&[good(3), good(4)]).await;
    assert_eq!(out.records, vec![SPILL, SPILL], "{out:?}");
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4]), "written once, by the attempt that died");
    let spilled = s.spill.list(&SpillFilter::default()).await?;
    assert_eq!(spilled.len(), 2);
    assert_eq!(s.state().await.spills.len(), 2, "both objects are genuine");
    // And the shard writes again.
    assert_eq!(s.run(&[good(5)]).await.records, vec![TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5]));
    Ok(())
}

/// A killed attempt's spill never blocks its retry: an attempt spills 2
/// and 3 in doubt on the claimed stream (BigQuery down) and dies before its
/// commit; the retry learns nothing of them landed, rotates, exhausts its
/// retries and must spill the same records with another content (no write
/// stream, no offsets). It answers success, the state lists the retry's
/// object, and the backfill lands every record exactly once and moves the
/// killed attempt's object to the quarantine unreplayed.
#[tokio::test]
async fn a_retry_spills_other_content_for_records_a_killed_attempt_spilled() -> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    assert_eq!(s.run(&[good(1)]).await.records, vec![TABLE]);

    s.emu.faults().set_down(true);
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterSpill)));
    assert!(s.run(&[good(2), good(3)]).await.gave_back.is_some());
    s.deps.crash = None;
    s.emu.faults().set_down(false);
    let killed = s.spill.list(&SpillFilter::default()).await?;
    assert_eq!(killed.len(), 1, "{killed:?}");
    let killed_batch = s.spill.read(&killed[0]).await?;
    assert_eq!(killed_batch.reason, SpillReason::InDoubt);
    assert!(killed_batch.records.iter().all(|r| r.offset.is_some()));

    s.emu.faults().fail_next_in_band(10_000, tonic::Code::Unavailable, "overloaded");
    let out = s.run(&[good(2), good(3)]).await;
    s.emu.faults().clear();
    assert_eq!(out.records, vec![SPILL, SPILL], "{out:?}");
    let objects = s.spill.list(&SpillFilter::default()).await?;
    assert_eq!(objects.len(), 2, "{objects:?}");
    let retry = objects.iter().find(|k| **k != killed[0]).expect("the retry's own object");
    let retry_batch = s.spill.read(retry).await?;
    assert!(retry_batch.records.iter().all(|r| r.offset.is_none()), "{retry_batch:?}");
    assert_eq!(s.spill.read(&killed[0]).await?, killed_batch, "the killed object is untouched");
    assert_eq!(s.state().await.spills, vec![retry.path()]);
    assert_eq!(s.run(&[good(4)]).await.records, vec![TABLE]);

    let mut deps = backfill_support::deps(&s.emu, s.spill.clone(), None).await;
    let state: Arc<dyn StateStore> = s.state.clone();
    deps.state = Some(state);
    let summary = backfill_support::run(&deps, &backfill_support::options()).await;
    assert!(!summary.left_behind(), "{:?}", summary.failures);
    assert_eq!((summary.replayed, summary.quarantined), (1, 1), "{summary:?}");
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4]), "every record exactly once");
    assert!(s.spill.list(&SpillFilter::default()).await?.is_empty());
    Ok(())
}
