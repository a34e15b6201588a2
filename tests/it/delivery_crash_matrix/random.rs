//! The randomized part of the matrix: one scenario per seed, a random shard
//! log delivered batch by batch while crash points, emulator faults, lost
//! streams, late appends, discarded batches, FinalizeWriteStream failing
//! across invocations and outages across cold starts hit it; a share of the scenarios keep their state in S3 on moto.

use super::Tally;
use super::check::{Settle, check};
use super::feed::{Feed, Step};
use super::world::{
    Reach, Shard, Store, World, batch_of, broken_dlq, broken_spill, debug, encoder_schema,
    make_log, older_schema,
};
use std::sync::Arc;

use anyhow::bail;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use kinesis_bigquery::delivery::CrashPoints;
use kinesis_bigquery::emulator::FaultSpec;
use kinesis_bigquery::rows::RowFormat;

/// One scenario in this many keeps its state in S3 on moto (each S3 state
/// write is a few milliseconds, a file write on /dev/shm nothing).
const S3_ONE_IN: u64 = 10;

/// The longest outage, in consecutive invocations (each a cold start).
const MAX_OUTAGE: usize = 4;

/// The state store of scenario `seed`: drawn apart from the scenario's own
/// random stream, so a seed means the same chaos on either store.
pub fn store_of(seed: u64) -> Store {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5333_5354_4f52_4521);
    if rng.random_range(0..S3_ONE_IN) == 0 { Store::S3 } else { Store::File }
}

