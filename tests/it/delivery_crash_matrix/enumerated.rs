//! The deterministic part of the matrix: every step boundary of one
//! invocation enumerated (not a sampled index), for each batch shape of the
//! retry that follows it, under each persistent fault, on both state stores.
//!
//! A case: a fixed shard log (good records, a KPL aggregate with a row
//! BigQuery rejects, a record that is not JSON); a warm-up invocation lands
//! `log[0..2]`; the invocation under test takes `log[2..6]` (requests of two
//! rows, so several appends, an exclusion and a rotation) and is stopped at
//! boundary `k`; Kinesis then retries the same batch, its first half
//! (bisect), a longer one (extend), or discards it and moves on (skip); the
//! shard drains, and the check and the backfill follow. `k` runs from 0
//! until the invocation passes fewer than `k + 1` boundaries (that last
//! case runs uncrashed), so a new boundary in the code is enumerated without
//! touching this file.

use super::Tally;
use super::check::{Settle, check};
use super::feed::{Feed, Step};
use super::world::{Kind, KinesisRecord, Reach, Shard, Store, World, batch_of, kinesis_record};
use std::sync::Arc;

use anyhow::bail;
use kinesis_bigquery::delivery::spill_manifest::SPILL_LIST_CAP;
use kinesis_bigquery::delivery::{Boundary, CrashPoints, GaveBack};
use kinesis_bigquery::rows::RowFormat;

/// What keeps failing around the invocation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Nothing but the crash.
    Plain,
    /// The first append request of the invocation is taken by the service
    /// and applied after the retry ran (a late append).
    LateAppend,
    /// The shard's write stream is garbage-collected right after the crash
    /// (NOT_FOUND from then on).
    StreamLost,
    /// FinalizeWriteStream fails for the invocation and the next two.
    FinalizeFails,
    /// The crashed invocation is connected; the next [`OUTAGE`] are cold
    /// starts that cannot reach BigQuery (raw spill).
    OutageAfter,
    /// The invocation under test is itself one of [`OUTAGE`] cold starts in
    /// an outage: its boundaries are the outage path's.
    OutageDuring,
    /// As `OutageDuring`, after an outage long enough that the state lists
    /// [`SPILL_LIST_CAP`] spills: the invocation under test moves them into
    /// a manifest before its state write (the crash between the two leaves
    /// an unnamed manifest).
    LongOutage,
    /// A connected invocation dies after its first append (its claim is
    /// persisted, a request landed); the invocation under test is the next,
    /// a cold start in an outage of [`OUTAGE`]: the claim's rows are spilled
    /// in doubt with their offsets.
    OutageInDoubt,
}

impl Family {
    pub const ALL: [Family; 8] = [
        Self::Plain,
        Self::LateAppend,
        Self::StreamLost,
        Self::FinalizeFails,
        Self::OutageAfter,
        Self::OutageDuring,
        Self::LongOutage,
        Self::OutageInDoubt,
    ];

    /// Which invocation is under test (the others run to their end, or to
    /// the family's own crash).
    fn under_test(self) -> usize {
        usize::from(self == Self::OutageInDoubt)
    }

    /// Single-record spilling invocations before the one under test.
    fn prelude(self) -> usize {
        if self == Self::LongOutage { SPILL_LIST_CAP } else { 0 }
    }

    /// Whether invocation `j` (0: the one under test) cannot reach BigQuery.
    fn offline(self, j: usize) -> bool {
        match self {
            Self::OutageAfter | Self::OutageInDoubt => (1..=OUTAGE).contains(&j),
            Self::OutageDuring | Self::LongOutage => j < OUTAGE,
            _ => false,
        }
    }
}

/// Consecutive cold starts in an outage.
const OUTAGE: usize = 2;

/// What Kinesis does with the batch after the invocation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Same,
    Bisect,
    Extend,
    Skip,
}

impl Shape {
    pub const ALL: [Shape; 4] = [Self::Same, Self::Bisect, Self::Extend, Self::Skip];
}

