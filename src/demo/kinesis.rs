//! A stand-in for Lambda's Kinesis event source mapping: it hands each
//! shard's records to the real handler in batches, one invocation per shard
//! at a time (ParallelizationFactor 1), and retries from the first record
//! the partial batch response names — or the whole batch when the
//! invocation failed, crashed, or its response was lost.

use super::faults::{FaultSet, Plan, arm, disarm, plan};
use crate::emulator::Faults;
use crate::handler::{self, Deps};
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
}

/// Delivers every shard's records through `deps`' handler.
pub async fn drive(
    deps: &Deps,
    faults: &Faults,
    shards: &[(String, Vec<Value>)],
    batch_size: usize,
    fault_set: &FaultSet,
    progress: &ProgressBar,
) -> EsmStats {
    let mut stats = EsmStats::default();
    let mut cursors = vec![0usize; shards.len()];
    let mut attempts = vec![0u32; shards.len()];
    let mut invocation = 0usize;
    loop {
        let mut busy = false;
        for (s, (_, records)) in shards.iter().enumerate() {
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
            let planned = plan(fault_set, invocation);
            invocation += 1;
            stats.invocations += 1;
            arm(faults, planned);
            let result = match planned {
                Plan::KillMidway(after) => {
                    tokio::time::timeout(after, invoke(deps, batch)).await.ok()
                }
                _ => Some(invoke(deps, batch).await),
            };
            disarm(faults);
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
