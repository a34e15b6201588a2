//! A stand-in for Lambda's Kinesis event source mapping: it hands each
//! shard's records to the real handler in batches, one invocation per shard
//! at a time (ParallelizationFactor 1), and retries from the first record
//! the partial batch response names — or the whole batch when the
//! invocation failed, crashed, or its response was lost. Under the
//! `discard` fault it gives up on a batch after an attempt that appended, as
//! `MaximumRetryAttempts` makes it do, and moves on; under `lost-stream` it
//! has the emulator garbage-collect the shard's write stream.

use super::faults::{FaultSet, Plan, arm, disarm, plan};
use super::generate::STREAM_ARN;
use crate::delivery::store::StateStore;
use crate::delivery::{ShardState, state_key};
use crate::emulator::Emulator;
use crate::handler::{self, Deps};
use crate::table::TableName;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use indicatif::ProgressBar;
use serde_json::{Value, json};
use std::time::Duration;

/// Lambda's own retry bound for one batch (the template's
/// `MaximumRetryAttempts` is far higher; the demo needs only a few).
const MAX_ATTEMPTS: u32 = 20;

/// What the event source mapping did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EsmStats {
    pub invocations: u64,
    /// Invocations whose response named a record not landed.
    pub partial_responses: u64,
    /// Invocations killed midway.
    pub crashes: u64,
    /// Invocations that finished but whose response Lambda never got.
    pub lost_responses: u64,
    /// Invocations that returned an error (the whole batch is retried).
    pub failed: u64,
    /// Kinesis records given up on after [`MAX_ATTEMPTS`] (0 when healthy).
    pub abandoned: u64,
    /// Batches given up on by the `discard` fault after an attempt that
    /// appended, and their Kinesis records (never delivered again).
    pub discarded_batches: u64,
    pub discarded: Vec<Value>,
    /// Write streams garbage-collected between invocations, and during one
    /// (right after an append whose answer was lost).
    pub streams_expired_between: u64,
    pub streams_expired_midway: u64,
    /// Their names: records spilled in doubt on them cannot be resolved.
    pub expired_streams: Vec<String>,
}

/// Where the demo finds a shard's current write stream, to lose it.
pub struct StreamFinder<'a> {
    pub state: &'a dyn StateStore,
    pub table: &'a TableName,
}

impl StreamFinder<'_> {
    /// The shard's write stream as its state names it (none before the
    /// shard's first invocation, or when the state cannot be read).
    async fn current(&self, shard_id: &str) -> Option<String> {
        let key = state_key(self.table, STREAM_ARN, shard_id);
        let (bytes, _) = self.state.load(&key).await.ok()??;
        ShardState::from_json(&bytes).ok().map(|s| s.write_stream)
    }
}

/// Delivers every shard's records through `deps`' handler. `streams`:
/// `None` when the mode writes no explicit write stream (CDC).
pub async fn drive(
    deps: &Deps,
    emulator: &Emulator,
    streams: Option<&StreamFinder<'_>>,
    shards: &[(String, Vec<Value>)],
    batch_size: usize,
    fault_set: &FaultSet,
    progress: &ProgressBar,
) -> EsmStats {
    let faults = emulator.faults();
    let mut stats = EsmStats::default();
    let mut cursors = vec![0usize; shards.len()];
    let mut attempts = vec![0u32; shards.len()];
    let mut invocation = 0usize;
    loop {
        let mut busy = false;
        for (s, (shard_id, records)) in shards.iter().enumerate() {
            let (Some(cursor), Some(tries)) = (cursors.get_mut(s), attempts.get_mut(s)) else {
                continue;
            };
            let Some(batch) =
                records.get(*cursor..(*cursor + batch_size.max(1)).min(records.len()))
            else {
                continue;
            };
            if batch.is_empty() {
                continue;
            }
            busy = true;
            let planned = plan(fault_set, invocation, streams.is_some());
            invocation += 1;
            stats.invocations += 1;
            let stream = match (planned, streams) {
                (Plan::ExpireBefore, Some(finder)) => finder.current(shard_id).await,
                _ => None,
            };
            if let Some(name) = stream.filter(|name| emulator.expire_stream(name).is_ok()) {
                stats.streams_expired_between += 1;
                stats.expired_streams.push(name);
            }
            arm(faults, planned);
            let result = match planned {
                Plan::KillMidway(after) | Plan::DiscardAfterKill(after) => {
                    tokio::time::timeout(after, invoke(deps, batch)).await.ok()
                }
                Plan::ExpireMidway => {
                    let lost = LostStream { emulator, streams, shard_id };
                    let (result, expired) = lost.during(deps, batch).await;
                    if let Some(name) = expired {
                        stats.streams_expired_midway += 1;
                        stats.expired_streams.push(name);
                    }
                    Some(result)
                }
                _ => Some(invoke(deps, batch).await),
            };
            disarm(faults);
            if matches!(planned, Plan::DiscardAfterLostResponse | Plan::DiscardAfterKill(_)) {
                // Out of retries: the mapping checkpoints past the batch
                // (Lambda would send its metadata to the OnFailure
                // destination); Kinesis never delivers these records again.
                drop(result);
                stats.discarded_batches += 1;
                stats.discarded.extend_from_slice(batch);
                *cursor += batch.len();
                *tries = 0;
                progress.inc(batch.len() as u64);
                continue;
            }
            let advance = match (planned, result) {
                (_, None) => {
                    stats.crashes += 1;
                    0
                }
                (Plan::LoseResponse, Some(_)) => {
                    stats.lost_responses += 1;
                    0
                }
                (_, Some(Err(e))) => {
                    tracing::warn!(error = %e, "invocation failed; the batch is retried");
                    stats.failed += 1;
                    0
                }
                (_, Some(Ok(response))) => match first_failure(&response, batch) {
                    Some(i) => {
                        stats.partial_responses += 1;
                        i
                    }
                    None => batch.len(),
                },
            };
            if advance == 0 {
                *tries += 1;
                if *tries >= MAX_ATTEMPTS {
                    // Lambda would send the batch's metadata to the OnFailure
                    // destination and move on.
                    stats.abandoned += batch.len() as u64;
                    *cursor += batch.len();
                    *tries = 0;
                }
            } else {
                *tries = 0;
                *cursor += advance;
                progress.inc(advance as u64);
            }
        }
        if !busy {
            return stats;
        }
    }
}

