//! The exactly-once driver for one shard batch (DESIGN.md, "Exactly-once:
//! the invariants"; `WRITE_MODE=exactly_once`).
//!
//! One invocation: load the shard's state (or create the placeholder);
//! dead-letter the records that get no row; then rounds of
//! - **rotate** when the state's stream is finalized: rows below its row
//!   count are in the table, the rest continue in a new COMMITTED stream whose
//!   name is persisted before anything is appended to it;
//! - **persist new exclusions** (records the current schema refuses, rows
//!   BigQuery rejected) as an intent, but only where the stream's end is known
//!   exactly, so no earlier attempt can have put a row where the new mapping
//!   puts another;
//! - **append** the rows of the mapping, pipelined, and judge the answers:
//!   all in; rows rejected at a known end; not written past a known end (→
//!   spillover); or unknown (`ALREADY_EXISTS` at the tail, answers lost) →
//!   **resolve** with `FinalizeWriteStream`, keep its row count in the state,
//!   and rotate.
//!
//! Then one compare-and-swap commits what landed. A lost CAS gives the batch
//! back. Kinesis is told "landed" only for what the last successful state
//! write covers.

use std::sync::Arc;

use tokio::time::Instant;

use super::crash::{self, Boundary, Crash};
use super::outcome::{DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
use super::plan::{self, Kind, Slot};
use super::prepare::{self, Item, Prepared};
use super::send::{self, Verdict};
use super::state::{ExclusionReason, ShardState, state_key};
use super::store::{StoreError, Version};
use super::{DeliveryDeps, ShardBatch};
use crate::bigquery::{AppendRequest, write_stream};
use crate::rows::Encoder;
use crate::source::Position;
use crate::spill::{SpillReason, SpilledBatch, SpilledRecord};

/// Runs the protocol for one shard batch.
pub(crate) async fn deliver(
    batch: &ShardBatch<'_>,
    deps: &DeliveryDeps,
    deadline: Instant,
) -> ShardOutcome {
    let encoder = deps.encoder.snapshot();
    let prepared = prepare::prepare(super::inputs(batch), &encoder, &deps.limits, batch.table);
    let mut run = Run::new(batch, deps, prepared, encoder, deadline);
    let result = run.go().await;
    if let Err(GaveBack::Crashed(_)) = &result {
        // A crashed container's connections die with it.
        deps.forget_appenders().await;
    }
    run.finish(result.err())
}

enum Flow {
    Continue,
    Done,
}

struct Run<'a, 'b> {
    batch: &'b ShardBatch<'a>,
    deps: &'b DeliveryDeps,
    items: Vec<Item<'a>>,
    repeats: Vec<(usize, usize)>,
    encoder: Arc<Encoder>,
    /// Appends and finalize stop here; the time after it is for spill + commit.
    work_deadline: Instant,
    key: String,
    state: ShardState,
    version: Option<Version>,
    /// `last_position` of the last state loaded or written: what Kinesis may
    /// be told has landed.
    durable: Option<Position>,
    /// An offset at or after which `state.write_stream` holds no row, when
    /// this invocation knows one: exactly the end after acknowledged appends,
    /// a bound after an `OUT_OF_RANGE` probe. Where it equals `next_offset`
    /// the mapping may change without colliding with an earlier attempt.
    known_end: Option<i64>,
    /// Items at or after this index are not handled in this invocation.
    limit: usize,
    landing: Vec<Option<Landing>>,
    /// Set when the records after the table-landed prefix were spilled as
    /// definitely not written: the stream ends here.
    unwritten_end: Option<i64>,
    /// Spillover objects written in this invocation: (key path, last position).
    spilled: Vec<(String, Position)>,
    stats: DeliveryStats,
}

impl<'a, 'b> Run<'a, 'b> {
    fn new(
        batch: &'b ShardBatch<'a>,
        deps: &'b DeliveryDeps,
        prepared: Prepared<'a>,
        encoder: Arc<Encoder>,
        deadline: Instant,
    ) -> Self {
        let n = prepared.items.len();
        Self {
            batch,
            deps,
            items: prepared.items,
            repeats: prepared.repeats,
            encoder,
            work_deadline: deadline.checked_sub(deps.spill_reserve).unwrap_or(deadline),
            key: state_key(batch.table, batch.stream_arn, batch.shard_id),
            state: ShardState::initial(),
            version: None,
            durable: None,
            known_end: None,
            limit: n,
            landing: vec![None; n],
            unwritten_end: None,
            spilled: Vec::new(),
            stats: DeliveryStats::default(),
        }
    }

    fn hook(&self) -> Option<&crash::CrashPoints> {
        self.deps.crash.as_deref()
    }

    fn pass(&self, b: Boundary) -> Result<(), GaveBack> {
        crash::pass(self.hook(), b).map_err(crashed)
    }

    async fn go(&mut self) -> Result<(), GaveBack> {
        self.load().await?;
        if self.items.is_empty() {
            return Ok(());
        }
        self.dead_letter_excluded().await?;
        let mut done = false;
        for _ in 0..self.deps.max_rounds.max(1) {
            if let Flow::Done = self.round().await? {
                done = true;
                break;
            }
        }
        if !done {
            tracing::warn!(
                shard_id = self.batch.shard_id,
                "round limit reached; the rest goes back"
            );
        }
        self.commit().await
    }

    async fn load(&mut self) -> Result<(), GaveBack> {
        match self.deps.state.load(&self.key).await {
            Ok(Some((bytes, version))) => {
                self.state = ShardState::from_json(&bytes)
                    .map_err(|e| GaveBack::CorruptState(format!("{}: {e}", self.key)))?;
                self.version = Some(version);
                self.durable = self.state.last_position.clone();
                Ok(())
            }
            Ok(None) => {
                if self.items.is_empty() {
                    return Ok(());
                }
                self.write_state(ShardState::initial()).await
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Positions and kinds of the items handled in this invocation.
    fn slots(&self) -> Vec<Slot> {
        let items: Vec<(&Position, Kind)> =
            self.items.iter().take(self.limit).map(|i| (&i.position, i.kind)).collect();
        plan::map(&self.state, &items)
    }

    fn positions(&self) -> Vec<&Position> {
        self.items.iter().take(self.limit).map(|i| &i.position).collect()
    }

    /// Sends every record that gets no row (or cannot be sent) to the
    /// dead-letter queue before anything else, so every later state write may
    /// move past them. A letter the queue refuses ends the invocation's work
    /// at that record.
    async fn dead_letter_excluded(&mut self) -> Result<(), GaveBack> {
        let slots = self.slots();
        let mut which = Vec::new();
        let mut letters = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let Some(item) = self.items.get(i) else { continue };
            let needs = matches!(slot, Slot::Excluded | Slot::Row { sendable: false, .. });
            if !needs {
                continue;
            }
            let exclusion = self.state.excluded(&item.position);
            if let Some(letter) = prepare::letter_for_excluded(item, exclusion, self.batch.table) {
                which.push(i);
                letters.push(letter);
            }
        }
        self.send_letters(which, letters).await
    }

    async fn send_letters(
        &mut self,
        which: Vec<usize>,
        letters: Vec<crate::dlq::DeadLetter>,
    ) -> Result<(), GaveBack> {
        if letters.is_empty() {
            return Ok(());
        }
        self.pass(Boundary::BeforeDeadLetter)?;
        let failed: Vec<usize> = match self.deps.dlq.send(&letters).await {
            Ok(()) => Vec::new(),
            Err(crate::dlq::DlqError::Partial { failed, cause }) => {
                tracing::warn!(error = %cause, failed = failed.len(), "dead letters not accepted");
                failed
            }
            Err(e) => {
                tracing::warn!(error = %e, "dead-letter queue unusable");
                (0..letters.len()).collect()
            }
        };
        self.stats.dead_lettered += letters.len() - failed.len().min(letters.len());
        if let Some(first) = failed.iter().filter_map(|&f| which.get(f)).min() {
            self.limit = self.limit.min(*first);
        }
        self.pass(Boundary::AfterDeadLetter)
    }

    async fn round(&mut self) -> Result<Flow, GaveBack> {
        let slots = self.slots();
        if let Some(end) = self.state.stream_end {
            return self.rotate(&slots, end).await;
        }
        let first_bad = slots.iter().position(|s| matches!(s, Slot::Row { sendable: false, .. }));
        if first_bad.is_some() && self.known_end == Some(self.state.next_offset) {
            // Nothing exists at or after next_offset: the new exclusions can
            // take effect now, persisted first.
            let more = self.new_exclusions(&slots, 0);
            let next = plan::exclude(&self.state, more);
            self.write_state(next).await?;
            return Ok(Flow::Continue);
        }
        let upto = first_bad.unwrap_or(slots.len());
        let segment: Vec<usize> =
            (0..upto).filter(|&i| matches!(slots.get(i), Some(Slot::Row { .. }))).collect();
        if segment.is_empty() {
            let Some(k) = first_bad else {
                self.land_prefix(&slots, slots.len());
                return Ok(Flow::Done);
            };
            if let Some((probe, upto)) = self.probe_segment(&slots, k) {
                return self.append_round(&slots, probe, upto, Some(k), true).await;
            }
            // Refused records first, and no row before them to learn the
            // stream's end from: only its row count can tell.
            return self.resolve("new exclusion at an unknown stream end".into()).await;
        }
        self.append_round(&slots, segment, upto, first_bad, false).await
    }

    /// One refused record leads the mapping at `next_offset` and a row
    /// follows it: appending the rows after it at their own offsets bounds
    /// the stream's end — `OUT_OF_RANGE` means no row at or after the refused
    /// record's offset, so it may leave the mapping; an acknowledgement means
    /// an earlier attempt wrote it, and the mapping stands. Returns the
    /// segment and where it stops.
    fn probe_segment(&self, slots: &[Slot], k: usize) -> Option<(Vec<usize>, usize)> {
        let at = slots.get(k)?.offset()?;
        if at != self.state.next_offset {
            return None;
        }
        let (j, next) = slots.iter().enumerate().skip(k + 1).find(|(_, s)| s.offset().is_some())?;
        if *next != (Slot::Row { offset: at + 1, sendable: true }) {
            return None;
        }
        let upto = slots
            .iter()
            .enumerate()
            .skip(j)
            .find(|(_, s)| matches!(s, Slot::Row { sendable: false, .. }))
            .map_or(slots.len(), |(i, _)| i);
        let segment =
            (j..upto).filter(|&i| matches!(slots.get(i), Some(Slot::Row { .. }))).collect();
        Some((segment, upto))
    }

    /// Appends the rows of `segment` (consecutive offsets; everything before
    /// `upto` that is not in it is excluded, earlier, or — for a probe — the
    /// one refused record `first_bad` right before it) and acts on the verdict.
    async fn append_round(
        &mut self,
        slots: &[Slot],
        segment: Vec<usize>,
        upto: usize,
        first_bad: Option<usize>,
        probe: bool,
    ) -> Result<Flow, GaveBack> {
        let slots = slots.to_vec();
        let Some(first_offset) = segment.first().and_then(|&i| slots.get(i)).and_then(Slot::offset)
        else {
            return Ok(Flow::Done);
        };
        let row_lens: Vec<usize> =
            segment.iter().filter_map(|&i| self.items.get(i)).map(|i| i.row.len()).collect();
        let cuts = send::cut(&row_lens, first_offset, &self.encoder, &self.deps.limits);
        let mut requests = Vec::with_capacity(cuts.len());
        for c in &cuts {
            let rows: Vec<&[u8]> = segment
                .get(c.rows.clone())
                .unwrap_or_default()
                .iter()
                .filter_map(|&i| self.items.get(i))
                .map(|i| i.row.as_slice())
                .collect();
            match self.encoder.request_rows(&rows, false) {
                Ok(r) => requests.push(AppendRequest {
                    offset: Some(c.offset),
                    bytes: self.encoder.request_bytes(rows.iter().map(|r| r.len())),
                    row_count: rows.len(),
                    rows: r,
                }),
                Err(e) => return self.resolve(format!("building a request failed: {e}")).await,
            }
        }
        self.stats.requests += requests.len();
        let stream = self.state.write_stream.clone();
        let mut appender = self.deps.take_appender(&stream, &self.encoder).await;
        let sent = send::send(&mut appender, requests, self.work_deadline, self.hook()).await;
        self.deps.put_appender(appender).await;
        let outcomes = sent.map_err(crashed)?;
        if probe && outcomes.first().is_some_and(send::is_out_of_range) {
            // No row at or after the refused record: it may leave the mapping.
            self.known_end = Some(first_offset - 1);
            return Ok(Flow::Continue);
        }
        let verdict = send::judge(&cuts, &outcomes, self.known_end);
        // Items before this index are landed once `landed` requests are in.
        // Before a probe's first acknowledgement its refused record is not.
        let in_table = |landed: usize| -> usize {
            match (landed, probe, first_bad) {
                (0, true, Some(k)) => k,
                _ => cuts
                    .get(landed)
                    .and_then(|c| segment.get(c.rows.start))
                    .copied()
                    .unwrap_or(upto),
            }
        };
        match verdict {
            Verdict::AllIn { end } => {
                self.stats.rows_appended += segment.len();
                self.known_end = Some(end);
                self.land_prefix(&slots, upto);
                // After a probe the refused record before the segment is in
                // the table (an earlier attempt wrote it); the next refused
                // one, if any, is at `upto`.
                let next_bad = if probe { (upto < slots.len()).then_some(upto) } else { first_bad };
                let Some(k) = next_bad else { return Ok(Flow::Done) };
                let more = self.new_exclusions(&slots, k);
                let positions = self.positions();
                let next = plan::exclude(&plan::advance(&self.state, &positions, &slots, k), more);
                self.write_state(next).await?;
                Ok(Flow::Continue)
            }
            Verdict::RowErrors { landed, request, offset, errors, at_end } => {
                let start = in_table(landed);
                self.land_prefix(&slots, start);
                let base = cuts.get(request).map_or(0, |c| c.rows.start);
                let rejected: Vec<(usize, String)> = errors
                    .iter()
                    .filter_map(|e| segment.get(base + e.index).map(|&i| (i, e.message.clone())))
                    .collect();
                if rejected.is_empty() {
                    return self.resolve("row errors name no row of the request".into()).await;
                }
                if at_end {
                    self.known_end = Some(offset);
                    self.reject(&slots, start, rejected).await?;
                } else {
                    // Where the stream ends is not known, so the mapping may
                    // not change yet: treat the rows like records the schema
                    // refuses, and learn the end from the rows before them.
                    self.refuse(rejected).await?;
                }
                Ok(Flow::Continue)
            }
            Verdict::NotWritten { landed, end, reason, error } => {
                let start = in_table(landed);
                self.land_prefix(&slots, start);
                self.known_end = Some(end);
                self.unwritten_end = Some(end);
                self.spill(&slots, start, None, reason, error).await?;
                Ok(Flow::Done)
            }
            Verdict::Unknown { landed, error } => {
                let start = in_table(landed);
                self.land_prefix(&slots, start);
                self.resolve(error).await
            }
        }
    }

    /// The intent entries for every refused record from `from` on.
    fn new_exclusions(&self, slots: &[Slot], from: usize) -> Vec<super::state::Exclusion> {
        slots
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(_, s)| matches!(s, Slot::Row { sendable: false, .. }))
            .filter_map(|(i, _)| self.items.get(i))
            .map(prepare::schema_exclusion)
            .collect()
    }

    /// Rows BigQuery refused at the known end `slots[start]`: dead-letter
    /// them, then persist their exclusion with the landed prefix.
    async fn reject(
        &mut self,
        slots: &[Slot],
        start: usize,
        rejected: Vec<(usize, String)>,
    ) -> Result<(), GaveBack> {
        let mut which = Vec::new();
        let mut letters = Vec::new();
        let mut more = Vec::new();
        for (i, message) in rejected {
            let Some(item) = self.items.get(i) else { continue };
            more.push(prepare::exclusion_for(
                item,
                ExclusionReason::RejectedByBigquery,
                message.clone(),
            ));
            if let Some(record) = item.record {
                which.push(i);
                letters.push(crate::dlq::DeadLetter::new(
                    record,
                    self.batch.table,
                    crate::dlq::Reason::RejectedByBigquery,
                    message,
                ));
            }
        }
        self.send_letters(which, letters).await?;
        let positions = self.positions();
        let next = plan::exclude(&plan::advance(&self.state, &positions, slots, start), more);
        self.write_state(next).await
    }

    /// Rows BigQuery refused where the stream's end is not known: they become
    /// refused records (dead-lettered now, excluded once the end is known).
    async fn refuse(&mut self, rejected: Vec<(usize, String)>) -> Result<(), GaveBack> {
        let mut which = Vec::new();
        let mut letters = Vec::new();
        for (i, message) in rejected {
            let Some(item) = self.items.get_mut(i) else { continue };
            let Some(record) = item.record else { continue };
            let letter = crate::dlq::DeadLetter::new(
                record,
                self.batch.table,
                crate::dlq::Reason::RejectedByBigquery,
                message,
            );
            item.kind = Kind::SchemaBad;
            item.row = Vec::new();
            item.letter = Some(letter.clone());
            which.push(i);
            letters.push(letter);
        }
        self.send_letters(which, letters).await
    }

    /// The stream's end is not known: finalize it for its row count, keep
    /// that in the state, and let the next round rotate. If BigQuery cannot
    /// answer, spill what is not proven landed with its stream and offsets.
    async fn resolve(&mut self, why: String) -> Result<Flow, GaveBack> {
        let stream = self.state.write_stream.clone();
        self.pass(Boundary::BeforeFinalize)?;
        let finalized = tokio::time::timeout_at(
            self.work_deadline,
            self.deps.client.finalize_write_stream(&stream),
        )
        .await;
        self.deps.drop_appender(&stream).await;
        match finalized {
            Ok(Ok(rows)) => {
                self.pass(Boundary::AfterFinalize)?;
                self.stats.finalizes += 1;
                tracing::info!(shard_id = self.batch.shard_id, write_stream = %stream, rows, why = %why, "stream finalized to resolve its end");
                let next = ShardState { stream_end: Some(rows), ..self.state.clone() };
                self.write_state(next).await?;
                Ok(Flow::Continue)
            }
            Ok(Err(e)) => {
                let slots = self.slots();
                let error = format!("{why}; finalize failed: {e}");
                self.spill(&slots, 0, Some(stream), SpillReason::InDoubt, error).await?;
                Ok(Flow::Done)
            }
            Err(_elapsed) => {
                let slots = self.slots();
                let error = format!("{why}; no time left to finalize");
                self.spill(&slots, 0, Some(stream), SpillReason::InDoubt, error).await?;
                Ok(Flow::Done)
            }
        }
    }

    /// The state's stream is finalized with `end` rows: everything mapped
    /// below it is in the table; the rest continues in a new stream.
    async fn rotate(&mut self, slots: &[Slot], end: i64) -> Result<Flow, GaveBack> {
        let point = plan::rotation_point(slots, end);
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
        let next = plan::rotate(&self.state, &positions, slots, end, name, more);
        self.write_state(next).await?;
        self.stats.rotations += 1;
        self.known_end = Some(0);
        Ok(Flow::Continue)
    }

    /// Marks items `..upto` landed according to their slots (rows in the
    /// table, exclusions in the dead-letter queue).
    fn land_prefix(&mut self, slots: &[Slot], upto: usize) {
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
    async fn spill(
        &mut self,
        slots: &[Slot],
        from: usize,
        write_stream: Option<String>,
        reason: SpillReason,
        error: String,
    ) -> Result<(), GaveBack> {
        let mut which = Vec::new();
        let mut records = Vec::new();
        for (i, slot) in slots.iter().enumerate().skip(from) {
            let pending = self.landing.get(i).is_some_and(Option::is_none);
            match slot {
                Slot::Row { offset, sendable: true } if pending => {
                    if let Some(record) = self.items.get(i).and_then(|it| it.record) {
                        let offset = write_stream.as_ref().map(|_| *offset);
                        which.push(i);
                        records.push(SpilledRecord::from_source(record, offset));
                    }
                }
                Slot::Row { sendable: false, .. } | Slot::Excluded if pending => {
                    if let Some(l) = self.landing.get_mut(i) {
                        *l = Some(Landing::DeadLetter);
                    }
                }
                _ => {}
            }
        }
        let Some(first) = records.first() else { return Ok(()) };
        let mut spilled = SpilledBatch::new(self.batch.table.clone(), reason, error, &[]);
        spilled.stream_arn = self.batch.stream_arn.to_string();
        spilled.shard_id = self.batch.shard_id.to_string();
        spilled.write_stream = first.offset.and(write_stream);
        spilled.records = records;
        self.pass(Boundary::BeforeSpill)?;
        match self.deps.spill.spill(&spilled).await {
            Ok(key) => {
                let path = key.path();
                tracing::warn!(shard_id = self.batch.shard_id, key = %path, records = which.len(), "spilled");
                self.stats.spilled += which.len();
                if let Some(last) = spilled.last_position() {
                    self.spilled.push((path, last.clone()));
                }
                for i in which {
                    if let Some(l) = self.landing.get_mut(i) {
                        *l = Some(Landing::Spill);
                    }
                }
            }
            Err(e) => {
                tracing::error!(shard_id = self.batch.shard_id, error = %e, "spillover failed too");
            }
        }
        self.pass(Boundary::AfterSpill)
    }

    /// One CAS write of what landed.
    async fn commit(&mut self) -> Result<(), GaveBack> {
        let slots = self.slots();
        let landed = self.landing.iter().take(self.limit).take_while(|l| l.is_some()).count();
        let positions = self.positions();
        let mut next = plan::advance(&self.state, &positions, &slots, landed);
        if let Some(end) = self.unwritten_end
            && next.next_offset > end
        {
            // Rows past the end were spilled, not written: the mapping
            // restarts at the end.
            next.next_offset = end;
        }
        for (path, last) in &self.spilled {
            if next.last_position.as_ref().is_some_and(|l| last <= l) && !next.spills.contains(path)
            {
                next.spills.push(path.clone());
            }
        }
        if next == self.state {
            return Ok(());
        }
        self.write_state(next).await
    }

    async fn write_state(&mut self, next: ShardState) -> Result<(), GaveBack> {
        self.pass(Boundary::BeforeStateWrite)?;
        let bytes = next.to_json();
        let written = match &self.version {
            Some(v) => self.deps.state.replace(&self.key, &bytes, v).await,
            None => self.deps.state.create(&self.key, &bytes).await,
        };
        let version = written.map_err(store_error)?;
        self.stats.state_writes += 1;
        self.version = Some(version);
        self.durable = next.last_position.clone();
        self.state = next;
        self.pass(Boundary::AfterStateWrite)
    }

    /// Per record of the batch: landed only up to the durable state.
    fn finish(self, gave_back: Option<GaveBack>) -> ShardOutcome {
        let n = self.batch.records.len();
        let mut records = vec![RecordOutcome::NotLanded; n];
        let mut by_item = vec![RecordOutcome::NotLanded; self.items.len()];
        for (i, item) in self.items.iter().enumerate() {
            let covered = self.durable.as_ref().is_some_and(|d| item.position <= *d);
            let landing = self.landing.get(i).copied().flatten();
            let outcome = match (covered, landing) {
                (true, Some(l)) => RecordOutcome::Landed(l),
                (true, None) => RecordOutcome::Landed(Landing::Earlier),
                (false, _) => RecordOutcome::NotLanded,
            };
            if let Some(slot) = by_item.get_mut(i) {
                *slot = outcome;
            }
            if let Some(slot) = records.get_mut(item.index) {
                *slot = outcome;
            }
        }
        for (index, item) in &self.repeats {
            if let (Some(slot), Some(o)) = (records.get_mut(*index), by_item.get(*item)) {
                *slot = *o;
            }
        }
        ShardOutcome { records, gave_back, stats: self.stats }
    }
}

fn crashed(c: Crash) -> GaveBack {
    GaveBack::Crashed(c.to_string())
}

fn store_error(e: StoreError) -> GaveBack {
    match e {
        StoreError::Conflict { .. } => GaveBack::Conflict,
        other => GaveBack::StateStore(other.to_string()),
    }
}
