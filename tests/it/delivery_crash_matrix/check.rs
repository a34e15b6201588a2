//! The end-of-scenario check: where each record of the drained shard is
//! (table, genuine spillover, dead-letter queue) against what it is; then a
//! real backfill with the Lambda's state, and the table again — every good
//! record exactly once (at least once only where the documented policy
//! says so: in doubt on a lost stream).

use super::Tally;
use super::world::{Kind, KinesisRecord, Shard, World, debug, key_of};
use crate::common::fast_retry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};

use kinesis_bigquery::backfill::{self, BackfillDeps, BackfillOptions, Progress};
use kinesis_bigquery::batch::BatchLimits;
use kinesis_bigquery::bigquery::AppenderOptions;
use kinesis_bigquery::delivery::spill_manifest::ManifestCache;
use kinesis_bigquery::dlq::DeadLetter;
use kinesis_bigquery::spill::{SpillFilter, SpillReason, SpillSink};

/// What the chaos did that loosens a record's expected place.
pub struct Settle<'a> {
    /// Records of batches the event source mapping discarded.
    pub skipped: &'a BTreeSet<String>,
    /// A stream was garbage-collected: records whose appends were in doubt
    /// on it may be in the table and in the spillover (at least once).
    pub lost_any: bool,
}

/// Where the records are: per record key, how many times.
struct Seen {
    table: BTreeMap<String, usize>,
    /// In a genuine spillover object (one the state lists), not covered by
    /// its stream's row count: what the backfill will write.
    spill: BTreeMap<String, usize>,
    dlq: BTreeMap<String, usize>,
    /// Spilled in doubt on a stream that is gone (replayed at least once).
    lost: BTreeSet<String>,
    /// Genuine objects still in the spillover (their paths).
    genuine: BTreeSet<String>,
}

fn count(map: &BTreeMap<String, usize>, key: &str) -> usize {
    map.get(key).copied().unwrap_or(0)
}

/// Checks the drained shard, backfills, and checks the table again.
pub async fn check(
    world: &World,
    shard: &Shard,
    log: &[KinesisRecord],
    settle: &Settle<'_>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let before = observe(world, shard).await?;
    check_places(log, &before, settle, tally)?;
    let summary = backfill(world, shard).await?;
    // An unlisted object past the state's position (a crashed attempt of
    // a batch the mapping then discarded, at the end of the log) waits for
    // a later run, rightly; a listed one must not.
    let stuck: Vec<_> =
        summary.failures.iter().filter(|(k, _)| before.genuine.contains(k)).collect();
    if !stuck.is_empty() || summary.other_mode > 0 {
        bail!("the backfill left listed objects behind: {stuck:?}");
    }
    tally.backfilled += summary.replayed as usize;
    let after = observe(world, shard).await?;
    if !after.genuine.is_empty() {
        bail!("listed spillover objects remain after the backfill: {:?}", after.genuine);
    }
    for k in log {
        for u in &k.users {
            let key = key_of(&u.position);
            let (t0, s0) = (count(&before.table, &key), count(&before.spill, &key));
            let (t, d) = (count(&after.table, &key), count(&after.dlq, &key));
            let skipped = settle.skipped.contains(&key);
            let lost = before.lost.contains(&key) || (settle.lost_any && t0 == 1 && s0 == 1);
            // The backfill writes each genuine spilled record once: exactly
            // once, but at most once where the mapping discarded it, twice at
            // most where the policy replays a lost stream's in-doubt rows,
            // and none where an older schema view dead-lettered it.
            let fine = match u.kind {
                Kind::Good | Kind::WithOpt if t != t0 + s0 => false,
                Kind::Good | Kind::WithOpt => {
                    let refused = u.kind == Kind::WithOpt && d > 0;
                    let least = usize::from(!skipped && !refused);
                    let most = if lost { 2 } else { 1 };
                    (least..=most).contains(&t)
                }
                // Bad records: never a row; in the queue unless discarded.
                _ => t == 0 && (skipped || d > 0),
            };
            if !fine {
                bail!(
                    "after the backfill, {:?} record {key}: {t} in the table ({t0} before, \
                     {s0} spilled), {d} dead letters",
                    u.kind
                );
            }
        }
    }
    Ok(())
}

async fn backfill(world: &World, shard: &Shard) -> anyhow::Result<backfill::Summary> {
    let deps = BackfillDeps {
        client: world.client.clone(),
        state: Some(shard.state.clone()),
        spill: shard.spill.clone(),
        dlq: Some(shard.dlq()),
        encoder: shard.options,
        cdc: None,
        limits: BatchLimits::new(7, 1 << 20, Duration::ZERO)?,
        appender: AppenderOptions { retry: fast_retry(3), ..AppenderOptions::default() },
        append_timeout: Duration::from_secs(10),
    };
    let options = BackfillOptions { concurrency: 2, ..BackfillOptions::default() };
    Ok(backfill::run(&deps, &options, &Progress::Silent).await?)
}

