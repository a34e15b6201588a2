//! A write stream the service no longer knows (DESIGN.md, invariant 9):
//! BigQuery garbage-collects a COMMITTED stream after about 3 days without
//! appends, and a re-created table loses its streams. Every stream RPC then
//! answers NOT_FOUND. That is a rotation, not a trap:
//! - nothing in doubt (this invocation holds the claim and every request it
//!   sent to the stream was answered, or refused as NOT_FOUND) → a new
//!   stream at once, persisted before its first append; nothing spilled;
//! - records whose appends are in doubt (unanswered, or an earlier attempt
//!   that may have written them) → spilled as [`SpillReason::StreamLost`]
//!   without offsets: the backfill replays them, at least once for those
//!   records only (counted in `DeliveryStats::lost_in_doubt` and logged);
//!   the rest continues in a new stream;
//! - the table itself gone → creating the new stream fails too: everything
//!   is spilled with one clear log line, and the next invocation tries again
//!   (no loop within an invocation).

use super::{Flow, Run};
use crate::bigquery::AppendOutcome;
use crate::delivery::outcome::{GaveBack, Landing};
use crate::delivery::plan::{self, Slot};
use crate::spill::SpillReason;

/// NOT_FOUND: the stream (or its table) no longer exists.
pub(super) fn is_not_found(code: Option<tonic::Code>) -> bool {
    code == Some(tonic::Code::NotFound)
}

/// Whether a round's answers from request `landed` on say the stream is gone
/// and none of those requests can have been written: the first was refused
/// with NOT_FOUND, and the rest were not sent or lost with that same refusal
/// (a stream that does not exist takes no rows).
pub(super) fn round_lost(outcomes: &[AppendOutcome], landed: usize) -> bool {
    let mut rest = outcomes.iter().skip(landed);
    let first_lost = matches!(rest.next(), Some(AppendOutcome::Failed(e))
        if is_not_found(e.status().map(|s| s.code)));
    first_lost
        && rest.all(|o| match o {
            AppendOutcome::NotSent => true,
            AppendOutcome::Failed(e) | AppendOutcome::InDoubt(e) => {
                is_not_found(e.status().map(|s| s.code))
            }
            _ => false,
        })
}

impl Run<'_, '_> {
    /// The state's stream is gone. Records mapped below `in_doubt_end` and
    /// not landed may or may not be in the table: spill them for an
    /// at-least-once replay; the rest continue in a new stream now.
    pub(super) async fn stream_lost(
        &mut self,
        in_doubt_end: i64,
        error: String,
    ) -> Result<Flow, GaveBack> {
        let stream = self.state.write_stream.clone();
        self.deps.drop_appender(&stream).await;
        self.lost = Some(stream.clone());
        let slots = self.slots();
        let point = plan::rotation_point(&slots, in_doubt_end);
        let pending = |run: &Self| -> usize {
            slots
                .iter()
                .enumerate()
                .take(point)
                .filter(|(i, s)| {
                    // A refused record not dead-lettered yet may be in the
                    // table too (written by an attempt that knew more).
                    let in_doubt = match s {
                        Slot::Row { sendable, .. } => {
                            *sendable || run.lettered.get(*i).is_some_and(|l| !l)
                        }
                        _ => false,
                    };
                    in_doubt && run.landing.get(*i).is_some_and(Option::is_none)
                })
                .count()
        };
        let in_doubt = pending(self);
        if in_doubt > 0 {
            tracing::warn!(
                shard_id = self.batch.shard_id,
                write_stream = %stream,
                records = in_doubt,
                error = %error,
                "write stream lost with appends in doubt: spilled for the backfill to replay at least once"
            );
            self.spill_range(&slots, 0..point, None, SpillReason::StreamLost, error).await?;
            if pending(self) > 0 {
                // The spillover refused them: they go back to Kinesis, and
                // the state keeps the stream and its claim, so the next
                // attempt finds them in doubt again instead of writing them
                // to a new stream as if they were not in the table.
                self.lost_unsettled = true;
                return Ok(Flow::Done);
            }
            self.stats.lost_in_doubt += in_doubt;
        }
        tracing::warn!(
            shard_id = self.batch.shard_id,
            write_stream = %stream,
            "write stream no longer exists (garbage-collected or table re-created): continuing in a new stream"
        );
        for (i, slot) in slots.iter().enumerate().take(point) {
            // What an earlier invocation delivered is landed whatever the
            // stream's fate (the commit covers a landed prefix only).
            if *slot == Slot::Earlier
                && let Some(l) = self.landing.get_mut(i)
            {
                l.get_or_insert(Landing::Earlier);
            }
        }
        if point >= slots.len() {
            return Ok(Flow::Done);
        }
        self.rotate_from(&slots, point).await
    }
}
