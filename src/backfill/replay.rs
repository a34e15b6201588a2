//! One spillover object, replayed exactly once through its own PENDING
//! stream (DESIGN.md, "Backfill"):
//!
//! 1. resolve in-doubt records (finalize the stream they were sent to; skip
//!    those below its row count — invariant 6);
//! 2. encode the rest; records that cannot be rows become dead letters;
//! 3. create a PENDING stream, append every row at explicit offsets, finalize
//!    it and check its row count;
//! 4. send the dead letters, then record the stream in the object's marker;
//! 5. `BatchCommitWriteStreams`: the rows become visible, all at once;
//! 6. remove the object from the shard state's list of spillover objects
//!    (exactly-once mode, see `gate.rs`), then delete (or archive) the object
//!    together with its marker.
//!
//! Rows become visible only at step 5, and only for the stream the marker
//! names, so a crash anywhere is safe: before the marker, a rerun starts over
//! on a new stream (the old one is never committed and BigQuery discards
//! it); after it, the rerun asks `GetWriteStream` whether that stream was
//! committed and either only removes the object or commits it. The one
//! thing a crash can repeat is step 4's dead letters (at least once).

use super::encode::{Encoded, encode};
use super::error::BackfillError;
use super::gate::unlist;
use super::marker::Marker;
use super::options::CrashPoint;
use super::resolve::{Fate, SentAt, decide, streams_to_resolve};
use super::run::Ctx;
use super::summary::{ObjectReport, ObjectStatus};
pub(super) use crate::batch::writer_schema;
use crate::bigquery::{AppendOutcome, Appender, CommitOutcome};
use crate::delivery::send;
use crate::dlq::{Cause, DeadLetter};
use crate::pb::storage::storage_error::StorageErrorCode;
use crate::pb::storage::{WriteStreamView, write_stream};
use crate::rows::Encoder;
use crate::spill::{SpillKey, SpillReason, SpilledBatch};
use crate::table::TableName;
use std::collections::HashMap;
use std::ops::Range;

/// Fresh attempts after BigQuery rejects rows (each drops the rejected rows
/// to the dead-letter queue). The encoder validates what BigQuery does, so
/// a second rejection is already unexpected.
const MAX_ATTEMPTS: u32 = 3;

/// Replays `batch`, read from `key`.
///
/// # Errors
/// [`BackfillError`] leaves the object (and any marker) in place for a rerun.
pub async fn replay(
    ctx: &Ctx<'_>,
    key: &SpillKey,
    batch: &SpilledBatch,
) -> Result<ObjectReport, BackfillError> {
    if !ctx.options.dry_run
        && let Some(value) = ctx.deps.spill.get_marker(key).await?
    {
        let marker = Marker::from_value(value)?;
        if let Some(report) = resume(ctx, key, batch, &marker).await? {
            return Ok(report);
        }
    }
    fresh(ctx, key, batch).await
}

