//! The claim on a stream's tail (DESIGN.md, invariants 7 and 8): before its
//! first append, an invocation persists which record it maps at
//! `next_offset`. A row found there later is read as "this record landed"
//! only when the batch starts with the same record; otherwise the rows are
//! another batch's — one the event source mapping discarded after an earlier
//! attempt appended it — and the shard moves to a new stream.
//!
//! A claim left by an earlier attempt of the *same* batch means that attempt
//! died, maybe with requests still in flight: the stream is fenced
//! (finalized) before anything else, so no older request can land where this
//! invocation changes the mapping. A clean state (every earlier writer
//! committed below `next_offset`) costs one state write and no RPC.

use super::{Flow, Run};
use crate::delivery::crash::Boundary;
use crate::delivery::outcome::GaveBack;
use crate::delivery::plan::{self, Slot};
use crate::delivery::state::{Claim, ShardState};
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
                let next = ShardState { claim: Claim::From(first), ..self.state.clone() };
                self.write_state(next).await?;
                self.stats.claims += 1;
                self.claimed = true;
                // Nothing at or after next_offset, and nobody else can write there.
                self.known_end = Some(self.state.next_offset);
                self.sent_end = self.state.next_offset;
                Ok(None)
            }
            Claim::From(q) if q != first => self.leave_discarded(slots, &q).await.map(Some),
            // The same mapping, claimed by an attempt that never committed
            // (or by a build before claims): fence the stream; its row count
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
    /// mapping of the claimed record; a batch that starts elsewhere has none
    /// of its records there.
    pub(super) async fn leave_if_discarded(
        &mut self,
        slots: &[Slot],
    ) -> Result<Option<Flow>, GaveBack> {
        if self.claimed {
            return Ok(None);
        }
        let first = self.first_at(slots, self.state.next_offset);
        match (self.state.claim.clone(), first) {
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

    /// The rows at `next_offset..` are a discarded batch's (it started at
    /// `claimed`): none of this batch's records are among them. Count them,
    /// then continue in a new stream from the first record of this batch.
    async fn leave_discarded(
        &mut self,
        slots: &[Slot],
        claimed: &Position,
    ) -> Result<Flow, GaveBack> {
        let stream = self.state.write_stream.clone();
        let from = self.state.next_offset;
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
            other => {
                let error = match other {
                    Ok(Err(e)) => e.to_string(),
                    _ => "no time left".to_string(),
                };
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
        self.rotate(slots, from).await
    }

    /// The position of the item mapped at `offset` in `slots`.
    fn first_at(&self, slots: &[Slot], offset: i64) -> Option<Position> {
        slots
            .iter()
            .position(|s| s.offset() == Some(offset))
            .and_then(|i| self.items.get(i))
            .map(|item| item.position.clone())
    }

    /// The claim of a state this invocation writes while it holds the
    /// claim: the first record `next` maps at its `next_offset` (or clean
    /// when it maps none) — the mapping may have changed (exclusions) or
    /// moved on (a landed prefix) since the claim was written.
    pub(super) fn claim_for(&self, next: &ShardState) -> Claim {
        // Every item, not only those handled now: rows may have been sent
        // for items a refused dead letter later put out of reach.
        let items: Vec<_> = self.items.iter().map(|i| (&i.position, i.kind)).collect();
        let slots = plan::map(next, &items);
        self.first_at(&slots, next.next_offset).map_or(Claim::Clean, Claim::From)
    }

    /// The claim of a state written after this invocation found its batch
    /// under an earlier attempt's claim and could not fence the stream (a
    /// spill in doubt moved `next_offset` on): the earlier attempt's rows
    /// beyond it continue the same mapping, from this batch's record there
    /// or, past this batch, from the record after `last_position`.
    pub(super) fn inherited_claim(&self, next: &ShardState) -> Claim {
        match self.claim_for(next) {
            Claim::Clean => Claim::Unknown,
            claim => claim,
        }
    }

    /// The claim a commit leaves: clean when every row this invocation sent
    /// is below the new `next_offset`; otherwise its own first record there
    /// (the next attempt fences the stream before it relies on those rows).
    pub(super) fn claim_after(&self, next: &ShardState) -> Claim {
        if self.sent_end <= next.next_offset {
            return Claim::Clean;
        }
        match self.claim_for(next) {
            Claim::Clean => Claim::Unknown,
            claim => claim,
        }
    }
}