async fn observe(world: &World, shard: &Shard) -> anyhow::Result<Seen> {
    let mut table: BTreeMap<String, usize> = BTreeMap::new();
    for row in world.emulator.read_rows(&shard.table)? {
        let key = row.get("key").and_then(|k| k.as_str()).context("row without key")?;
        *table.entry(key.to_string()).or_default() += 1;
    }
    // Vouched for by the state: inline, or in its chain of manifests.
    let mut listed: BTreeSet<String> = BTreeSet::new();
    if let Some(s) = shard.load_state().await? {
        if let Some(head) = &s.spill_manifest {
            let chain = ManifestCache::default().chain(shard.state.as_ref(), head).await?;
            listed.extend(chain.iter().cloned());
        }
        listed.extend(s.spills);
    }
    let mut spill: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost: BTreeSet<String> = BTreeSet::new();
    let mut ends: HashMap<String, i64> = HashMap::new();
    let mut genuine = BTreeSet::new();
    for key in shard.spill.list(&SpillFilter::default()).await? {
        if !listed.contains(&key.path()) {
            continue; // an orphan of a crashed invocation; the backfill ignores it
        }
        genuine.insert(key.path());
        let batch = shard.spill.read(&key).await?;
        if debug() {
            eprintln!(
                "spilled {} {:?} {}: {:?}",
                key.path(),
                batch.reason,
                batch.error,
                batch.write_stream
            );
        }
        for r in &batch.records {
            // As the backfill does: a stream's row count settles in-doubt
            // records; a stream that is gone settles nothing (-1), and its
            // records are replayed at least once.
            let mut stream_gone = false;
            if let (Some(ws), Some(offset)) = (&batch.write_stream, r.offset) {
                let end = match ends.get(ws) {
                    Some(e) => *e,
                    None => {
                        let e = match world.client.finalize_write_stream(ws).await {
                            Ok(e) => e,
                            Err(e) if e.code() == Some(tonic::Code::NotFound) => -1,
                            Err(e) => return Err(e.into()),
                        };
                        ends.insert(ws.clone(), e);
                        e
                    }
                };
                stream_gone = end < 0;
                if offset < end {
                    continue; // in the table already: the backfill skips it
                }
            }
            if batch.reason == SpillReason::StreamLost || stream_gone {
                lost.insert(key_of(&r.position));
            }
            *spill.entry(key_of(&r.position)).or_default() += 1;
        }
    }
    let mut dlq: BTreeMap<String, usize> = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(&shard.dlq_path) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let letter: DeadLetter = serde_json::from_str(line)?;
            if debug() {
                let (p, r, e) = (key_of(&letter.position()), letter.reason, &letter.error);
                eprintln!("dead letter {p} {r:?} {e}");
            }
            *dlq.entry(key_of(&letter.position())).or_default() += 1;
        }
    }
    Ok(Seen { table, spill, dlq, lost, genuine })
}

/// Where each record ended up before the backfill, checked against what it
/// is. Records of a discarded batch may be in the table once or not at all;
/// records spilled as in doubt on a lost stream may also be in the table
/// (at least once).
fn check_places(
    log: &[KinesisRecord],
    seen: &Seen,
    settle: &Settle<'_>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let skipped = settle.skipped;
    for k in log {
        for u in &k.users {
            let key = key_of(&u.position);
            let t = count(&seen.table, &key);
            let s = count(&seen.spill, &key);
            let d = count(&seen.dlq, &key);
            let lost = seen.lost.contains(&key);
            match u.kind {
                // A discarded record whose appends were in doubt on a lost
                // stream is spilled as such: at least once, as any other.
                Kind::Good if skipped.contains(&key) && lost => {
                    if t > 1 || s != 1 || d != 0 {
                        bail!(
                            "discarded lost-stream record {key}: {t} in table, {s} in spillover, {d} dead letters"
                        );
                    }
                    tally.at_least_once += t;
                }
                Kind::Good if skipped.contains(&key) => {
                    if t + s > 1 || d != 0 {
                        bail!(
                            "discarded record {key}: {t} in table, {s} in spillover, {d} dead letters"
                        );
                    }
                }
                Kind::Good if lost || (settle.lost_any && t == 1 && s == 1) => {
                    if t > 1 || s != 1 || d != 0 {
                        bail!(
                            "lost-stream record {key}: {t} in table, {s} in spillover, {d} dead letters"
                        );
                    }
                    tally.at_least_once += t;
                }
                // Discarded, or in doubt on a lost stream: at most once in
                // the table, and never in the table and the queue both.
                Kind::WithOpt if skipped.contains(&key) || lost => {
                    if t > 1 || s > 1 || (t > 0 && d > 0) {
                        bail!(
                            "record {key} refused by an older schema view, discarded or lost: {t} in table, {s} in spillover, {d} dead letters"
                        );
                    }
                }
                Kind::WithOpt => {
                    if t + s + d.min(1) != 1 {
                        bail!(
                            "record {key} refused by an older schema view: {t} in table, {s} in spillover, {d} dead letters"
                        );
                    }
                }
                Kind::Good => {
                    if t + s != 1 || d != 0 {
                        bail!(
                            "good record {key}: {t} in table, {s} in spillover, {d} dead letters"
                        );
                    }
                }
                _ if skipped.contains(&key) => {
                    if t != 0 || s > 1 {
                        bail!("discarded bad record {key}: {t} in table, {s} in spillover");
                    }
                }
                _ => {
                    if t != 0 || s > 1 || d + s == 0 {
                        bail!(
                            "bad record {key} ({:?}): {t} in table, {s} in spillover, {d} dead letters",
                            u.kind
                        );
                    }
                    tally.dead_letter_repeats += d.saturating_sub(1);
                }
            }
        }
    }
    let known: BTreeSet<String> =
        log.iter().flat_map(|k| k.users.iter().map(|u| key_of(&u.position))).collect();
    if let Some(stray) = seen.table.keys().find(|k| !known.contains(*k)) {
        bail!("row {stray} in the table is no record of the log");
    }
    Ok(())
}
