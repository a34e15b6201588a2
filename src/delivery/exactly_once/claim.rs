//! The claim on a stream's tail (DESIGN.md, invariants 7 and 8): before its
//! first append, an invocation persists every record it maps from
//! `next_offset` on, one fingerprint per offset. A row found there later is
//! read as "this record landed" only when the record's own fingerprint is
//! claimed at that offset. A batch that does not start where the claim does
//! follows an event source mapping that discarded a batch: the stream is
//! fenced, the discarded batch's rows that landed are counted and skipped
//! (the state moves to the first of this batch's records the claim holds),
//! and rows a longer attempt wrote past the discarded batch count as landed
//! for the records they are — never written twice, never mistaken.
//!
//! A claim left by an earlier attempt of the *same* batch means that attempt
//! died, maybe with requests still in flight: the stream is fenced
//! (finalized) before anything else, so no older request can land where this
//! invocation changes the mapping. A clean state (every earlier writer
//! committed below `next_offset`) costs one state write and no RPC.

use super::settle::Fenced;
use super::{Flow, Run};
use crate::delivery::outcome::GaveBack;
use crate::delivery::plan::{self, Slot};
use crate::delivery::state::{Claim, ClaimedRows, ShardState, fingerprint};
use crate::source::Position;

impl Run<'_, '_> {
    /// Makes sure this invocation holds the claim before it appends. `None`:
    /// go on appending; `Some(flow)`: the round is over (the stream was
    /// fenced or left, the next round rotates).
    pub(super) async fn ensure_claim(&mut self, slots: &[Slot]) -> Result<Option<Flow>, GaveBack> {
        if self.claimed {
            return Ok(None);
        }
        let Some(first) = self.first_at(slots, self.state.next_offset) else {
            return Ok(None);
        };
        match self.state.claim.clone() {
            Claim::Clean => {
                let claim = Claim::of_rows(self.own_rows(&self.state));
                let next = ShardState { claim, ..self.state.clone() };
                self.write_state(next).await?;
                self.stats.claims += 1;
                self.claimed = true;
                // Nothing at or after next_offset, and nobody else can write there.
                self.known_end = Some(self.state.next_offset);
                self.sent_end = self.state.next_offset;
                Ok(None)
            }
            Claim::From(q) if q != first => self.leave_discarded(slots, &q).await.map(Some),
            // An earlier attempt's claim that this batch continues (or one
            // by a build before claims): fence the stream; its row count
            // then says which of these records are in.
            _ => {
                self.inherited = true;
                self.resolve("an earlier attempt of this batch may still be writing".into())
                    .await
                    .map(Some)
            }
        }
    }

