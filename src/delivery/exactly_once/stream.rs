//! The streamed first round of exactly-once (issue 13): records are encoded
//! one at a time while the requests already cut are on the wire, as on the
//! stateless paths (`delivery/streaming.rs`), with the invariants intact.
//!
//! - **The claim comes first, from positions alone.** Before anything is
//!   encoded, the claim (DESIGN.md, invariant 7) lists every record the
//!   mapping puts at or after `next_offset`, counting each record the source
//!   delivered whole as taking an offset: only a record whose bytes are not
//!   a JSON object ([`Kind::PureBad`]) does not, and that is learned only by
//!   encoding it. One state write, as before: the claim is persisted before
//!   the first append and is never extended per request.
//! - **The streamed stretch is where that claim is exact:** the leading
//!   records that are earlier or encode into rows. The round stops sending
//!   at the first record that is anything else (not JSON, excluded, refused
//!   by the schema); the records from there on are encoded, then go through
//!   the protocol's ordinary rounds after one state write that moves past
//!   what landed (which also writes the claim the real mapping gives). So
//!   every row sent sits at the offset its record is claimed at.
//! - **Requests may be cut by time.** The round runs only from a clean
//!   claim: nothing is at or after `next_offset` and no earlier writer can
//!   still put anything there, so the stream's end is known exactly and
//!   every answer is about this invocation's own requests. A retry never
//!   reads an answer against an earlier attempt's cut: it finds this claim,
//!   fences (finalizes) the stream and reads its row count against the
//!   claim's fingerprints. So `BATCH_WINDOW_MS` cuts exactly-once requests
//!   too; `ALREADY_EXISTS` still proves only the first row of a request
//!   (`send::judge`), and an unproven tail is resolved by a finalize.
//!
//! Any other state (a first invocation, a claim left by an earlier attempt,
//! a finalized stream) takes the encode-first path.

use super::round::Round;
use super::{Flow, Run};
use crate::bigquery::AppendOutcome;
use crate::delivery::crash::Boundary;
use crate::delivery::outcome::GaveBack;
use crate::delivery::plan::{Kind, Slot};
use crate::delivery::prepare::{Input, Item};
use crate::delivery::send::Cut;
use crate::delivery::state::{Claim, ClaimedRows, ShardState, fingerprint};
use crate::delivery::streaming::{self, Produced, Role};