/// One enumerated case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Case {
    pub family: Family,
    pub shape: Shape,
    pub store: Store,
    /// The boundary the invocation under test stops at.
    pub k: usize,
}

impl Case {
    /// Proto rows at even boundaries, Arrow record batches at odd ones: both
    /// row formats meet every family, shape and store, at no extra cases
    /// (the protocol's steps do not depend on the format; its requests do).
    pub fn format(&self) -> RowFormat {
        if self.k % 2 == 1 { RowFormat::Arrow } else { RowFormat::Proto }
    }

    /// `DELIVERY_CASE` names a case this way.
    pub fn name(&self) -> String {
        format!("{:?}/{:?}/{:?}/{}", self.family, self.shape, self.store, self.k)
    }
}

/// The batch under test: `log[FROM..TO]` (after the family's prelude).
const FROM: usize = 2;
const TO: usize = 6;

/// The log: two records for the warm-up, `prelude` single good records,
/// then the batch under test and what follows it.
fn fixed_log(prelude: usize) -> anyhow::Result<Vec<KinesisRecord>> {
    use Kind::{Good, NotJson, RejectedByServer};
    let padding: Vec<&[Kind]> = vec![&[Good]; prelude];
    let shape: Vec<&[Kind]> = [&[Good][..], &[Good]]
        .into_iter()
        .chain(padding)
        .chain([
            &[Good, RejectedByServer, Good][..],
            &[NotJson],
            &[Good],
            &[Good, Good],
            &[Good],
            &[Good],
            &[Good],
            &[Good],
        ])
        .collect();
    shape.iter().enumerate().map(|(i, kinds)| kinesis_record(i, kinds, false)).collect()
}