/// One invocation of the real handler on `records`, with a Lambda-like
/// deadline a minute away.
async fn invoke(deps: &Deps, records: &[Value]) -> Result<KinesisEventResponse, String> {
    let event: KinesisEvent =
        serde_json::from_value(json!({ "Records": records })).map_err(|e| e.to_string())?;
    let event = handler::local_event(event, Duration::from_secs(60));
    handler::handle(event, deps).await.map_err(|e| e.to_string())
}

/// Loses a shard's write stream during an invocation.
struct LostStream<'a> {
    emulator: &'a Emulator,
    streams: Option<&'a StreamFinder<'a>>,
    shard_id: &'a str,
}

impl LostStream<'_> {
    /// One invocation armed as in doubt ([`Plan::ExpireMidway`]): as soon as
    /// its first append has landed (its answer lost, every retry refused),
    /// the stream it wrote — the one the shard's state names by then, as a
    /// claim is persisted before the first append — is garbage-collected and
    /// the service comes back, so the handler meets NOT_FOUND with that
    /// append in doubt. Returns the invocation's result and the stream
    /// expired, if any.
    async fn during(
        &self,
        deps: &Deps,
        records: &[Value],
    ) -> (Result<KinesisEventResponse, String>, Option<String>) {
        let mut activity = self.emulator.activity();
        let before = activity.borrow().append_requests;
        let invocation = invoke(deps, records);
        tokio::pin!(invocation);
        tokio::select! {
            result = &mut invocation => (result, None),
            landed = async { activity.wait_for(|a| a.append_requests > before).await.is_ok() } => {
                // (The borrow of the activity is gone: the emulator can record again.)
                let stream = match (landed, self.streams) {
                    (true, Some(finder)) => finder.current(self.shard_id).await,
                    _ => None,
                };
                let expired = stream.filter(|name| self.emulator.expire_stream(name).is_ok());
                disarm(self.emulator.faults());
                (invocation.await, expired)
            }
        }
    }
}

/// Index in `batch` of the record the response names, if any: Lambda
/// checkpoints before it and resends from there.
fn first_failure(response: &KinesisEventResponse, batch: &[Value]) -> Option<usize> {
    let failed: Vec<&str> =
        response.batch_item_failures.iter().filter_map(|f| f.item_identifier.as_deref()).collect();
    if failed.is_empty() {
        return None;
    }
    batch
        .iter()
        .position(|r| {
            r["kinesis"]["sequenceNumber"].as_str().is_some_and(|seq| failed.contains(&seq))
        })
        .or(Some(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::streams::KinesisBatchItemFailure;

    fn batch() -> Vec<Value> {
        ["1", "2", "3"].iter().map(|s| json!({"kinesis": {"sequenceNumber": s}})).collect()
    }

    fn response(ids: &[&str]) -> KinesisEventResponse {
        let mut r = KinesisEventResponse::default();
        for id in ids {
            let mut f = KinesisBatchItemFailure::default();
            f.item_identifier = Some((*id).to_string());
            r.batch_item_failures.push(f);
        }
        r
    }

    #[test]
    fn resumes_at_the_named_record() {
        assert_eq!(first_failure(&response(&[]), &batch()), None);
        assert_eq!(first_failure(&response(&["2"]), &batch()), Some(1));
        // Several named: Lambda checkpoints at the lowest.
        assert_eq!(first_failure(&response(&["3", "2"]), &batch()), Some(1));
        // A name not in the batch: the whole batch again.
        assert_eq!(first_failure(&response(&["9"]), &batch()), Some(0));
    }
}