impl<'a> Run<'a, '_> {
    /// The claim the streamed round starts from, when it may run: the
    /// state is clean and not finalized, and some record takes an offset.
    pub(super) fn streamable(&self, inputs: &[(usize, Input<'a>)]) -> Option<ClaimedRows> {
        if self.deps.encode_first
            || self.state.claim != Claim::Clean
            || self.state.stream_end.is_some()
        {
            return None;
        }
        let rows: Vec<_> = inputs
            .iter()
            .map(|(_, input)| input)
            .filter(|input| matches!(input, Input::Record(_)))
            .map(Input::position)
            .filter(|p| self.state.last_position.as_ref().is_none_or(|l| *p > l))
            .filter(|p| self.state.excluded(p).is_none())
            .map(fingerprint)
            .collect();
        (!rows.is_empty()).then(|| ClaimedRows::new(rows))
    }

    /// Persists `claim`, then encodes every input while the leading rows go
    /// out as they are cut. `Some(flow)`: the round is judged; `None`:
    /// nothing was sent, the ordinary rounds take over.
    pub(super) async fn stream_first(
        &mut self,
        inputs: Vec<(usize, Input<'a>)>,
        claim: ClaimedRows,
        awaiting: &[usize],
    ) -> Result<Option<Flow>, GaveBack> {
        let next = ShardState { claim: Claim::Rows(claim), ..self.state.clone() };
        if let Err(e) = self.write_state(next).await {
            // Nothing was sent: every record is still to be delivered.
            let items = crate::delivery::prepare::prepare_ordered(
                inputs,
                &self.encoder,
                &self.deps.limits,
                self.batch.table,
            );
            self.install(items, awaiting);
            return Err(e);
        }
        self.stats.claims += 1;
        self.claimed = true;
        // Nothing at or after next_offset, and nobody else can write there.
        self.known_end = Some(self.state.next_offset);
        self.sent_end = self.state.next_offset;

        let encoder = std::sync::Arc::clone(&self.encoder);
        let stream = self.state.write_stream.clone();
        let state = &self.state;
        // The slot `plan::map` gives each record, for the stretch: earlier,
        // a row to send, or the stop.
        let role = |item: &Item<'a>| {
            if state.last_position.as_ref().is_some_and(|l| item.position <= *l) {
                Role::Skip
            } else if item.kind == Kind::Good && state.excluded(&item.position).is_none() {
                Role::Row
            } else {
                Role::Stop
            }
        };
        let first_offset = Some(state.next_offset);
        let (deps, table, deadline) = (self.deps, self.batch.table, self.work_deadline);
        let (produced, mut outcomes) = streaming::stream_round(
            deps,
            &stream,
            inputs,
            &encoder,
            table,
            first_offset,
            role,
            deadline,
        )
        .await;

        let Produced { items, mut segment, requests, stop, crashed: crash_at, error } = produced;
        if let Some(e) = error {
            tracing::warn!(error = %e, "exactly-once: a streamed request could not be built");
        }
        let offset = self.state.next_offset;
        let cuts: Vec<Cut> = requests
            .into_iter()
            .map(|rows| Cut { offset: offset + rows.start as i64, rows })
            .collect();
        self.install(items, awaiting);
        self.stats.requests += cuts.len();
        for cut in &cuts {
            // Sent or not, a request counts from here: it may land unanswered.
            self.sent_end = self.sent_end.max(cut.end());
            for (k, offset) in cut.rows.clone().zip(cut.offset..) {
                if let Some(&i) = segment.get(k) {
                    self.sent_rows.push((offset, i));
                }
            }
        }
        if let Some(c) = crash_at {
            return Err(GaveBack::Crashed(c));
        }
        let Some(last) = cuts.last() else {
            self.exact_claim().await?;
            return Ok(None);
        };
        self.pass(Boundary::AfterAppendRound)?;
        // Requests the appender never took were never sent.
        outcomes.resize(cuts.len(), AppendOutcome::NotSent);
        // Rows past the last request were never sent: the round ends after
        // the last row sent, or at the stop when every row before it went.
        let upto = if last.rows.end == segment.len() {
            stop.unwrap_or(self.items.len())
        } else {
            segment.truncate(last.rows.end);
            segment.last().map_or(0, |&i| i + 1)
        };
        // Records the state excludes (not JSON, corrupt KPL, an earlier
        // attempt's exclusions) past the stop get their letters first, as
        // at the start of every round.
        self.dead_letter_excluded().await?;
        let slots = self.slots();
        let first_bad = stop
            .filter(|&k| k == upto)
            .filter(|&k| matches!(slots.get(k), Some(Slot::Row { sendable: false, .. })));
        let more = upto < slots.len();
        let round = Round { segment, upto, first_bad, probe: false, more };
        let flow = self.settle_round(&slots, round, &cuts, &outcomes).await?;
        if let Flow::Continue = flow {
            self.exact_claim().await?;
        }
        Ok(Some(flow))
    }

    /// A record counted as taking an offset turned out not to (not JSON):
    /// the persisted claim is wrong from its offset on, which nothing was
    /// sent to. Before a later round may send there, the claim the real
    /// mapping gives is persisted. Most ways out of the streamed round write
    /// the state anyway, and every write keeps the claim true
    /// (`Run::write_state`); this write is for those that do not (nothing
    /// was sent, or rows refused where the end is not known).
    async fn exact_claim(&mut self) -> Result<(), GaveBack> {
        let exact = Claim::of_rows(self.own_rows(&self.state));
        if exact != self.state.claim {
            let next = ShardState { claim: exact, ..self.state.clone() };
            self.write_state(next).await?;
        }
        Ok(())
    }
}