    /// Before anything else, even a known stream end: the rows at
    /// `next_offset..` — and a finalized row count above it — are the
    /// claimed records; a batch that starts elsewhere is checked record by
    /// record against the claim.
    pub(super) async fn leave_if_discarded(
        &mut self,
        slots: &[Slot],
    ) -> Result<Option<Flow>, GaveBack> {
        if self.claimed {
            return Ok(None);
        }
        let first = self.first_at(slots, self.state.next_offset);
        match (self.state.claim.clone(), first) {
            (Claim::Rows(rows), Some(first)) => {
                let at = rows.find(&fingerprint(&first));
                if at == Some(0) {
                    // This batch continues the claimed rows.
                    self.inherited = true;
                    return Ok(None);
                }
                match self.state.stream_end {
                    // Fence first: what landed is only known once nothing more can.
                    None => self.fence_discarded(slots).await.map(Some),
                    Some(end) => self.skip_discarded(&rows, at, end).await.map(Some),
                }
            }
            (Claim::From(claimed), Some(first)) if first != claimed => {
                self.leave_discarded(slots, &claimed).await.map(Some)
            }
            // This batch continues the claimed mapping: states written
            // before this invocation holds the claim carry it forward.
            (Claim::From(_) | Claim::Unknown, Some(_)) => {
                self.inherited = true;
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// The stream is fenced at `end` and its claimed rows start with records
    /// of a batch the event source mapping discarded; this batch's first
    /// record is claimed `at` rows in, if at all. The discarded rows below
    /// `end` stay in the table (counted and logged); the state moves past
    /// them, so the rows after them — written by a longer attempt of the
    /// discarded batch — are read as the records they are.
    async fn skip_discarded(
        &mut self,
        rows: &ClaimedRows,
        at: Option<usize>,
        end: i64,
    ) -> Result<Flow, GaveBack> {
        let from = self.state.next_offset;
        let below_end = usize::try_from(end - from).unwrap_or(0);
        let skip = at.filter(|&k| k < below_end).unwrap_or(below_end);
        self.stats.discarded_landed += skip;
        if skip > 0 {
            tracing::warn!(
                shard_id = self.batch.shard_id,
                write_stream = %self.state.write_stream,
                offsets = %format!("{from}..{}", from + skip as i64),
                rows = skip,
                "records of a batch the event source mapping discarded are in the table"
            );
        }
        let claim = Claim::of_rows(rows.slice(skip, below_end - skip));
        let next = ShardState { next_offset: from + skip as i64, claim, ..self.state.clone() };
        self.write_state(next).await?;
        Ok(Flow::Continue)
    }

    /// Finalizes a stream whose claimed rows this batch does not start:
    /// once its end is kept in the state, the next round skips the discarded
    /// rows. Unlike [`Run::resolve`] nothing is spilled with offsets when
    /// BigQuery cannot answer (this batch's mapping is not the claim's): the
    /// batch goes back to Kinesis.
    async fn fence_discarded(&mut self, slots: &[Slot]) -> Result<Flow, GaveBack> {
        let stream = self.state.write_stream.clone();
        match self.fence().await? {
            Fenced::End(rows) => {
                let next = ShardState { stream_end: Some(rows), ..self.state.clone() };
                self.write_state(next).await?;
                Ok(Flow::Continue)
            }
            Fenced::Lost(e) => {
                let in_doubt_end = self.claimed_prefix_end(slots);
                self.stream_lost(in_doubt_end, format!("fencing a discarded batch's stream: {e}"))
                    .await
            }
            Fenced::Unknown(error) => {
                tracing::warn!(
                    shard_id = self.batch.shard_id,
                    write_stream = %stream,
                    error = %error,
                    "the event source mapping discarded a batch and its stream cannot be fenced now; the batch goes back"
                );
                Ok(Flow::Done)
            }
        }
    }

    /// Past the rows of this batch an earlier attempt may have written when
    /// this invocation does not hold the claim: under a claim of rows, the
    /// leading records of this batch the claim names (nothing else can be
    /// there); otherwise anything may be.
    pub(super) fn claimed_prefix_end(&self, slots: &[Slot]) -> i64 {
        let Claim::Rows(rows) = &self.state.claim else { return i64::MAX };
        let mut end = self.state.next_offset;
        for (slot, item) in slots.iter().zip(&self.items) {
            if let Some(o) = slot.offset() {
                if rows.find(&fingerprint(&item.position)).is_none() {
                    break;
                }
                end = o + 1;
            }
        }
        end
    }

    /// A format-2 claim (its first record only) that this batch does not
    /// start with: the rows at `next_offset..` are a discarded batch's.
    /// Count them, then continue in a new stream from the first record of
    /// this batch.
    async fn leave_discarded(
        &mut self,
        slots: &[Slot],
        claimed: &Position,
    ) -> Result<Flow, GaveBack> {
        let stream = self.state.write_stream.clone();
        let from = self.state.next_offset;
        match self.fence().await? {
            Fenced::End(end) => {
                let landed = usize::try_from(end - from).unwrap_or(0);
                self.stats.discarded_landed += landed;
                if landed > 0 {
                    tracing::warn!(
                        shard_id = self.batch.shard_id,
                        write_stream = %stream,
                        first_position = %claimed,
                        offsets = %format!("{from}..{end}"),
                        rows = landed,
                        "records of a batch the event source mapping discarded are in the table"
                    );
                }
            }
            Fenced::Lost(error) | Fenced::Unknown(error) => {
                tracing::warn!(
                    shard_id = self.batch.shard_id,
                    write_stream = %stream,
                    first_position = %claimed,
                    error = %error,
                    "the event source mapping discarded a batch; how many of its records landed is not known"
                );
            }
        }
        // Not one of this batch's records is at or after `from` in the old
        // stream: the rotation point is this batch's first row.
        self.rotate_from(slots, plan::rotation_point(slots, from)).await
    }

    /// The position of the item mapped at `offset` in `slots`.
    fn first_at(&self, slots: &[Slot], offset: i64) -> Option<Position> {
        slots
            .iter()
            .position(|s| s.offset() == Some(offset))
            .and_then(|i| self.items.get(i))
            .map(|item| item.position.clone())
    }

    /// The records `state` maps from its `next_offset` on, over every item
    /// (not only those handled now: rows may have been sent for items a
    /// refused dead letter later put out of reach), then those sent beyond
    /// them under an earlier mapping: every row this invocation may have put
    /// at or after `next_offset`.
    pub(super) fn own_rows(&self, state: &ShardState) -> ClaimedRows {
        let items: Vec<_> = self.items.iter().map(|i| (&i.position, i.kind)).collect();
        let slots = plan::map(state, &items);
        let mut rows: Vec<_> = slots
            .iter()
            .zip(&self.items)
            .filter(|(s, _)| s.offset().is_some_and(|o| o >= state.next_offset))
            .map(|(_, item)| fingerprint(&item.position))
            .collect();
        // Offset by offset past the mapping, while a row was sent there (a
        // stream has no holes: nothing can be past the first offset with
        // neither a mapped nor a sent row).
        let mut offset = state.next_offset + rows.len() as i64;
        if offset < self.sent_end {
            let sent: std::collections::HashMap<i64, usize> =
                self.sent_rows.iter().copied().collect();
            while offset < self.sent_end {
                let Some(item) = sent.get(&offset).and_then(|&i| self.items.get(i)) else {
                    break;
                };
                rows.push(fingerprint(&item.position));
                offset += 1;
            }
        }
        ClaimedRows::new(rows)
    }

    /// The claim a state keeps when this invocation writes it without
    /// naming one: its own rows while it holds the claim; otherwise the
    /// earlier attempt's rows still at or after the new `next_offset` (and
    /// below a finalized end).
    pub(super) fn carried_claim(&self, next: &ShardState) -> Claim {
        match &self.state.claim {
            Claim::Rows(_) if self.claimed => Claim::of_rows(self.own_rows(next)),
            Claim::Rows(rows) => {
                let skip = usize::try_from(next.next_offset - self.state.next_offset).unwrap_or(0);
                let keep = next
                    .stream_end
                    .map_or(usize::MAX, |e| usize::try_from(e - next.next_offset).unwrap_or(0));
                Claim::of_rows(rows.slice(skip, keep))
            }
            // Format 2: the first record the mapping puts there.
            Claim::From(_) | Claim::Unknown if self.inherited => {
                self.first_at_mapped(next).map_or(Claim::Unknown, Claim::From)
            }
            other => other.clone(),
        }
    }

    fn first_at_mapped(&self, next: &ShardState) -> Option<Position> {
        let items: Vec<_> = self.items.iter().map(|i| (&i.position, i.kind)).collect();
        let slots = plan::map(next, &items);
        self.first_at(&slots, next.next_offset)
    }

    /// The claim a commit leaves: clean when every row this invocation sent
    /// is below the new `next_offset`; otherwise its own rows there (the
    /// next attempt fences the stream before it relies on them).
    pub(super) fn claim_after(&self, next: &ShardState) -> Claim {
        if self.sent_end <= next.next_offset {
            return Claim::Clean;
        }
        Claim::of_rows(self.own_rows(next))
    }

    /// Where the mapping leaves a stream finalized at `end`: the first item
    /// whose row is at or past `end`, or — under a claim of rows — whose own
    /// fingerprint is not the one claimed at its offset (another record's
    /// row is there, or none).
    pub(super) fn landed_point(&self, slots: &[Slot], end: i64) -> usize {
        let Claim::Rows(rows) = &self.state.claim else {
            let end = if self.state.claim == Claim::Clean {
                end.min(self.state.next_offset)
            } else {
                end
            };
            return plan::rotation_point(slots, end);
        };
        let from = self.state.next_offset;
        let point = slots.iter().zip(&self.items).position(|(s, item)| {
            s.offset().is_some_and(|o| {
                o >= end
                    || usize::try_from(o - from)
                        .ok()
                        .and_then(|i| rows.get(i))
                        .is_none_or(|fp| *fp != fingerprint(&item.position))
            })
        });
        let point = point.unwrap_or(slots.len());
        if let Some(o) = slots.get(point).and_then(Slot::offset)
            && o < end
        {
            tracing::warn!(
                shard_id = self.batch.shard_id,
                offset = o,
                "a row below the stream's end is not the record mapped there; the rest goes to a new stream"
            );
        }
        point
    }
}
