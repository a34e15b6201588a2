//! CDC under chaos: random kills, retried and overlapping (older, extended)
//! batches, appends that land without an answer, an outage that spills
//! (then the backfill replays the spillover late, after newer changes), and
//! bursts of changes to the same keys. At the end the table equals, key by
//! key, the last change of each key in shard order: the sequence numbers
//! derived from the Kinesis positions make every repeat and every late
//! replay harmless.

use std::sync::Arc;

use anyhow::Context as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::backfill_support;
use crate::cdc_support::{Change, cdc_env, expected, keyed_world, record, table};
use crate::events::{self, Rec};
use crate::handler_support::{event, failures, invoke};
use kinesis_bigquery::delivery::CrashPoints;

/// `n` changes to 12 keys, in bursts on one key; deletes only of live keys.
fn changes(rng: &mut StdRng, n: usize) -> Vec<Change> {
    let mut live = std::collections::BTreeSet::new();
    let mut key = 0;
    (0..n)
        .map(|i| {
            if rng.random_bool(0.4) {
                key = rng.random_range(0..12);
            }
            let op = if !live.contains(&key) {
                "c"
            } else if rng.random_bool(0.25) {
                "d"
            } else {
                "u"
            };
            if op == "d" {
                live.remove(&key);
            } else {
                live.insert(key);
            }
            Change { id: key, v: i as i64, op }
        })
        .collect()
}

async fn chaos(seed: u64) -> anyhow::Result<()> {
    let world = keyed_world().await?;
    let spill_url = format!("file://{}/spill", world.dir.path().display());
    let env = [cdc_env(), vec![("SPILL_URL", spill_url.clone())]].concat();
    let mut deps = world.deps(&env).await?;
    let emulator = &world.harness.emulator;
    let mut rng = StdRng::seed_from_u64(seed);
    let all = changes(&mut rng, 400);
    let recs: Vec<Rec> = all.iter().enumerate().map(|(i, c)| record(i, c)).collect();
    let (mut pos, mut outages, mut invocations) = (0usize, 0, 0);
    while pos < recs.len() {
        invocations += 1;
        anyhow::ensure!(invocations < 2_000, "seed {seed}: no progress at {pos}");
        // Mostly the next batch; sometimes an older, overlapping one (a
        // retry after a lost response, a replay after a discarded batch).
        let start = if pos > 0 && rng.random_bool(0.15) {
            pos - rng.random_range(1..=pos.min(25))
        } else {
            pos
        };
        let end = (start + rng.random_range(1..=40)).min(recs.len());
        match rng.random_range(0..10) {
            0 => {
                emulator.faults().set_down(true);
                outages += 1;
            }
            1 => emulator.faults().fail_next("AppendRows", 2, tonic::Code::Unavailable, "chaos"),
            2 => emulator.faults().write_then_drop(1),
            3 => {
                deps.delivery_mut().context("connected")?.crash =
                    Some(Arc::new(CrashPoints::at(rng.random_range(0..3))))
            }
            _ => {}
        }
        let batch = recs.get(start..end).unwrap_or_default();
        let response = invoke(&deps, event(events::event("shardId-000000000000", batch))?).await?;
        emulator.faults().set_down(false);
        emulator.faults().clear();
        deps.delivery_mut().context("connected")?.crash = None;
        let next = match failures(&response).first() {
            None => end,
            // Kinesis retries from the first record not landed.
            Some(seq) => recs.iter().position(|r| &r.sequence_number == seq).unwrap_or(start),
        };
        pos = pos.max(next);
    }
    anyhow::ensure!(outages > 0, "seed {seed}: the run must include an outage");

    // The spillover is replayed last: its changes are older than what the
    // table already holds for most keys.
    let aws = world.harness.moto.sdk_config();
    let spill = kinesis_bigquery::spill::open(&spill_url.parse()?, &aws)?;
    let mut backfill = backfill_support::deps(emulator, spill, None).await;
    backfill.cdc = Some(deps.config.cdc.clone());
    let summary = backfill_support::run(&backfill, &backfill_support::options()).await;
    anyhow::ensure!(!summary.left_behind(), "seed {seed}: {summary:?}");
    anyhow::ensure!(summary.replayed > 0, "seed {seed}: nothing was spilled: {summary:?}");

    assert_eq!(table(&world)?, expected(&all), "seed {seed}");
    Ok(())
}

#[tokio::test]
async fn cdc_chaos_seed_1() -> anyhow::Result<()> {
    chaos(1).await
}

#[tokio::test]
async fn cdc_chaos_seed_2() -> anyhow::Result<()> {
    chaos(2).await
}
