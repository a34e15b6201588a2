//! One redrive run (see the module doc of [`super`] for the protocol).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;

use super::letters::{Identity, Letters, LettersError, Received};
use crate::backfill::{self, BackfillDeps, BackfillError, BackfillOptions, Progress};
use crate::dlq::{DeadLetter, Payload, Reason};
use crate::rows::{Encoder, RecordMeta};
use crate::source::SourceRecord;
use crate::spill::{SpillError, SpillFilter, SpillReason, SpilledBatch, SpilledRecord};
use crate::table::TableName;

/// What a run needs: the letters, and a backfill over the redrive's own
/// spillover area (`--work`), which holds nothing but redriven records.
pub struct RedriveDeps {
    pub letters: Letters,
    pub backfill: BackfillDeps,
}

/// `kinesis-bigquery redrive` flags that shape a run.
#[derive(Clone, Debug)]
pub struct RedriveOptions {
    pub dry_run: bool,
    /// Letters read in one run at most.
    pub max_letters: usize,
    /// How long received SQS messages stay hidden from other readers.
    pub visibility_secs: i32,
    /// Tests only: stop right after the fitting records are parked, as a
    /// killed process would.
    pub crash_after_park: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("reading the dead letters")]
    Letters(#[from] LettersError),
    #[error("the redrive spillover area")]
    Work(#[from] SpillError),
    #[error("writing the redriven records")]
    Backfill(#[from] BackfillError),
    #[error("crash point after parking (tests)")]
    Crash,
}

/// What happened to the letters read, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedriveSummary {
    pub read: usize,
    /// Letters that now fit, by their old reason.
    pub fits: BTreeMap<String, usize>,
    /// Letters that still do not, by their new reason.
    pub still: BTreeMap<String, usize>,
    /// Second copies of a letter (same record), removed.
    pub duplicates: usize,
    /// Found already parked by an earlier run that stopped before removing them.
    pub already_parked: usize,
    /// Messages that are not dead letters (left in the queue).
    pub unreadable: usize,
    /// Rows committed to BigQuery by this run's backfill.
    pub rows_written: u64,
    /// Parked objects the backfill could not write this time (a rerun retries them).
    pub left_behind: u64,
    pub dry_run: bool,
}

impl std::fmt::Display for RedriveSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run { "would be written" } else { "written" };
        writeln!(f, "letters read: {}", self.read)?;
        for (reason, n) in &self.fits {
            writeln!(f, "  {reason}: {n} now fit the table, {verb}")?;
        }
        for (reason, n) in &self.still {
            writeln!(f, "  {reason}: {n} still do not fit, left in the queue")?;
        }
        writeln!(f, "duplicates removed: {}", self.duplicates)?;
        writeln!(f, "already parked by an earlier run: {}", self.already_parked)?;
        writeln!(f, "unreadable messages left in place: {}", self.unreadable)?;
        write!(
            f,
            "rows committed: {} (parked objects left for a rerun: {})",
            self.rows_written, self.left_behind
        )
    }
}