/// Runs one case; returns whether its crash point fired (`false`: the
/// invocation under test has fewer boundaries than `k + 1`).
pub async fn case(world: &World, case: Case, id: usize, tally: &mut Tally) -> anyhow::Result<bool> {
    let pad = case.family.prelude();
    let (from, to) = (FROM + pad, TO + pad);
    let log = fixed_log(pad)?;
    let shard = Shard::new(world, &format!("e{id}"), case.store, case.format(), 2).await?;
    if case.store == Store::S3 {
        tally.s3_scenarios += 1;
    }
    if case.format() == RowFormat::Arrow {
        tally.arrow_scenarios += 1;
    }
    let faults = world.emulator.faults();
    let mut deps = shard.container(world)?;
    let mut feed = Feed::new(&log);

    // Warm-up: the shard has a state and a stream with rows.
    let (records, parents) = batch_of(&log, 0, FROM);
    let warm = shard.invoke(&mut deps, &records, Reach::Online, None).await;
    if feed.answer(&warm, FROM, &parents)? != Step::Done {
        bail!("the warm-up did not land: {warm:?}");
    }
    // A long outage before the invocation under test, one cold start each.
    for _ in 0..pad {
        let at = feed.checkpoint;
        let (records, parents) = batch_of(&log, at, at + 1);
        let deps = &mut shard.container(world)?;
        let out = shard.invoke(deps, &records, Reach::Offline, None).await;
        if feed.answer(&out, 1, &parents)? != Step::Done {
            bail!("a spilling invocation of the long outage did not land: {out:?}");
        }
    }
    if pad > 0 && shard.load_state().await?.is_none_or(|s| s.spills.len() != pad) {
        bail!("the long outage did not fill the state's spill list");
    }

    let mut fired = false;
    let mut held = false;
    let mut lost_any = false;
    let mut next_len = to - from;
    for j in 0..40 {
        if feed.drained() {
            break;
        }
        let reach = if case.family.offline(j) { Reach::Offline } else { Reach::Online };
        faults.set_down(reach == Reach::Offline);
        if case.family == Family::FinalizeFails && j < 3 {
            faults.fail_next("FinalizeWriteStream", 1_000, tonic::Code::Unavailable, "injected");
        }
        if case.family == Family::LateAppend && j == 0 {
            faults.hold(1);
            held = true;
        }
        if held && j == 2 {
            world.emulator.release_held();
            held = false;
        }
        let len = next_len.min(feed.left());
        let (records, parents) = batch_of(&log, feed.checkpoint, feed.checkpoint + len);
        let under_test = j == case.family.under_test();
        let hook = if under_test {
            Some(Arc::new(CrashPoints::at(case.k)))
        } else if j == 0 {
            Some(Arc::new(CrashPoints::on(Boundary::BeforeAppend(1))))
        } else {
            None
        };
        let outcome = shard.invoke(&mut deps, &records, reach, hook).await;
        faults.clear();
        faults.set_down(false);
        tally.invocations += 1;
        tally.offline += usize::from(reach == Reach::Offline);
        tally.spilled += outcome.stats.spilled;
        tally.rotations += outcome.stats.rotations;
        let step = feed.answer(&outcome, len, &parents)?;
        if step == Step::Partial {
            tally.partial += 1;
        }
        if step == Step::Failed {
            tally.crashes += 1;
        }
        next_len = feed.retry_len.unwrap_or(3);
        // Every offline invocation is a cold start, and so is the next.
        if reach == Reach::Offline {
            deps = shard.container(world)?;
        }
        if j == 0 && !under_test {
            // Killed; the retry (the same batch) runs in a new container.
            deps = shard.container(world)?;
        }
        if !under_test {
            continue;
        }
        fired = matches!(outcome.gave_back, Some(GaveBack::Crashed(_)));
        if fired {
            // A killed container: the retry runs in a new one.
            deps = shard.container(world)?;
        }
        if case.family == Family::StreamLost
            && let Some(st) = shard.load_state().await?
            && world.emulator.expire_stream(&st.write_stream).is_ok()
        {
            tally.lost_streams += 1;
            lost_any = true;
        }
        if step == Step::Done {
            continue;
        }
        // The rest of the batch under test, retried in the case's shape.
        let rest = to.saturating_sub(feed.checkpoint).max(1);
        next_len = match case.shape {
            Shape::Same => rest,
            Shape::Bisect => (rest / 2).max(1),
            Shape::Extend => rest + 2,
            Shape::Skip => {
                tally.discarded += 1;
                feed.discard(rest);
                3
            }
        };
    }
    if !feed.drained() {
        bail!("shard did not drain: checkpoint {} of {}", feed.checkpoint, log.len());
    }
    if held {
        world.emulator.release_held();
    }
    check(world, &shard, &log, &Settle { skipped: &feed.skipped, lost_any }, tally).await?;
    Ok(fired)
}

/// Every case the default run enumerates for one store, `k` left at 0 (the
/// runner counts it up). On S3 the long outage runs for the same-batch
/// retry only: its 64 spilling invocations and backfills cost about a
/// second a case on moto.
pub fn families(store: Store) -> Vec<Case> {
    let mut cases = Vec::new();
    for family in Family::ALL {
        if family == Family::LongOutage && store == Store::S3 {
            cases.push(Case { family, shape: Shape::Same, store, k: 0 });
            continue;
        }
        for shape in Shape::ALL {
            cases.push(Case { family, shape, store, k: 0 });
        }
    }
    cases
}

/// Parses a `DELIVERY_CASE` name (`Plain/Same/File/3`).
pub fn parse(name: &str) -> Option<Case> {
    let mut parts = name.split('/');
    let (family, shape) = (parts.next()?, parts.next()?);
    let family = Family::ALL.into_iter().find(|f| format!("{f:?}") == family)?;
    let shape = Shape::ALL.into_iter().find(|s| format!("{s:?}") == shape)?;
    let store = match parts.next()? {
        "File" => Store::File,
        "S3" => Store::S3,
        _ => return None,
    };
    let k = parts.next()?.parse().ok()?;
    Some(Case { family, shape, store, k })
}