pub async fn scenario(world: &World, seed: u64, tally: &mut Tally) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    // A third of the scenarios send Arrow record batches instead of proto rows.
    let format = if rng.random_bool(0.33) { RowFormat::Arrow } else { RowFormat::Proto };
    let max_rows = rng.random_range(1..=4);
    let store = store_of(seed);
    let shard = Shard::new(world, &format!("t{seed}"), store, format, max_rows).await?;
    if store == Store::S3 {
        tally.s3_scenarios += 1;
    }
    if format == RowFormat::Arrow {
        tally.arrow_scenarios += 1;
    }
    let (dlq, spill) = (shard.dlq(), shard.spill.clone());
    let (dead_dlq, dead_spill) = (broken_dlq(), broken_spill());
    let mut deps = shard.container(world)?;

    let log = make_log(&mut rng)?;
    let n = log.len();
    let mut feed = Feed::new(&log);
    let mut arrived = rng.random_range(1..=n);
    let mut held = false;
    let mut lost_any = false;
    // Invocations left in the current outage; every one is a cold start,
    // and so is the first after it.
    let mut outage_left = 0usize;
    let mut cold = false;
    // Invocations left in which FinalizeWriteStream keeps failing.
    let mut finalize_left = 0usize;
    let faults = world.emulator.faults();
    for attempt in 0..400 {
        if feed.drained() {
            break;
        }
        if arrived < n && rng.random_bool(0.4) {
            arrived = (arrived + rng.random_range(1..=3)).min(n);
        }
        arrived = arrived.max(feed.checkpoint + 1);
        let len = match feed.retry_len {
            Some(prev) if rng.random_bool(0.5) => (prev / 2).max(1),
            Some(prev) => prev,
            None => rng.random_range(1..=6),
        }
        .min(arrived - feed.checkpoint);
        let (records, parents) = batch_of(&log, feed.checkpoint, feed.checkpoint + len);
        // Chaos stops after a while so every scenario drains.
        let calm = attempt >= 60;
        if calm {
            outage_left = 0;
            finalize_left = 0;
        }
        let reach = if outage_left > 0 { Reach::Offline } else { Reach::Online };
        if cold {
            deps = shard.container(world)?;
            cold = false;
        }
        // An offline invocation passes at most six boundaries.
        let crash_span = if reach == Reach::Offline { 8 } else { 24 };
        let crash = (!calm && rng.random_bool(0.45)).then(|| rng.random_range(0..crash_span));
        let hook = crash.map(|k| Arc::new(CrashPoints::at(k)));
        // Now and then the dead-letter queue or the spillover is unreachable
        // (a path under /dev/null cannot be created): what needed it is not
        // landed, and Kinesis must be told so.
        let dlq_down = !calm && rng.random_bool(0.08);
        let spill_down = !calm && rng.random_bool(0.08);
        deps.dlq = if dlq_down { dead_dlq.clone() } else { dlq.clone() };
        deps.spill = if spill_down { dead_spill.clone() } else { spill.clone() };
        // Now and then the attempt runs in a container with an older view
        // of the table's schema.
        let older = !calm && rng.random_bool(0.1);
        deps.encoder.replace(&if older { older_schema() } else { encoder_schema() })?;
        if held && (calm || rng.random_bool(0.5)) {
            // A request a killed attempt sent lands now, after its client
            // is gone, possibly after later attempts started (or during an
            // outage: the service processes what reached it).
            world.emulator.release_held();
            held = false;
        }
        let mut expire_armed = false;
        if finalize_left > 0 {
            faults.fail_next("FinalizeWriteStream", 1_000, tonic::Code::Unavailable, "injected");
            finalize_left -= 1;
        }
        if reach == Reach::Offline {
            faults.set_down(true);
        } else if !calm {
            match rng.random_range(0..16) {
                0 => faults.fail_next(
                    "AppendRows",
                    rng.random_range(1..=4),
                    tonic::Code::Unavailable,
                    "injected",
                ),
                1 => faults.drop_after(rng.random_range(0..=2)),
                2 => faults.write_then_drop(1),
                3 => {
                    faults.fail_next("FinalizeWriteStream", 3, tonic::Code::Unavailable, "injected")
                }
                // A warm container loses BigQuery for this invocation.
                4 => faults.set_down(true),
                // The shard's stream is garbage-collected (or its table
                // re-created) between invocations.
                5 | 6 => {
                    if let Some(st) = shard.load_state().await?
                        && world.emulator.expire_stream(&st.write_stream).is_ok()
                    {
                        if debug() {
                            eprintln!("expired {}", st.write_stream);
                        }
                        tally.lost_streams += 1;
                        lost_any = true;
                    }
                }
                // The next request is taken and applied later (a late append).
                7 => {
                    faults.hold(1);
                    held = true;
                }
                // The stream is lost mid-invocation, right after a request
                // was written whose answer never came.
                8 => {
                    faults.write_then_expire(1);
                    expire_armed = true;
                }
                // An outage from the next invocation on: 1..=MAX_OUTAGE
                // containers that cannot read the table schema.
                9 | 10 => {
                    outage_left = rng.random_range(1..=MAX_OUTAGE);
                    tally.outages += 1;
                }
                // FinalizeWriteStream fails in this invocation and up to
                // two more (a rotation, or an end to learn, waits).
                11 => {
                    faults.fail_next(
                        "FinalizeWriteStream",
                        1_000,
                        tonic::Code::Unavailable,
                        "injected",
                    );
                    finalize_left = rng.random_range(0..=2);
                }
                _ => {}
            }
        }
        let outcome = shard.invoke(&mut deps, &records, reach, hook).await;
        if debug() {
            eprintln!(
                "attempt {attempt} {reach:?}: batch {}..{} crash {crash:?} faults {:?} -> {:?} {:?} {:?}",
                feed.checkpoint,
                feed.checkpoint + len,
                faults.active(),
                outcome.gave_back,
                outcome.records,
                outcome.stats
            );
            if let Some(st) = shard.load_state().await? {
                eprintln!("  state {}", String::from_utf8_lossy(&st.to_json()));
            }
        }
        if expire_armed
            && !faults.active().iter().any(|f| matches!(f, FaultSpec::WriteThenExpire { .. }))
        {
            tally.lost_streams += 1;
            lost_any = true;
        }
        faults.clear();
        faults.set_down(false);
        if reach == Reach::Offline {
            tally.offline += 1;
            outage_left -= 1;
            cold = true;
        }
        tally.invocations += 1;
        tally.spilled += outcome.stats.spilled;
        tally.rotations += outcome.stats.rotations;
        match feed.answer(&outcome, len, &parents)? {
            Step::Failed => {
                tally.crashes += 1;
                if !calm && rng.random_bool(0.1) {
                    // MaximumRetryAttempts: the mapping gives up on this batch
                    // and moves past it.
                    tally.discarded += 1;
                    feed.discard(len);
                }
            }
            Step::Partial => tally.partial += 1,
            Step::Done => {}
        }
    }
    if !feed.drained() {
        bail!("shard did not drain: checkpoint {} of {n}", feed.checkpoint);
    }
    if held {
        world.emulator.release_held();
    }
    faults.clear();
    check(world, &shard, &log, &Settle { skipped: &feed.skipped, lost_any }, tally).await
}
