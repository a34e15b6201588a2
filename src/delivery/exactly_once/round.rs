//! One round of the exactly-once driver: which rows to append now, the
//! append itself, and what its verdict changes — the known end of the
//! stream, exclusions persisted where that end is known, or a resolution.

use super::{Flow, Run, crashed};
use bytes::Bytes;

use crate::bigquery::AppendOutcome;
use crate::delivery::outcome::GaveBack;
use crate::delivery::plan::Kind;
use crate::delivery::plan::{self, Slot};
use crate::delivery::prepare;
use crate::delivery::send::{self, Cut, Stopped, Verdict};
use crate::delivery::state::{Exclusion, ExclusionReason};
use crate::dlq::{Cause, DeadLetter};

/// What a round appended, for [`Run::settle_round`].
pub(super) struct Round {
    /// Indexes of the items whose rows were sent, at consecutive offsets.
    pub segment: Vec<usize>,
    /// Everything before it that is not in `segment` is excluded or earlier
    /// (or, for a probe, the refused record `first_bad`).
    pub upto: usize,
    /// The refused record the round stopped at, if any.
    pub first_bad: Option<usize>,
    pub probe: bool,
    /// Items from `upto` on are mapped but were not sent (a streamed round
    /// stops where the rest needs the protocol's later rounds).
    pub more: bool,
}

impl Run<'_, '_> {
    pub(super) async fn round(&mut self) -> Result<Flow, GaveBack> {
        // Records excluded since the last round, or whose letters waited
        // for this invocation to hold the stream's tail.
        self.dead_letter_excluded().await?;
        let slots = self.slots();
        if let Some(flow) = self.leave_if_discarded(&slots).await? {
            return Ok(flow);
        }
        if let Some(end) = self.state.stream_end {
            return self.rotate(&slots, end).await;
        }
        if let Some(flow) = self.ensure_claim(&slots).await? {
            return Ok(flow);
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
    pub(super) fn probe_segment(&self, slots: &[Slot], k: usize) -> Option<(Vec<usize>, usize)> {
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
    pub(super) async fn append_round(
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
        // Sent or not, a request counts from here: it may land unanswered.
        self.sent_end = self.sent_end.max(first_offset + segment.len() as i64);
        self.sent_rows.extend(
            segment.iter().filter_map(|&i| slots.get(i).and_then(Slot::offset).map(|o| (o, i))),
        );
        let rows: Vec<Bytes> =
            segment.iter().filter_map(|&i| self.items.get(i)).map(|i| i.row.clone()).collect();
        let stream = self.state.write_stream.clone();
        let (encoder, table) = (&self.encoder, self.batch.table);
        let sent = send::round(
            self.deps,
            &stream,
            encoder,
            table,
            &rows,
            Some(first_offset),
            self.work_deadline,
        )
        .await;
        let (cuts, outcomes) = match sent {
            Ok(round) => round,
            Err(Stopped::Crashed(c)) => return Err(crashed(c)),
            Err(Stopped::Unbuilt(e)) => {
                return self.resolve(format!("building a request failed: {e}")).await;
            }
        };
        self.stats.requests += cuts.len();
        let round = Round { segment, upto, first_bad, probe, more: false };
        self.settle_round(&slots, round, &cuts, &outcomes).await
    }

    /// Acts on the answers to a round's requests (`cuts` over
    /// `round.segment`, one outcome each): lands what they prove, moves the
    /// state, and says whether another round follows.
    pub(super) async fn settle_round(
        &mut self,
        slots: &[Slot],
        round: Round,
        cuts: &[Cut],
        outcomes: &[AppendOutcome],
    ) -> Result<Flow, GaveBack> {
        let Round { segment, upto, first_bad, probe, more } = round;
        let slots = slots.to_vec();
        let Some(first_offset) = segment.first().and_then(|&i| slots.get(i)).and_then(Slot::offset)
        else {
            return Ok(Flow::Done);
        };
        if probe && outcomes.first().is_some_and(send::is_out_of_range) {
            // No row at or after the refused record: it may leave the mapping.
            self.known_end = Some(first_offset - 1);
            return Ok(Flow::Continue);
        }
        let verdict = send::judge(cuts, outcomes, self.known_end);
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
                let Some(k) = next_bad else {
                    if more && upto < slots.len() {
                        // A streamed round stopped before the batch's end
                        // (`stream.rs`): the state moves past what is in,
                        // and the next round maps the rest.
                        let positions = self.positions();
                        let next = plan::advance(&self.state, &positions, &slots, upto);
                        self.write_state(next).await?;
                        return Ok(Flow::Continue);
                    }
                    return Ok(Flow::Done);
                };
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
                if self.claimed && super::lost::round_lost(outcomes, landed) {
                    // Refused as NOT_FOUND from request `landed` on: none of
                    // those rows exist, so nothing is in doubt past them.
                    let end = cuts.get(landed).map_or(self.sent_end, |c| c.offset);
                    return self.stream_lost(end, error).await;
                }
                self.resolve(error).await
            }
        }
    }

    /// The intent entries for every refused record from `from` on.
    pub(super) fn new_exclusions(&self, slots: &[Slot], from: usize) -> Vec<Exclusion> {
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
    pub(super) async fn reject(
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
                letters.push(DeadLetter::of(record, self.batch.table, Cause::Rejected(&message)));
            }
        }
        self.send_letters(which, letters).await?;
        let positions = self.positions();
        let next = plan::exclude(&plan::advance(&self.state, &positions, slots, start), more);
        self.write_state(next).await
    }

    /// Rows BigQuery refused where the stream's end is not known: they become
    /// refused records (dead-lettered now, excluded once the end is known).
    pub(super) async fn refuse(&mut self, rejected: Vec<(usize, String)>) -> Result<(), GaveBack> {
        let mut which = Vec::new();
        let mut letters = Vec::new();
        for (i, message) in rejected {
            let Some(item) = self.items.get_mut(i) else { continue };
            let Some(record) = item.record else { continue };
            let letter = DeadLetter::of(record, self.batch.table, Cause::Rejected(&message));
            item.kind = Kind::SchemaBad;
            item.row = Bytes::new();
            item.letter = Some(letter.clone());
            which.push(i);
            letters.push(letter);
        }
        self.send_letters(which, letters).await
    }
}