/// Runs the redrive.
///
/// # Errors
/// [`RedriveError`]; whatever was done before stays consistent (see the protocol).
pub async fn run(
    deps: &RedriveDeps,
    options: &RedriveOptions,
    progress: &Progress,
) -> Result<RedriveSummary, RedriveError> {
    let work = &deps.backfill.spill;
    let mut summary = RedriveSummary { dry_run: options.dry_run, ..Default::default() };
    // 1. Records an earlier run parked and may not have removed from the queue.
    let mut parked = HashSet::new();
    for key in work.list(&SpillFilter::default()).await? {
        let batch = work.read(&key).await?;
        for r in &batch.records {
            parked.insert(Identity::of_parts(
                &batch.stream_arn,
                &batch.shard_id,
                &r.position.sequence_number,
                r.position.sub_sequence_number,
            ));
        }
    }
    // 2. Read and sort the letters out.
    let received = deps.letters.receive(options.max_letters, options.visibility_secs).await?;
    summary.read = received.len();
    let mut encoders: HashMap<TableName, Option<Arc<Encoder>>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut remove = Vec::new();
    let mut replace = HashMap::new();
    let mut fits: HashMap<(TableName, String, String), Vec<SpilledRecord>> = HashMap::new();
    let handles: Vec<_> = received.iter().map(|r| r.handle.clone()).collect();
    for Received { handle, letter } in received {
        let Ok(letter) = letter else {
            summary.unreadable += 1;
            continue;
        };
        let id = Identity::of(&letter);
        if !seen.insert(id.clone()) {
            summary.duplicates += 1;
            remove.push(handle);
            continue;
        }
        if parked.contains(&id) {
            summary.already_parked += 1;
            remove.push(handle);
            continue;
        }
        let Payload::Inline(data) = &letter.data else {
            // The bytes live in S3 (an oversized record): not redriven yet.
            *summary.still.entry("payload_in_s3".into()).or_default() += 1;
            continue;
        };
        let encoder = match encoders.get(&letter.table) {
            Some(e) => e.clone(),
            None => {
                let e = deps.backfill.client.table_schema(&letter.table).await.ok().and_then(
                    |schema| Encoder::new(&schema, deps.backfill.encoder).ok().map(Arc::new),
                );
                encoders.insert(letter.table.clone(), e.clone());
                e
            }
        };
        let Some(encoder) = encoder else {
            *summary.still.entry("no_such_table".into()).or_default() += 1;
            continue;
        };
        let record = source_record(&letter, data.clone());
        let mut row = Vec::new();
        match encoder.encode(&record.data, &RecordMeta::from(&record), &mut row) {
            Ok(()) => {
                *summary.fits.entry(reason_name(letter.reason)).or_default() += 1;
                let group =
                    (letter.table.clone(), letter.stream_arn.clone(), letter.shard_id.clone());
                fits.entry(group).or_default().push(SpilledRecord::from_source(&record, None));
                remove.push(handle);
            }
            Err(e) => {
                // The letter the Lambda would write today, keeping the
                // original's identity and payload.
                let (_, today) = crate::delivery::prepare::refused(&record, &letter.table, &e);
                *summary.still.entry(reason_name(today.reason)).or_default() += 1;
                let mut fresh = letter.clone();
                fresh.reason = today.reason;
                fresh.error = today.error;
                fresh.field_path = today.field_path;
                fresh.dead_lettered_at = Utc::now();
                replace.insert(handle, fresh);
            }
        }
    }
    if options.dry_run {
        deps.letters.release(&handles).await?;
        return Ok(summary);
    }
    // 3. Park what fits in the redrive's spillover area: from here on the
    //    records are durable outside the queue.
    for ((table, stream_arn, shard_id), mut records) in fits {
        records.sort_by(|a, b| a.position.cmp(&b.position));
        let batch = SpilledBatch {
            table,
            stream_arn,
            shard_id,
            reason: SpillReason::Rejected,
            error: "redriven from the dead-letter queue".into(),
            spilled_at: Utc::now(),
            write_stream: None,
            // The redrive's own work area, replayed by its own backfill
            // (no shard state): any mode takes it.
            write_mode: None,
            records,
        };
        work.spill(&batch).await?;
    }
    if options.crash_after_park {
        return Err(RedriveError::Crash);
    }
    // 4. Remove what is parked (or duplicated) from the queue; refresh the rest.
    deps.letters.settle(&remove, &replace).await?;
    // 5. Write the parked records exactly once: one PENDING stream per
    //    object, marker, commit, delete (the backfill's protocol).
    let backfilled = backfill::run(&deps.backfill, &backfill_options(), progress).await?;
    summary.rows_written = backfilled.rows;
    summary.left_behind = backfilled.failed;
    Ok(summary)
}

fn backfill_options() -> BackfillOptions {
    BackfillOptions { dry_run: false, concurrency: 4, ..Default::default() }
}

fn reason_name(r: Reason) -> String {
    serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The Kinesis record a letter stands for, as the encoder and the spillover take it.
fn source_record(letter: &DeadLetter, data: bytes::Bytes) -> SourceRecord {
    SourceRecord {
        shard_id: letter.shard_id.clone().into(),
        stream_arn: letter.stream_arn.clone().into(),
        position: letter.position(),
        event_index: 0,
        partition_key: letter.partition_key.clone().into(),
        explicit_hash_key: letter.explicit_hash_key.clone().map(Into::into),
        arrival_micros: letter.arrival_time.map(|t| t.timestamp_micros()),
        data,
    }
}
