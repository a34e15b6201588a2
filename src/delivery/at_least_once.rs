//! `WRITE_MODE=at_least_once` (and `cdc`, whose rows differ only in their
//! encoder): the table's `_default` stream, no state, no offsets (fact
//! sheet §2.1, §6). Highest throughput and any parallelization factor; a
//! retried invocation may write rows twice.
//!
//! A thin variant of the exactly-once path: the same items (`prepare.rs`),
//! the same streamed first round and pre-cut later rounds (`streaming.rs`,
//! `send.rs`), the same dead-letter send and spill write (`sinks.rs`).
//! Without offsets there is no stream end to learn, so each request's
//! answer is judged on its own: its rows landed, BigQuery rejected some of
//! them (dead letters; the others go again), or it failed (the rest is
//! spilled).

use tokio::time::Instant;

use super::crash::{self, Boundary, Crash};
use super::outcome::{self, DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
use super::plan::Kind;
use super::prepare::{self, Input, Item};
use super::send::{self, Stopped};
use super::sinks::{self, SpillOf};
use super::streaming::{self, Role};
use super::{DeliveryDeps, ShardBatch};
use crate::bigquery::AppendOutcome;
use crate::dlq::{Cause, DeadLetter};
use crate::rows::Encoder;
use crate::spill::{SpillReason, SpilledRecord};

pub(crate) async fn deliver(
    batch: &ShardBatch<'_>,
    deps: &DeliveryDeps,
    deadline: Instant,
) -> ShardOutcome {
    let (inputs, repeats) = prepare::order(super::inputs(batch));
    let mut run = Run {
        batch,
        deps,
        encoder: deps.encoder.snapshot(),
        work_deadline: deadline.checked_sub(deps.spill_reserve).unwrap_or(deadline),
        stream: batch.table.default_stream(),
        items: Vec::new(),
        landing: Vec::new(),
        stats: DeliveryStats::default(),
        last_error: String::new(),
    };
    let result = run.go(inputs).await;
    if matches!(result, Err(GaveBack::Crashed(_))) {
        // A crashed container's connections die with it.
        deps.forget_appenders().await;
    }
    let by_item: Vec<RecordOutcome> = run
        .landing
        .iter()
        .map(|l| l.map_or(RecordOutcome::NotLanded, RecordOutcome::Landed))
        .collect();
    let records = outcome::per_record(batch.records.len(), &run.items, &by_item, &repeats);
    ShardOutcome { records, gave_back: result.err(), stats: run.stats }
}

/// The rows (indexes into the items) of each request of a round, and
/// their answers.
type Answered = (Vec<Vec<usize>>, Vec<AppendOutcome>);

struct Run<'a, 'b> {
    batch: &'b ShardBatch<'a>,
    deps: &'b DeliveryDeps,
    encoder: std::sync::Arc<Encoder>,
    /// Appends stop here; the time after it is for the spill.
    work_deadline: Instant,
    /// The table's `_default` stream.
    stream: String,
    items: Vec<Item<'a>>,
    landing: Vec<Option<Landing>>,
    stats: DeliveryStats,
    /// Why the last request that failed did, for the spill object.
    last_error: String,
}

impl<'a> Run<'a, '_> {
    async fn go(&mut self, inputs: Vec<(usize, Input<'a>)>) -> Result<(), GaveBack> {
        let hook = self.deps.crash.as_deref();
        // Round one streams: records are encoded and cut while earlier
        // requests are on the wire; encoded first, every good row is
        // pending for a pre-cut round one instead.
        let mut round = if self.deps.encode_first {
            let (deps, table) = (self.deps, self.batch.table);
            self.install(prepare::prepare_ordered(inputs, &self.encoder, &deps.limits, table));
            None
        } else {
            let first = self.stream_first(inputs).await?;
            crash::pass(hook, Boundary::AfterAppendRound).map_err(crashed)?;
            Some(first)
        };
        let bad: Vec<usize> = self.indexes(|it| it.kind != Kind::Good);
        self.dead_letter(&bad, None).await?;
        let mut pending =
            if round.is_none() { self.indexes(|it| it.kind == Kind::Good) } else { Vec::new() };
        for _ in 0..self.deps.max_rounds.max(1) {
            let (requests, outcomes) = match round.take() {
                Some(first) => first,
                None if pending.is_empty() => break,
                None => match self.resend(&pending).await? {
                    Some(answered) => answered,
                    None => break,
                },
            };
            let judged = self.judge(&requests, &outcomes);
            if let Some(e) = judged.error {
                self.last_error = e;
            }
            let (ids, messages): (Vec<usize>, Vec<String>) = judged.rejected.into_iter().unzip();
            self.dead_letter(&ids, Some(&messages)).await?;
            if judged.gave_up {
                break;
            }
            pending = judged.again;
        }
        // Whatever is still not in the table goes to the spillover.
        let rest = self.indexes(|it| it.kind == Kind::Good);
        let rest: Vec<usize> = rest
            .into_iter()
            .filter(|&i| self.landing.get(i).is_some_and(Option::is_none))
            .collect();
        if rest.is_empty() {
            return Ok(());
        }
        let reason = if Instant::now() >= self.work_deadline {
            SpillReason::DeadlineNear
        } else {
            SpillReason::RetriesExhausted
        };
        self.spill(&rest, reason).await
    }

    fn install(&mut self, items: Vec<Item<'a>>) {
        self.landing = vec![None; items.len()];
        self.items = items;
    }

    /// Indexes of the items `keep` selects.
    fn indexes(&self, keep: impl Fn(&Item<'a>) -> bool) -> Vec<usize> {
        (0..self.items.len()).filter(|&i| self.items.get(i).is_some_and(&keep)).collect()
    }

    /// The streamed round one: every good row, at the stream's end.
    async fn stream_first(
        &mut self,
        inputs: Vec<(usize, Input<'a>)>,
    ) -> Result<Answered, GaveBack> {
        let good = |item: &Item<'_>| if item.kind == Kind::Good { Role::Row } else { Role::Skip };
        let (deps, table, deadline) = (self.deps, self.batch.table, self.work_deadline);
        let encoder = std::sync::Arc::clone(&self.encoder);
        let (first, outcomes) = streaming::stream_round(
            deps,
            &self.stream,
            inputs,
            &encoder,
            table,
            None,
            good,
            deadline,
        )
        .await;
        self.install(first.items);
        self.stats.requests += first.requests.len();
        if let Some(e) = first.error {
            self.last_error = format!("building a request failed: {e}");
        }
        if let Some(c) = first.crashed {
            return Err(GaveBack::Crashed(c));
        }
        let rows = first
            .requests
            .iter()
            .map(|r| first.segment.get(r.clone()).unwrap_or_default().to_vec());
        Ok((rows.collect(), outcomes))
    }

    /// A pre-cut round of the `pending` rows. `None`: no request could be built.
    async fn resend(&mut self, pending: &[usize]) -> Result<Option<Answered>, GaveBack> {
        let rows: Vec<bytes::Bytes> =
            pending.iter().filter_map(|&i| self.items.get(i)).map(|i| i.row.clone()).collect();
        let (deps, table, deadline) = (self.deps, self.batch.table, self.work_deadline);
        let sent =
            send::round(deps, &self.stream, &self.encoder, table, &rows, None, deadline).await;
        let (cuts, outcomes) = match sent {
            Ok(round) => round,
            Err(Stopped::Crashed(c)) => return Err(crashed(c)),
            Err(Stopped::Unbuilt(e)) => {
                self.last_error = e.to_string();
                return Ok(None);
            }
        };
        self.stats.requests += cuts.len();
        let rows = cuts.iter().map(|c| pending.get(c.rows.clone()).unwrap_or_default().to_vec());
        Ok(Some((rows.collect(), outcomes)))
    }

    /// Lands the rows of appended requests and sorts the rest.
    fn judge(&mut self, requests: &[Vec<usize>], outcomes: &[AppendOutcome]) -> Judged {
        let mut j = Judged { again: Vec::new(), rejected: Vec::new(), gave_up: false, error: None };
        for (rows, outcome) in requests.iter().zip(outcomes) {
            match outcome {
                AppendOutcome::Appended { .. } | AppendOutcome::AlreadyExists => {
                    self.stats.rows_appended += rows.len();
                    for &i in rows {
                        self.set(i, Landing::Table);
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

    fn set(&mut self, i: usize, l: Landing) {
        if let Some(slot) = self.landing.get_mut(i) {
            *slot = Some(l);
        }
    }

    /// Dead-letters `which`; `messages` (same order) marks them rejected by
    /// BigQuery, otherwise each item's own letter is used.
    async fn dead_letter(
        &mut self,
        which: &[usize],
        messages: Option<&[String]>,
    ) -> Result<(), GaveBack> {
        let mut ids = Vec::new();
        let mut letters = Vec::new();
        for (k, &i) in which.iter().enumerate() {
            let Some(item) = self.items.get(i) else { continue };
            let letter = match (messages.and_then(|m| m.get(k)), item.record, &item.letter) {
                (Some(m), Some(record), _) => {
                    Some(DeadLetter::of(record, self.batch.table, Cause::Rejected(m)))
                }
                (None, _, Some(l)) => Some(l.clone()),
                _ => None,
            };
            if let Some(l) = letter {
                ids.push(i);
                letters.push(l);
            }
        }
        let (deps, stats, landing) = (self.deps, &mut self.stats, &mut self.landing);
        let accepted = |k: usize| {
            if let Some(slot) = ids.get(k).and_then(|&i| landing.get_mut(i)) {
                stats.dead_lettered += 1;
                *slot = Some(Landing::DeadLetter);
            }
        };
        let hook = deps.crash.as_deref();
        sinks::send_letters(deps.dlq.as_ref(), hook, &letters, accepted).await.map_err(crashed)?;
        Ok(())
    }

    /// Spills the records of items `which` in one object.
    async fn spill(&mut self, which: &[usize], reason: SpillReason) -> Result<(), GaveBack> {
        let records: Vec<SpilledRecord> = which
            .iter()
            .filter_map(|&i| self.items.get(i).and_then(|it| it.record))
            .map(|r| SpilledRecord::from_source(r, None))
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        let error = std::mem::take(&mut self.last_error);
        let what = SpillOf { records, reason, error, write_stream: None };
        let (deps, hook) = (self.deps, self.deps.crash.as_deref());
        let mode = deps.mode.write_mode();
        let stored = sinks::write_spill(deps.spill.as_ref(), hook, self.batch, mode, what)
            .await
            .map_err(crashed)?;
        if stored.is_some() {
            self.stats.spilled += which.len();
            for &i in which {
                self.set(i, Landing::Spill);
            }
        }
        crash::pass(hook, Boundary::AfterSpill).map_err(crashed)
    }
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

fn crashed(c: Crash) -> GaveBack {
    GaveBack::Crashed(c.to_string())
}
