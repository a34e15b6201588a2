//! Where records settle when they do not simply land by an append: the
//! dead-letter queue, a finalized stream's row count and the rotation to a
//! new stream, and the spillover.

use super::{Flow, Run, crashed};
use crate::bigquery::write_stream;
use crate::delivery::crash::Boundary;
use crate::delivery::outcome::{GaveBack, Landing};
use crate::delivery::plan::{self, Slot};
use crate::delivery::prepare;
use crate::delivery::sinks::{self, SpillOf, Stored};
use crate::delivery::state::{Claim, ShardState};
use crate::dlq::DeadLetter;
use crate::spill::{SpillReason, SpilledRecord};

impl Run<'_, '_> {
    /// Sends every record the state excludes to the dead-letter queue
    /// before the state moves past it. A letter the queue refuses ends the
    /// invocation's work at that record.
    pub(super) async fn dead_letter_excluded(&mut self) -> Result<(), GaveBack> {
        let slots = self.slots();
        // A record refused only under today's schema may have been written
        // by an earlier attempt that knew more, or be written by a later one:
        // it is dead-lettered only once its exclusion is persisted (which
        // happens only where the stream's end is known), never on this
        // attempt's view alone (scenario 7: never in the table and the queue).
        let mut which = Vec::new();
        let mut letters = Vec::new();
        let mut awaiting = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let Some(item) = self.items.get(i) else { continue };
            let needs = *slot == Slot::Excluded;
            let settled = self.lettered.get(i).copied().unwrap_or(true)
                || self.landing.get(i).is_some_and(Option::is_some);
            if !needs || settled {
                continue;
            }
            if self.awaits_columns(i) {
                awaiting.push(i);
                continue;
            }
            let exclusion = self.state.excluded(&item.position);
            if let Some(letter) = prepare::letter_for_excluded(item, exclusion, self.batch.table) {
                which.push(i);
                letters.push(letter);
            }
        }
        self.send_letters(which, letters).await?;
        self.spill_awaiting(awaiting).await
    }

    /// Whether the state excludes item `i` because it waits for columns
    /// (`UNKNOWN_FIELDS=add`): the persisted reason decides, not this
    /// attempt's view, so every retry settles it the same way.
    fn awaits_columns(&self, i: usize) -> bool {
        self.items
            .get(i)
            .and_then(|item| self.state.excluded(&item.position))
            .is_some_and(|e| e.reason == crate::delivery::state::ExclusionReason::AwaitingColumns)
    }

    /// Spills excluded records that wait for columns, in one object of
    /// their own (reason `awaiting_columns`): the backfill writes them once
    /// the columns are visible. If the spillover refuses, the invocation's
    /// work ends at the first of them, as for a refused dead letter.
    async fn spill_awaiting(&mut self, which: Vec<usize>) -> Result<(), GaveBack> {
        let records: Vec<SpilledRecord> = which
            .iter()
            .filter_map(|&i| self.items.get(i).and_then(|it| it.record))
            .map(|r| SpilledRecord::from_source(r, None))
            .collect();
        let Some(&first) = which.first() else { return Ok(()) };
        let error = "new columns not visible to writers before the wait ended".to_string();
        let stored = self.write_spill(&which, records, None, SpillReason::AwaitingColumns, error);
        if !stored.await? {
            self.limit = self.limit.min(first);
        }
        Ok(())
    }

    pub(super) async fn send_letters(
        &mut self,
        which: Vec<usize>,
        letters: Vec<DeadLetter>,
    ) -> Result<(), GaveBack> {
        let deps = self.deps;
        let (stats, lettered) = (&mut self.stats, &mut self.lettered);
        let accepted = |k: usize| {
            stats.dead_lettered += 1;
            if let Some(l) = which.get(k).and_then(|&i| lettered.get_mut(i)) {
                *l = true;
            }
        };
        let took =
            sinks::send_letters(deps.dlq.as_ref(), deps.crash.as_deref(), &letters, accepted)
                .await
                .map_err(crashed)?;
        if let Some(first) = sinks::first_refused(&which, &took) {
            self.limit = self.limit.min(first);
        }
        Ok(())
    }

    /// Finalizes (fences) the state's stream: from then on no older request
    /// can land in it, and its row count is its end. Ends the appender on it.
    pub(super) async fn fence(&mut self) -> Result<Fenced, GaveBack> {
        let stream = self.state.write_stream.clone();
        self.pass(Boundary::BeforeFinalize)?;
        let finalized = tokio::time::timeout_at(
            self.work_deadline,
            self.deps.client.finalize_write_stream(&stream),
        )
        .await;
        self.deps.drop_appender(&stream).await;
        match finalized {
            Ok(Ok(end)) => {
                self.pass(Boundary::AfterFinalize)?;
                self.stats.finalizes += 1;
                Ok(Fenced::End(end))
            }
            Ok(Err(e)) if super::lost::is_not_found(e.code()) => Ok(Fenced::Lost(e.to_string())),
            Ok(Err(e)) => Ok(Fenced::Unknown(format!("finalize failed: {e}"))),
            Err(_elapsed) => Ok(Fenced::Unknown("no time left to finalize".into())),
        }
    }

    /// The stream's end is not known: finalize it for its row count, keep
    /// that in the state, and let the next round rotate. If BigQuery cannot
    /// answer, spill what is not proven landed with its stream and offsets.
    pub(super) async fn resolve(&mut self, why: String) -> Result<Flow, GaveBack> {
        let stream = self.state.write_stream.clone();
        match self.fence().await? {
            Fenced::End(rows) => {
                tracing::info!(shard_id = self.batch.shard_id, write_stream = %stream, rows, why = %why, "stream finalized to resolve its end");
                let next = ShardState { stream_end: Some(rows), ..self.state.clone() };
                self.write_state(next).await?;
                Ok(Flow::Continue)
            }
            Fenced::Lost(e) => {
                // Gone: whatever an unanswered request (ours, or an earlier
                // attempt's when this invocation does not hold the claim) put
                // there can never be learned.
                let in_doubt_end = if self.claimed {
                    self.sent_end
                } else {
                    let slots = self.slots();
                    self.claimed_prefix_end(&slots)
                };
                self.stream_lost(in_doubt_end, format!("{why}; finalize: {e}")).await
            }
            Fenced::Unknown(e) => {
                let slots = self.slots();
                let error = format!("{why}; {e}");
                self.spill(&slots, 0, Some(stream), SpillReason::InDoubt, error).await?;
                Ok(Flow::Done)
            }
        }
    }

    /// The state's stream is finalized with `end` rows: everything mapped
    /// below it is in the table; the rest continues in a new stream.
    pub(super) async fn rotate(&mut self, slots: &[Slot], end: i64) -> Result<Flow, GaveBack> {
        let point = self.landed_point(slots, end);
        self.rotate_from(slots, point).await
    }

    /// Everything before `point` is landed; the rest continues in a new
    /// stream.
    pub(super) async fn rotate_from(
        &mut self,
        slots: &[Slot],
        point: usize,
    ) -> Result<Flow, GaveBack> {
        self.land_prefix(slots, point);
        if point >= slots.len() {
            return Ok(Flow::Done);
        }
        self.pass(Boundary::BeforeCreateStream)?;
        let created = tokio::time::timeout_at(
            self.work_deadline,
            self.deps.client.create_write_stream(self.batch.table, write_stream::Type::Committed),
        )
        .await;
        let name = match created {
            Ok(Ok(s)) if !s.name.is_empty() => s.name,
            other => {
                let error = match other {
                    Ok(Ok(_)) => "CreateWriteStream returned no name".to_string(),
                    Ok(Err(e)) if super::lost::is_not_found(e.code()) => {
                        tracing::error!(shard_id = self.batch.shard_id, table = %self.batch.table, error = %e,
                            "the table does not exist: records go to the spillover until it is created again, then run the backfill");
                        e.to_string()
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "no time left to create a write stream".to_string(),
                };
                // Beyond a finalized end nothing is in the table: no offsets needed.
                self.spill(slots, point, None, SpillReason::RetriesExhausted, error).await?;
                return Ok(Flow::Done);
            }
        };
        self.pass(Boundary::AfterCreateStream)?;
        let more = self.new_exclusions(slots, point);
        let positions = self.positions();
        let mut next = plan::rotate_at(&self.state, &positions, slots, point, name, more);
        // A new stream nobody else knows: this invocation holds its tail.
        self.sent_end = 0;
        self.sent_rows.clear();
        next.claim = Claim::of_rows(self.own_rows(&next));
        self.write_state(next).await?;
        self.stats.rotations += 1;
        self.known_end = Some(0);
        self.claimed = true;
        Ok(Flow::Continue)
    }

    /// Marks items `..upto` landed according to their slots (rows in the
    /// table, exclusions in the dead-letter queue).
    pub(super) fn land_prefix(&mut self, slots: &[Slot], upto: usize) {
        for (i, slot) in slots.iter().enumerate().take(upto) {
            if let Some(l) = self.landing.get_mut(i)
                && l.is_none()
            {
                *l = Some(match slot {
                    Slot::Earlier => Landing::Earlier,
                    Slot::Row { sendable: true, .. } => Landing::Table,
                    // Refused now but mapped below a proven end: an earlier
                    // attempt wrote it.
                    Slot::Row { sendable: false, .. } => Landing::Table,
                    Slot::Excluded => Landing::DeadLetter,
                });
            }
        }
    }

    /// Spills the not-yet-landed rows from `from` on; `write_stream` (with
    /// each record's offset) when their appends are in doubt.
    pub(super) async fn spill(
        &mut self,
        slots: &[Slot],
        from: usize,
        write_stream: Option<String>,
        reason: SpillReason,
        error: String,
    ) -> Result<(), GaveBack> {
        self.spill_range(slots, from..slots.len(), write_stream, reason, error).await
    }

    /// Spills the not-yet-landed rows of `range`.
    pub(super) async fn spill_range(
        &mut self,
        slots: &[Slot],
        range: std::ops::Range<usize>,
        write_stream: Option<String>,
        reason: SpillReason,
        error: String,
    ) -> Result<(), GaveBack> {
        let mut which = Vec::new();
        let mut records = Vec::new();
        for (i, slot) in slots.iter().enumerate().take(range.end).skip(range.start) {
            let pending = self.landing.get(i).is_some_and(Option::is_none);
            // A refused record not dead-lettered yet (its letter waits for
            // the stream's end) travels with the rest; the backfill settles it.
            let unlettered = self.lettered.get(i).is_some_and(|l| !l);
            match slot {
                Slot::Row { offset, sendable } if pending && (*sendable || unlettered) => {
                    if let Some(record) = self.items.get(i).and_then(|it| it.record) {
                        let offset = write_stream.as_ref().map(|_| *offset);
                        which.push(i);
                        records.push(SpilledRecord::from_source(record, offset));
                    }
                }
                // Waiting for columns: only its own spill settles it
                // (`spill_awaiting`); until then it has not landed.
                Slot::Excluded if pending && self.awaits_columns(i) => {}
                Slot::Row { sendable: false, .. } | Slot::Excluded if pending => {
                    if let Some(l) = self.landing.get_mut(i) {
                        *l = Some(Landing::DeadLetter);
                    }
                }
                _ => {}
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        self.write_spill(&which, records, write_stream, reason, error).await.map(|_| ())
    }

    /// Writes one spillover object of `records` (items `which`) and marks
    /// them landed there. `Ok(false)`: the spillover refused it too.
    async fn write_spill(
        &mut self,
        which: &[usize],
        records: Vec<SpilledRecord>,
        write_stream: Option<String>,
        reason: SpillReason,
        error: String,
    ) -> Result<bool, GaveBack> {
        let deps = self.deps;
        let what = SpillOf { records, reason, error, write_stream };
        let mode = crate::delivery::WriteMode::ExactlyOnce;
        let stored =
            sinks::write_spill(deps.spill.as_ref(), deps.crash.as_deref(), self.batch, mode, what)
                .await
                .map_err(crashed)?;
        if let Some(Stored { path, last }) = &stored {
            self.stats.spilled += which.len();
            if let Some(last) = last {
                self.spilled.push((path.clone(), last.clone()));
            }
            for &i in which {
                if let Some(l) = self.landing.get_mut(i) {
                    *l = Some(Landing::Spill);
                }
            }
        }
        self.pass(Boundary::AfterSpill)?;
        Ok(stored.is_some())
    }
}

/// What finalizing the state's stream said ([`Run::fence`]).
pub(super) enum Fenced {
    /// Finalized: its row count.
    End(i64),
    /// NOT_FOUND: the stream (or its table) is gone.
    Lost(String),
    /// No answer (an error, or no time left): the end stays unknown.
    Unknown(String),
}
