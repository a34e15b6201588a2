//! `WRITE_MODE=at_least_once`: the table's `_default` stream, no state, no
//! offsets (fact sheet §2.1, §6). Highest throughput and any
//! parallelization factor; a retried invocation may write rows twice.
//!
//! Records that cannot become rows go to the dead-letter queue; rows BigQuery
//! rejects too, and the rest of their request is sent again; what BigQuery
//! will not take within the budget is spilled.

use tokio::time::Instant;

use super::crash::{self, Boundary};
use super::outcome::{self, DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
use super::plan::Kind;
use super::prepare::{self, Item};
use super::send::{self, Stopped};
use super::sinks::{self, SpillOf};
use super::streaming::{self, Role};
use super::{DeliveryDeps, ShardBatch};
use crate::bigquery::AppendOutcome;
use crate::dlq::{Cause, DeadLetter};
use crate::spill::{SpillReason, SpilledRecord};

pub(crate) async fn deliver(
    batch: &ShardBatch<'_>,
    deps: &DeliveryDeps,
    deadline: Instant,
) -> ShardOutcome {
    let encoder = deps.encoder.snapshot();
    let hook = deps.crash.as_deref();
    let work_deadline = deadline.checked_sub(deps.spill_reserve).unwrap_or(deadline);
    let stream = batch.table.default_stream();
    let (items, repeats, mut round, crash_at, mut last_error) = if deps.encode_first {
        let prepared = prepare::prepare(super::inputs(batch), &encoder, &deps.limits, batch.table);
        (prepared.items, prepared.repeats, None, None, String::new())
    } else {
        let (inputs, repeats) = prepare::order(super::inputs(batch));
        // Round one streams: records are encoded and cut while earlier
        // requests are on the wire (`streaming.rs`); later rounds re-send
        // what is left.
        // Every good row goes, at the stream's end.
        let good = |item: &Item<'_>| if item.kind == Kind::Good { Role::Row } else { Role::Skip };
        let (first, outcomes) = streaming::stream_round(
            deps,
            &stream,
            inputs,
            &encoder,
            batch.table,
            None,
            good,
            work_deadline,
        )
        .await;
        let requests = first
            .requests
            .iter()
            .map(|r| first.segment.get(r.clone()).unwrap_or_default().to_vec());
        let round = Some((requests.collect::<Vec<Vec<usize>>>(), outcomes));
        let error = first.error.map(|e| format!("building a request failed: {e}"));
        (first.items, repeats, round, first.crashed, error.unwrap_or_default())
    };
    let mut landing: Vec<Option<Landing>> = vec![None; items.len()];
    let mut stats = DeliveryStats {
        requests: round.as_ref().map_or(0, |(requests, _)| requests.len()),
        ..DeliveryStats::default()
    };
    let result: Result<(), GaveBack> = async {
        if let Some(c) = crash_at {
            return Err(GaveBack::Crashed(c));
        }
        if round.is_some() {
            crash::pass(hook, Boundary::AfterAppendRound).map_err(crashed)?;
        }
        let bad: Vec<usize> = (0..items.len())
            .filter(|&i| items.get(i).is_some_and(|it| it.kind != Kind::Good))
            .collect();
        dead_letter(deps, batch.table, &items, &bad, None, &mut landing, &mut stats, hook).await?;

        // Encoded first: every good row is pending for round one.
        let mut pending: Vec<usize> = if round.is_none() {
            (0..items.len())
                .filter(|&i| items.get(i).is_some_and(|it| it.kind == Kind::Good))
                .collect()
        } else {
            Vec::new()
        };
        for _ in 0..deps.max_rounds.max(1) {
            let (requests, outcomes) = match round.take() {
                Some(first) => first,
                None if pending.is_empty() => break,
                None => {
                    let rows: Vec<bytes::Bytes> = pending
                        .iter()
                        .filter_map(|&i| items.get(i))
                        .map(|i| i.row.clone())
                        .collect();
                    let (encoder, table) = (&encoder, batch.table);
                    let sent =
                        send::round(deps, &stream, encoder, table, &rows, None, work_deadline)
                            .await;
                    let (cuts, outcomes) = match sent {
                        Ok(round) => round,
                        Err(Stopped::Crashed(c)) => return Err(crashed(c)),
                        Err(Stopped::Unbuilt(e)) => {
                            last_error = e.to_string();
                            break;
                        }
                    };
                    stats.requests += cuts.len();
                    let rows = cuts
                        .iter()
                        .map(|c| pending.get(c.rows.clone()).unwrap_or_default().to_vec())
                        .collect();
                    (rows, outcomes)
                }
            };
            let judged = judge(&requests, &outcomes, &mut stats, &mut landing);
            if let Some(e) = judged.error {
                last_error = e;
            }
            let ids: Vec<usize> = judged.rejected.iter().map(|(i, _)| *i).collect();
            let messages: Vec<String> = judged.rejected.into_iter().map(|(_, m)| m).collect();
            dead_letter(
                deps,
                batch.table,
                &items,
                &ids,
                Some(&messages),
                &mut landing,
                &mut stats,
                hook,
            )
            .await?;
            if judged.gave_up {
                break;
            }
            pending = judged.again;
        }
        // Whatever is still not in the table goes to the spillover.
        let rest: Vec<usize> = (0..items.len())
            .filter(|&i| {
                landing.get(i).is_some_and(Option::is_none)
                    && items.get(i).is_some_and(|it| it.kind == Kind::Good)
            })
            .collect();
        if !rest.is_empty() {
            let reason = if Instant::now() >= work_deadline {
                SpillReason::DeadlineNear
            } else {
                SpillReason::RetriesExhausted
            };
            spill(batch, deps, &items, &rest, reason, last_error, &mut landing, &mut stats, hook)
                .await?;
        }
        Ok(())
    }
    .await;
    let by_item: Vec<RecordOutcome> =
        landing.iter().map(|l| l.map_or(RecordOutcome::NotLanded, RecordOutcome::Landed)).collect();
    let records = outcome::per_record(batch.records.len(), &items, &by_item, &repeats);
    if matches!(result, Err(GaveBack::Crashed(_))) {
        deps.forget_appenders().await;
    }
    ShardOutcome { records, gave_back: result.err(), stats }
}

/// What one round's answers say about its rows.
struct Judged {
    /// Rows to send again (their request was refused for other rows, or not sent).
    again: Vec<usize>,
    /// Rows BigQuery rejected, with its message.
    rejected: Vec<(usize, String)>,
    /// A request failed for good or is in doubt: no further round.
    gave_up: bool,
    error: Option<String>,
}

/// Lands the rows of appended requests and sorts the rest.
fn judge(
    requests: &[Vec<usize>],
    outcomes: &[AppendOutcome],
    stats: &mut DeliveryStats,
    landing: &mut [Option<Landing>],
) -> Judged {
    let mut j = Judged { again: Vec::new(), rejected: Vec::new(), gave_up: false, error: None };
    for (rows, outcome) in requests.iter().zip(outcomes) {
        match outcome {
            AppendOutcome::Appended { .. } | AppendOutcome::AlreadyExists => {
                stats.rows_appended += rows.len();
                for &i in rows {
                    set(landing, i, Landing::Table);
                }
            }
            AppendOutcome::RowErrors(errors) => {
                for (k, &i) in rows.iter().enumerate() {
                    match errors.iter().find(|e| e.index == k) {
                        Some(e) => j.rejected.push((i, e.message.clone())),
                        None => j.again.push(i),
                    }
                }
            }
            AppendOutcome::NotSent if !j.gave_up => j.again.extend_from_slice(rows),
            AppendOutcome::Failed(e) | AppendOutcome::InDoubt(e) => {
                j.gave_up = true;
                j.error = Some(e.to_string());
            }
            AppendOutcome::NotSent => {}
        }
    }
    j
}

fn set(landing: &mut [Option<Landing>], i: usize, l: Landing) {
    if let Some(slot) = landing.get_mut(i) {
        *slot = Some(l);
    }
}

/// Dead-letters `which`; `messages` (same order) marks them rejected by
/// BigQuery, otherwise each item's own letter is used.
#[allow(clippy::too_many_arguments)]
async fn dead_letter(
    deps: &DeliveryDeps,
    table: &crate::table::TableName,
    items: &[Item<'_>],
    which: &[usize],
    messages: Option<&[String]>,
    landing: &mut [Option<Landing>],
    stats: &mut DeliveryStats,
    hook: Option<&crash::CrashPoints>,
) -> Result<(), GaveBack> {
    let mut ids = Vec::new();
    let mut letters = Vec::new();
    for (k, &i) in which.iter().enumerate() {
        let Some(item) = items.get(i) else { continue };
        let letter = match (messages.and_then(|m| m.get(k)), item.record, &item.letter) {
            (Some(m), Some(record), _) => Some(DeadLetter::of(record, table, Cause::Rejected(m))),
            (None, _, Some(l)) => Some(l.clone()),
            _ => None,
        };
        if let Some(l) = letter {
            ids.push(i);
            letters.push(l);
        }
    }
    if letters.is_empty() {
        return Ok(());
    }
    let accepted = |k: usize| {
        if let Some(&i) = ids.get(k) {
            stats.dead_lettered += 1;
            set(landing, i, Landing::DeadLetter);
        }
    };
    sinks::send_letters(deps.dlq.as_ref(), hook, &letters, accepted).await.map_err(crashed)
}

#[allow(clippy::too_many_arguments)]
async fn spill(
    batch: &ShardBatch<'_>,
    deps: &DeliveryDeps,
    items: &[Item<'_>],
    which: &[usize],
    reason: SpillReason,
    error: String,
    landing: &mut [Option<Landing>],
    stats: &mut DeliveryStats,
    hook: Option<&crash::CrashPoints>,
) -> Result<(), GaveBack> {
    let records: Vec<SpilledRecord> = which
        .iter()
        .filter_map(|&i| items.get(i).and_then(|it| it.record))
        .map(|r| SpilledRecord::from_source(r, None))
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    let what = SpillOf { records, reason, error, write_stream: None };
    let mode = deps.mode.write_mode();
    let stored =
        sinks::write_spill(deps.spill.as_ref(), hook, batch, mode, what).await.map_err(crashed)?;
    if stored.is_some() {
        stats.spilled += which.len();
        for &i in which {
            set(landing, i, Landing::Spill);
        }
    }
    crash::pass(hook, Boundary::AfterSpill).map_err(crashed)
}

fn crashed(c: crash::Crash) -> GaveBack {
    GaveBack::Crashed(c.to_string())
}
