//! The two places a record settles outside the table, written once for
//! every driver (exactly-once, at-least-once and CDC, the outage path): the
//! dead-letter queue and the spillover, each entered through its crash
//! boundary. Each driver decides what a settled record means for its own
//! bookkeeping (a landing, a listed object, a limit on what may land).

use super::crash::{self, Boundary, Crash, CrashPoints};
use super::{ShardBatch, WriteMode};
use crate::dlq::{DeadLetter, DeadLetterSink, DlqError};
use crate::source::Position;
use crate::spill::{SpillReason, SpillSink, SpilledBatch, SpilledRecord};

/// Sends `letters` to the queue; `accepted(k)` for each letter it took,
/// before the `AfterDeadLetter` boundary. Returns, per letter, whether the
/// queue took it. A letter refused stays unsettled (logged); the caller
/// decides what that costs.
///
/// # Errors
/// [`Crash`] from the hook.
pub(crate) async fn send_letters(
    dlq: &dyn DeadLetterSink,
    hook: Option<&CrashPoints>,
    letters: &[DeadLetter],
    mut accepted: impl FnMut(usize),
) -> Result<Vec<bool>, Crash> {
    if letters.is_empty() {
        return Ok(Vec::new());
    }
    crash::pass(hook, Boundary::BeforeDeadLetter)?;
    let failed: Vec<usize> = match dlq.send(letters).await {
        Ok(()) => Vec::new(),
        Err(DlqError::Partial { failed, cause }) => {
            tracing::warn!(error = %cause, failed = failed.len(), "dead letters not accepted");
            failed
        }
        Err(e) => {
            tracing::warn!(error = %e, "dead-letter queue unusable");
            (0..letters.len()).collect()
        }
    };
    let took: Vec<bool> = (0..letters.len()).map(|k| !failed.contains(&k)).collect();
    took.iter().enumerate().filter(|(_, t)| **t).for_each(|(k, _)| accepted(k));
    crash::pass(hook, Boundary::AfterDeadLetter)?;
    Ok(took)
}

/// The least of `which` whose letter the queue did not take (`took` as
/// [`send_letters`] returned it), if any.
pub(crate) fn first_refused(which: &[usize], took: &[bool]) -> Option<usize> {
    which.iter().zip(took).filter(|(_, t)| !**t).map(|(&i, _)| i).min()
}

/// A spillover object written ([`write_spill`]).
pub(crate) struct Stored {
    /// Its key's path, as the shard state lists it.
    pub path: String,
    /// The position of its last record.
    pub last: Option<Position>,
}

/// What goes into one spillover object of a shard batch.
pub(crate) struct SpillOf {
    pub records: Vec<SpilledRecord>,
    pub reason: SpillReason,
    pub error: String,
    /// The stream the records' offsets are in, when their appends are in
    /// doubt (the backfill resolves them against it).
    pub write_stream: Option<String>,
}

/// Writes one spillover object of `what` from `batch`'s shard, after the
/// `BeforeSpill` boundary. `None`: the spillover refused it too (logged).
/// The caller marks its records, then passes `AfterSpill`.
///
/// # Errors
/// [`Crash`] from the hook.
pub(crate) async fn write_spill(
    spill: &dyn SpillSink,
    hook: Option<&CrashPoints>,
    batch: &ShardBatch<'_>,
    mode: WriteMode,
    what: SpillOf,
) -> Result<Option<Stored>, Crash> {
    let SpillOf { records, reason, error, write_stream } = what;
    let count = records.len();
    let mut spilled = SpilledBatch::new(batch.table.clone(), reason, error, &[]);
    spilled.stream_arn = batch.stream_arn.to_string();
    spilled.shard_id = batch.shard_id.to_string();
    spilled.write_stream = write_stream.filter(|_| records.iter().any(|r| r.offset.is_some()));
    spilled.write_mode = Some(mode);
    spilled.records = records;
    crash::pass(hook, Boundary::BeforeSpill)?;
    match spill.spill(&spilled).await {
        Ok(key) => {
            let path = key.path();
            tracing::warn!(shard_id = batch.shard_id, key = %path, records = count, reason = ?reason, "spilled");
            Ok(Some(Stored { path, last: spilled.last_position().cloned() }))
        }
        Err(e) => {
            tracing::error!(shard_id = batch.shard_id, error = %e, "spillover failed too");
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_refused;

    #[test]
    fn the_first_refused_is_the_least_item_whatever_the_letter_order() {
        assert_eq!(first_refused(&[7, 3, 9], &[true, false, false]), Some(3));
        assert_eq!(first_refused(&[7, 3, 9], &[false, true, true]), Some(7));
        assert_eq!(first_refused(&[7, 3], &[true, true]), None);
        assert_eq!(first_refused(&[], &[]), None);
    }
}
