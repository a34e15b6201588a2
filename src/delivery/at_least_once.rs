//! `WRITE_MODE=at_least_once`: the table's `_default` stream, no state, no
//! offsets (fact sheet §2.1, §6). Highest throughput and any
//! parallelization factor; a retried invocation may write rows twice.
//!
//! Records that cannot become rows go to the dead-letter queue; rows BigQuery
//! rejects too, and the rest of their request is sent again; what BigQuery
//! will not take within the budget is spilled.

use tokio::time::Instant;

use super::crash::{self, Boundary};
use super::outcome::{DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
use super::plan::Kind;
use super::prepare::{self, Item};
use super::send;
use super::{DeliveryDeps, ShardBatch};
use crate::bigquery::AppendOutcome;
use crate::dlq::{DeadLetter, Reason};
use crate::spill::{SpillReason, SpilledBatch, SpilledRecord};

pub(crate) async fn deliver(
    batch: &ShardBatch<'_>,
    deps: &DeliveryDeps,
    deadline: Instant,
) -> ShardOutcome {
    let encoder = deps.encoder.snapshot();
    let prepared = prepare::prepare(super::inputs(batch), &encoder, &deps.limits, batch.table);
    let items = prepared.items;
    let mut landing: Vec<Option<Landing>> = vec![None; items.len()];
    let mut stats = DeliveryStats::default();
    let hook = deps.crash.as_deref();
    let work_deadline = deadline.checked_sub(deps.spill_reserve).unwrap_or(deadline);
    let result: Result<(), GaveBack> = async {
        // Bad records first.
        let bad: Vec<usize> = (0..items.len())
            .filter(|&i| items.get(i).is_some_and(|it| it.kind != Kind::Good))
            .collect();
        dead_letter(deps, batch.table, &items, &bad, None, &mut landing, &mut stats, hook).await?;

        let stream = batch.table.default_stream();
        let mut pending: Vec<usize> = (0..items.len())
            .filter(|&i| items.get(i).is_some_and(|it| it.kind == Kind::Good))
            .collect();
        let mut last_error = String::new();
        for _ in 0..deps.max_rounds.max(1) {
            if pending.is_empty() {
                break;
            }
            let lens: Vec<usize> =
                pending.iter().filter_map(|&i| items.get(i)).map(|i| i.row.len()).collect();
            let cuts = send::cut(&lens, 0, &encoder, &deps.limits);
            let requests = match send::requests(&cuts, &pending, &items, &encoder, false) {
                Ok(requests) => requests,
                Err(e) => {
                    last_error = e.to_string();
                    break;
                }
            };
            stats.requests += requests.len();
            let mut appender = deps.take_appender(&stream, &encoder).await;
            let sent = send::send(&mut appender, requests, work_deadline, hook).await;
            deps.put_appender(appender).await;
            let outcomes = sent.map_err(|c| GaveBack::Crashed(c.to_string()))?;
            let mut again = Vec::new();
            let mut rejected = Vec::new();
            let mut gave_up = false;
            for (c, outcome) in cuts.iter().zip(&outcomes) {
                let rows = pending.get(c.rows.clone()).unwrap_or_default();
                match outcome {
                    AppendOutcome::Appended { .. } | AppendOutcome::AlreadyExists => {
                        stats.rows_appended += rows.len();
                        for &i in rows {
                            set(&mut landing, i, Landing::Table);
                        }
                    }
                    AppendOutcome::RowErrors(errors) => {
                        let bad: Vec<usize> = errors.iter().map(|e| e.index).collect();
                        for (k, &i) in rows.iter().enumerate() {
                            if bad.contains(&k) {
                                let message = errors
                                    .iter()
                                    .find(|e| e.index == k)
                                    .map(|e| e.message.clone())
                                    .unwrap_or_default();
                                rejected.push((i, message));
                            } else {
                                again.push(i);
                            }
                        }
                    }
                    AppendOutcome::NotSent if !gave_up => again.extend_from_slice(rows),
                    AppendOutcome::Failed(e) | AppendOutcome::InDoubt(e) => {
                        gave_up = true;
                        last_error = e.to_string();
                    }
                    AppendOutcome::NotSent => {}
                }
            }
            let ids: Vec<usize> = rejected.iter().map(|(i, _)| *i).collect();
            let messages: Vec<String> = rejected.into_iter().map(|(_, m)| m).collect();
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
            if gave_up {
                break;
            }
            pending = again;
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
    let mut records = vec![RecordOutcome::NotLanded; batch.records.len()];
    let by_item: Vec<RecordOutcome> =
        landing.iter().map(|l| l.map_or(RecordOutcome::NotLanded, RecordOutcome::Landed)).collect();
    for (item, outcome) in items.iter().zip(&by_item) {
        if let Some(slot) = records.get_mut(item.index) {
            *slot = *outcome;
        }
    }
    for (index, item) in &prepared.repeats {
        if let (Some(slot), Some(o)) = (records.get_mut(*index), by_item.get(*item)) {
            *slot = *o;
        }
    }
    if matches!(result, Err(GaveBack::Crashed(_))) {
        deps.forget_appenders().await;
    }
    ShardOutcome { records, gave_back: result.err(), stats }
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
            (Some(m), Some(record), _) => {
                Some(DeadLetter::new(record, table, Reason::RejectedByBigquery, m.clone()))
            }
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
    crash::pass(hook, Boundary::BeforeDeadLetter).map_err(|c| GaveBack::Crashed(c.to_string()))?;
    let failed: Vec<usize> = match deps.dlq.send(&letters).await {
        Ok(()) => Vec::new(),
        Err(crate::dlq::DlqError::Partial { failed, .. }) => failed,
        Err(_) => (0..letters.len()).collect(),
    };
    for (k, &i) in ids.iter().enumerate() {
        if !failed.contains(&k) {
            stats.dead_lettered += 1;
            set(landing, i, Landing::DeadLetter);
        }
    }
    crash::pass(hook, Boundary::AfterDeadLetter).map_err(|c| GaveBack::Crashed(c.to_string()))
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
    let mut spilled = SpilledBatch::new(batch.table.clone(), reason, error, &[]);
    spilled.stream_arn = batch.stream_arn.to_string();
    spilled.shard_id = batch.shard_id.to_string();
    spilled.write_mode = Some(deps.mode);
    spilled.records = records;
    crash::pass(hook, Boundary::BeforeSpill).map_err(|c| GaveBack::Crashed(c.to_string()))?;
    if deps.spill.spill(&spilled).await.is_ok() {
        stats.spilled += which.len();
        for &i in which {
            set(landing, i, Landing::Spill);
        }
    }
    crash::pass(hook, Boundary::AfterSpill).map_err(|c| GaveBack::Crashed(c.to_string()))
}