/// Whether `key` has a marker naming a stream BigQuery committed: an
/// earlier run made its rows visible.
pub(super) async fn committed_marker(ctx: &Ctx<'_>, key: &SpillKey) -> Result<bool, BackfillError> {
    let Some(value) = ctx.deps.spill.get_marker(key).await? else { return Ok(false) };
    let marker = Marker::from_value(value)?;
    match ctx.deps.client.get_write_stream(&marker.write_stream, WriteStreamView::Basic).await {
        Ok(ws) => Ok(ws.commit_time.is_some()),
        Err(e) if e.code() == Some(tonic::Code::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// An earlier run finalized `marker.write_stream` with this object's rows.
/// `None`: that stream can no longer be committed; start over.
async fn resume(
    ctx: &Ctx<'_>,
    key: &SpillKey,
    batch: &SpilledBatch,
    marker: &Marker,
) -> Result<Option<ObjectReport>, BackfillError> {
    let stream = &marker.write_stream;
    let report = |status| ObjectReport {
        key: key.to_string(),
        status,
        records: batch.records.len() as u64,
        rows: u64::try_from(marker.row_count).unwrap_or(0),
        already_in_table: marker.already_in_table,
        in_doubt: 0,
        at_least_once: 0,
        dead_lettered: marker.dead_lettered,
        error: None,
    };
    match ctx.deps.client.get_write_stream(stream, WriteStreamView::Basic).await {
        Ok(ws) if ws.commit_time.is_some() => {
            finish(ctx, key, batch).await?;
            Ok(Some(report(ObjectStatus::AlreadyCommitted)))
        }
        Ok(_) => match commit(ctx, &batch.table, stream).await {
            Ok(()) => {
                ctx.crash(CrashPoint::AfterCommit)?;
                finish(ctx, key, batch).await?;
                Ok(Some(report(ObjectStatus::Replayed)))
            }
            Err(BackfillError::CommitRefused { .. }) => {
                tracing::warn!(key = %key, stream = %stream, "recorded stream cannot be committed; replaying on a new stream");
                Ok(None)
            }
            Err(e) => Err(e),
        },
        Err(e) if e.code() == Some(tonic::Code::NotFound) => {
            tracing::warn!(key = %key, stream = %stream, "recorded stream is gone; replaying on a new stream");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

async fn fresh(
    ctx: &Ctx<'_>,
    key: &SpillKey,
    batch: &SpilledBatch,
) -> Result<ObjectReport, BackfillError> {
    let table = &batch.table;
    let records = batch.source_records();
    let (fates, in_doubt, at_least_once) = resolve(ctx, key, batch).await?;
    let encoder = ctx.encoder(table).await?;
    if batch.reason == SpillReason::AwaitingColumns {
        wait_for_columns(&encoder, &records)?;
    }
    let mut report = ObjectReport {
        key: key.to_string(),
        status: ObjectStatus::Replayed,
        records: records.len() as u64,
        rows: 0,
        already_in_table: 0,
        in_doubt,
        at_least_once,
        dead_lettered: 0,
        error: None,
    };
    let mut rejected: Vec<(usize, DeadLetter)> = Vec::new();
    for _attempt in 0..MAX_ATTEMPTS {
        // Encoded while it is appended (`stream.rs`) when nothing decided
        // from the encoding is needed before the stream exists: a real run
        // to a PENDING stream, with a queue for the dead letters.
        let streamed = !ctx.options.dry_run
            && encoder.cdc().is_none()
            && ctx.deps.dlq.is_some()
            && fates.contains(&Fate::Replay);
        let (encoded, written) = if streamed {
            stream_pending(ctx, &encoder, table, &records, &fates, &rejected).await?
        } else {
            let limits = &ctx.deps.limits;
            let encoded = encode(&encoder, table, limits, &records, &fates, &rejected);
            count(&mut report, &encoded);
            if ctx.options.dry_run {
                report.status = ObjectStatus::Counted;
                return Ok(report);
            }
            if !encoded.dead.is_empty() && ctx.deps.dlq.is_none() {
                return Err(BackfillError::NoDeadLetterQueue(encoded.dead.len()));
            }
            if encoded.rows.is_empty() {
                // Nothing to write: every record is in the table or dead-lettered.
                dead_letter(ctx, &encoded.dead).await?;
                finish(ctx, key, batch).await?;
                return Ok(report);
            }
            let written = if encoder.cdc().is_some() {
                super::cdc_default::write(ctx, &encoder, table, &encoded).await?
            } else {
                write_pending(ctx, &encoder, table, &encoded).await?
            };
            (encoded, written)
        };
        count(&mut report, &encoded);
        if let Some(report) = settle(
            ctx,
            key,
            batch,
            table,
            &encoded,
            written,
            report.clone(),
            &records,
            &mut rejected,
        )
        .await?
        {
            return Ok(report);
        }
    }
    Err(BackfillError::RowErrorsPersist(MAX_ATTEMPTS))
}

/// Records spilled while their new columns propagated are written only
/// once the table's writers see those columns: a record still refused for
/// an unknown field leaves the object in place (never a dead letter), and a
/// later run writes it. The encoder is the run's, built from the writers'
/// schema of now.
///
/// # Errors
/// [`BackfillError::ColumnsNotVisible`] naming the first field missing.
fn wait_for_columns(
    encoder: &Encoder,
    records: &[crate::source::SourceRecord],
) -> Result<(), BackfillError> {
    let mut scratch = Vec::new();
    let mut missing = records.iter().filter_map(|record| {
        scratch.clear();
        let meta = crate::rows::RecordMeta::from(record);
        match encoder.encode(&record.data, &meta, &mut scratch) {
            Err(e) if e.kind == crate::rows::RowErrorKind::UnknownField => Some(e.to_string()),
            _ => None,
        }
    });
    let Some(first) = missing.next() else { return Ok(()) };
    Err(BackfillError::ColumnsNotVisible { records: 1 + missing.count(), first })
}

/// What the encoding of an attempt says of the object.
fn count(report: &mut ObjectReport, encoded: &Encoded) {
    report.rows = encoded.rows.len() as u64;
    report.already_in_table = encoded.already_in_table;
    report.dead_lettered = encoded.dead.len() as u64;
}

/// Steps 4–6 after a write: `Some(report)` when the object is done, `None`
/// when rows BigQuery rejected were added to `rejected` for another attempt.
#[allow(clippy::too_many_arguments)]
async fn settle(
    ctx: &Ctx<'_>,
    key: &SpillKey,
    batch: &SpilledBatch,
    table: &TableName,
    encoded: &Encoded,
    written: Written,
    report: ObjectReport,
    records: &[crate::source::SourceRecord],
    rejected: &mut Vec<(usize, DeadLetter)>,
) -> Result<Option<ObjectReport>, BackfillError> {
    match written {
        // Every record is in the table or a dead letter; the stream made
        // for them stays empty and is never committed.
        Written::Default | Written::Nothing => {
            dead_letter(ctx, &encoded.dead).await?;
            finish(ctx, key, batch).await?;
            return Ok(Some(report));
        }
        Written::Finalized { stream, row_count } => {
            dead_letter(ctx, &encoded.dead).await?;
            let marker = Marker::new(
                stream.clone(),
                row_count,
                report.dead_lettered,
                report.already_in_table,
            );
            ctx.deps.spill.put_marker(key, &marker.to_value()).await?;
            ctx.crash(CrashPoint::AfterMarker)?;
            commit(ctx, table, &stream).await?;
            ctx.crash(CrashPoint::AfterCommit)?;
            finish(ctx, key, batch).await?;
            return Ok(Some(report));
        }
        Written::Rejected(rows) => {
            for (row, message) in rows {
                let index = encoded.record_of_row.get(row).copied();
                if let Some(index) = index
                    && let Some(record) = records.get(index)
                {
                    let letter = DeadLetter::of(record, table, Cause::Rejected(&message));
                    rejected.push((index, letter));
                }
            }
        }
    }
    Ok(None)
}

/// The fate of each record, how many are in doubt (dry run) and how many
/// are replayed at least once because their stream is lost. A dry run does
/// not finalize anything, so it leaves in-doubt records counted as
/// replayable.
async fn resolve(
    ctx: &Ctx<'_>,
    key: &SpillKey,
    batch: &SpilledBatch,
) -> Result<(Vec<Fate>, u64, u64), BackfillError> {
    let all = || vec![Fate::Replay; batch.records.len()];
    let records = batch.records.len() as u64;
    if batch.reason == SpillReason::StreamLost {
        if !ctx.options.dry_run {
            tracing::warn!(key = %key, records, "replaying records whose appends were in doubt on a lost write stream: at least once");
        }
        return Ok((all(), 0, records));
    }
    let in_doubt = batch.records.iter().filter(|r| r.offset.is_some()).count() as u64;
    if in_doubt == 0 || ctx.options.dry_run {
        return Ok((all(), in_doubt, 0));
    }
    let write_stream = batch.write_stream.as_deref().ok_or(BackfillError::MissingWriteStream)?;
    let sent = || {
        batch.records.iter().map(move |r| r.offset.map(|offset| SentAt { write_stream, offset }))
    };
    let mut ends = HashMap::new();
    for stream in streams_to_resolve(sent()) {
        // The Lambda never appends to a stream again once it spilled appends
        // in doubt on it, so finalizing it here takes nothing from it; on an
        // already finalized stream it returns the same row count.
        match ctx.deps.client.finalize_write_stream(stream).await {
            Ok(end) => {
                ends.insert(stream.to_string(), end);
            }
            // Garbage-collected, or its table re-created: its end can never
            // be learned. Replaying is the documented policy (at least once
            // for these records, never dropped silently).
            Err(e) if e.code() == Some(tonic::Code::NotFound) => {
                tracing::warn!(key = %key, write_stream = %stream, records = in_doubt, error = %e,
                    "the write stream of in-doubt records is lost: replaying them at least once");
                return Ok((all(), 0, in_doubt));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok((decide(sent(), &ends)?, 0, 0))
}

pub(super) enum Written {
    /// `WRITE_MODE=cdc`: every row is in through the `_default` stream.
    Default,
    /// Streamed: no record became a row.
    Nothing,
    Finalized {
        stream: String,
        row_count: i64,
    },
    /// Rows (indexes into `Encoded::rows`) BigQuery rejected; nothing of
    /// this stream will be committed.
    Rejected(Vec<(usize, String)>),
}

/// Steps 3: a new PENDING stream holding exactly `encoded.rows`, finalized.
async fn write_pending(
    ctx: &Ctx<'_>,
    encoder: &Encoder,
    table: &TableName,
    encoded: &Encoded,
) -> Result<Written, BackfillError> {
    let (cuts, requests) =
        send::cut_requests(&encoded.rows, Some(0), encoder, &ctx.deps.limits, table)?;
    let ranges: Vec<Range<usize>> = cuts.into_iter().map(|c| c.rows).collect();
    let (stream, mut appender) = create_pending(ctx, encoder, table).await?;
    let deadline = tokio::time::Instant::now() + ctx.deps.append_timeout;
    let outcomes = appender.append_all(requests, deadline).await;
    finalize_pending(ctx, stream, &ranges, outcomes, encoded.rows.len()).await
}

/// Step 2 and 3 together: the records encoded while their rows are
/// appended to a new PENDING stream (`stream.rs`), then finalized.
async fn stream_pending(
    ctx: &Ctx<'_>,
    encoder: &Encoder,
    table: &TableName,
    records: &[crate::source::SourceRecord],
    fates: &[Fate],
    excluded: &[(usize, DeadLetter)],
) -> Result<(Encoded, Written), BackfillError> {
    let deadline = tokio::time::Instant::now() + ctx.deps.append_timeout;
    let streamed = super::stream::encode_and_append(
        encoder,
        table,
        &ctx.deps.limits,
        records,
        fates,
        excluded,
        || create_pending(ctx, encoder, table),
        deadline,
    )
    .await?;
    if let Some(e) = streamed.error {
        return Err(BackfillError::Encode(e));
    }
    let encoded = streamed.encoded;
    let Some(stream) = streamed.stream else {
        return Ok((encoded, Written::Nothing));
    };
    let rows = encoded.rows.len();
    let written = finalize_pending(ctx, stream, &streamed.ranges, streamed.outcomes, rows).await?;
    Ok((encoded, written))
}

/// A new PENDING stream and an appender for it.
async fn create_pending(
    ctx: &Ctx<'_>,
    encoder: &Encoder,
    table: &TableName,
) -> Result<(String, Appender), BackfillError> {
    let client = &ctx.deps.client;
    let stream = client.create_write_stream(table, write_stream::Type::Pending).await?.name;
    ctx.crash(CrashPoint::AfterCreate)?;
    let appender = Appender::new(
        client.clone(),
        stream.clone(),
        writer_schema(encoder),
        ctx.deps.appender.clone(),
    );
    Ok((stream, appender))
}

/// Judges the answers to the requests of `ranges` (rows, also offsets);
/// when every one is in, finalizes the stream and checks it holds `rows`.
async fn finalize_pending(
    ctx: &Ctx<'_>,
    stream: String,
    ranges: &[Range<usize>],
    outcomes: Vec<AppendOutcome>,
    rows: usize,
) -> Result<Written, BackfillError> {
    let client = &ctx.deps.client;
    let mut rejected = Vec::new();
    for (outcome, range) in outcomes.into_iter().zip(ranges) {
        match outcome {
            AppendOutcome::Appended { .. } | AppendOutcome::AlreadyExists => {}
            AppendOutcome::RowErrors(errors) => {
                rejected.extend(errors.into_iter().map(|e| (range.start + e.index, e.message)));
            }
            AppendOutcome::Failed(e) if rejected.is_empty() => {
                return Err(BackfillError::Append(e));
            }
            AppendOutcome::InDoubt(e) if rejected.is_empty() => {
                return Err(BackfillError::AppendInDoubt(e));
            }
            AppendOutcome::NotSent if rejected.is_empty() => {
                return Err(BackfillError::AppendNotSent);
            }
            // After a rejection the rest was not written; the stream is abandoned.
            AppendOutcome::Failed(_) | AppendOutcome::InDoubt(_) | AppendOutcome::NotSent => {}
        }
    }
    if !rejected.is_empty() {
        return Ok(Written::Rejected(rejected));
    }
    ctx.crash(CrashPoint::AfterAppend)?;
    let row_count = client.finalize_write_stream(&stream).await?;
    if usize::try_from(row_count).ok() != Some(rows) {
        return Err(BackfillError::RowCountMismatch { stream, row_count, sent: rows });
    }
    ctx.crash(CrashPoint::AfterFinalize)?;
    Ok(Written::Finalized { stream, row_count })
}

/// BatchCommitWriteStreams of one stream; a stream some earlier call
/// committed counts as committed.
async fn commit(ctx: &Ctx<'_>, table: &TableName, stream: &str) -> Result<(), BackfillError> {
    match ctx.deps.client.batch_commit(table, &[stream.to_string()]).await? {
        CommitOutcome::Committed { .. } => Ok(()),
        CommitOutcome::NotCommitted(errors)
            if !errors.is_empty()
                && errors
                    .iter()
                    .all(|e| e.code == StorageErrorCode::StreamAlreadyCommitted as i32) =>
        {
            Ok(())
        }
        CommitOutcome::NotCommitted(errors) => {
            Err(BackfillError::CommitRefused { stream: stream.to_string(), errors })
        }
    }
}

async fn dead_letter(ctx: &Ctx<'_>, letters: &[DeadLetter]) -> Result<(), BackfillError> {
    match (&ctx.deps.dlq, letters.is_empty()) {
        (_, true) => Ok(()),
        (Some(dlq), false) => Ok(dlq.send(letters).await?),
        (None, false) => Err(BackfillError::NoDeadLetterQueue(letters.len())),
    }
}

/// Step 6, once the object's rows are committed: it leaves the shard
/// state's list of spillover objects (exactly-once mode), then the spillover
/// (object, then marker).
async fn finish(ctx: &Ctx<'_>, key: &SpillKey, batch: &SpilledBatch) -> Result<(), BackfillError> {
    if let Some(state) = ctx.deps.gate_state() {
        unlist(state.as_ref(), key, batch).await?;
    }
    ctx.crash(CrashPoint::AfterUnlist)?;
    remove(ctx, key).await
}

/// Deletes the object and its marker, or moves them under `--archive-to`.
pub async fn remove(ctx: &Ctx<'_>, key: &SpillKey) -> Result<(), BackfillError> {
    match &ctx.options.archive_to {
        Some(to) => {
            ctx.deps.spill.archive(key, to).await?;
        }
        None => ctx.deps.spill.delete(key).await?,
    }
    ctx.crash(CrashPoint::AfterDelete)
}
