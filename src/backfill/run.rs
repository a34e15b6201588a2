//! A backfill run: list the spillover objects, filter them, replay up to
//! `concurrency` at a time, report progress and the summary.

use super::error::BackfillError;
use super::gate::{Gate, gate};
use super::options::{BackfillOptions, CrashPoint};
use super::progress::Progress;
use super::replay::{remove, replay};
use super::summary::{ObjectReport, ObjectStatus, Summary};
use crate::batch::BatchLimits;
use crate::bigquery::{AppenderOptions, WriteClient};
use crate::cdc::CdcSettings;
use crate::delivery::store::StateStore;
use crate::dlq::DeadLetterSink;
use crate::rows::{Encoder, EncoderOptions};
use crate::spill::{SpillFilter, SpillKey, SpillSink, SpilledBatch};
use crate::table::TableName;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What a run writes through, built once by the caller (`main.rs`, the
/// demo, tests).
pub struct BackfillDeps {
    pub client: WriteClient,
    pub spill: Arc<dyn SpillSink>,
    /// The Lambda's state store (`STATE_URL`) in exactly-once mode: only
    /// spillover objects its shard state lists are replayed (see `gate.rs`).
    /// `None` for `WRITE_MODE=at_least_once`, which keeps no state.
    pub state: Option<Arc<dyn StateStore>>,
    /// Where records that cannot become rows go; without one, an object
    /// holding such records is left behind.
    pub dlq: Option<Arc<dyn DeadLetterSink>>,
    /// Must match the Lambda's `ROW_FORMAT` / `UNKNOWN_FIELDS`, so a record
    /// is judged the same way on replay.
    pub encoder: EncoderOptions,
    /// `WRITE_MODE=cdc`: rows are changes with these settings, written to
    /// the `_default` stream with their original sequence numbers.
    pub cdc: Option<CdcSettings>,
    /// AppendRows request bounds (`BATCH_MAX_BYTES`, `BATCH_MAX_ROWS`) and the
    /// window of the streamed PENDING path (`BATCH_WINDOW_MS`).
    pub limits: BatchLimits,
    pub appender: AppenderOptions,
    /// How long one object's appends may take before it is left behind.
    pub append_timeout: Duration,
}

/// Shared by the objects of one run.
pub struct Ctx<'a> {
    pub deps: &'a BackfillDeps,
    pub options: &'a BackfillOptions,
    encoders: tokio::sync::Mutex<HashMap<TableName, Arc<Encoder>>>,
}

impl Ctx<'_> {
    /// The encoder for `table`, built from its live schema once per run.
    pub async fn encoder(&self, table: &TableName) -> Result<Arc<Encoder>, BackfillError> {
        let mut encoders = self.encoders.lock().await;
        if let Some(encoder) = encoders.get(table) {
            return Ok(Arc::clone(encoder));
        }
        let schema = self.deps.client.table_schema(table).await?;
        let mut encoder = Encoder::new(&schema, self.deps.encoder)?;
        if let Some(cdc) = &self.deps.cdc {
            encoder = encoder.with_cdc(cdc.clone())?;
        }
        let encoder = Arc::new(encoder);
        encoders.insert(table.clone(), Arc::clone(&encoder));
        Ok(encoder)
    }

    /// The crash hook: tests make a step boundary fail like a killed process.
    pub fn crash(&self, at: CrashPoint) -> Result<(), BackfillError> {
        if self.options.crash_at == Some(at) { Err(BackfillError::Crash(at)) } else { Ok(()) }
    }
}

/// Replays every spillover object that matches `options.filter`.
///
/// A failed object is reported and counted, never fatal to the run:
/// [`Summary::left_behind`] tells the caller to exit non-zero.
///
/// # Errors
/// Only when the objects cannot even be listed.
pub async fn run(
    deps: &BackfillDeps,
    options: &BackfillOptions,
    progress: &Progress,
) -> Result<Summary, BackfillError> {
    let keys: Vec<SpillKey> = deps
        .spill
        .list(&SpillFilter::default())
        .await?
        .into_iter()
        .filter(|key| shard_selected(options, key))
        .collect();
    let ctx = Ctx { deps, options, encoders: tokio::sync::Mutex::new(HashMap::new()) };
    let mut summary = Summary { dry_run: options.dry_run, ..Summary::default() };
    progress.start(keys.len() as u64);
    let reports = futures::stream::iter(keys.iter())
        .map(|key| one(&ctx, key))
        .buffer_unordered(options.concurrency.max(1));
    futures::pin_mut!(reports);
    while let Some(report) = reports.next().await {
        if let Some(report) = report {
            progress.object(&report);
            summary.add(&report);
        }
    }
    progress.finish(&summary);
    Ok(summary)
}

fn shard_selected(options: &BackfillOptions, key: &SpillKey) -> bool {
    let shards = &options.filter.shards;
    shards.is_empty()
        || shards
            .iter()
            .any(|s| SpillFilter { shard: Some(s.clone()), ..Default::default() }.matches(key))
}

/// `None` when the object does not match the time filter.
async fn one(ctx: &Ctx<'_>, key: &SpillKey) -> Option<ObjectReport> {
    let batch = match ctx.deps.spill.read(key).await {
        Ok(batch) => batch,
        Err(e) => return Some(ObjectReport::failed(&key.to_string(), chain(&e))),
    };
    if !ctx.options.filter.matches(&batch.shard_id, Some(batch.spilled_at)) {
        return None;
    }
    if let Some(state) = &ctx.deps.state {
        match gate(state.as_ref(), key, &batch).await {
            Ok(Gate::Genuine) => {}
            Ok(Gate::Orphan) => return Some(orphan(ctx, key, &batch).await),
            Ok(Gate::Pending) => {
                let e = BackfillError::NotYetCommitted;
                return Some(ObjectReport::failed(&key.to_string(), chain(&e)));
            }
            Err(e) => return Some(ObjectReport::failed(&key.to_string(), chain(&e))),
        }
    }
    let report = match replay(ctx, key, &batch).await {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(key = %key, error = %chain(&e), "spillover object left behind");
            ObjectReport::failed(&key.to_string(), chain(&e))
        }
    };
    Some(report)
}

/// Removes an orphan (unless this is a dry run) without replaying it.
async fn orphan(ctx: &Ctx<'_>, key: &SpillKey, batch: &SpilledBatch) -> ObjectReport {
    let report = ObjectReport {
        key: key.to_string(),
        status: ObjectStatus::Orphaned,
        records: batch.records.len() as u64,
        rows: 0,
        already_in_table: 0,
        in_doubt: 0,
        at_least_once: 0,
        dead_lettered: 0,
        error: None,
    };
    if ctx.options.dry_run {
        return report;
    }
    match remove(ctx, key).await {
        Ok(()) => {
            tracing::info!(key = %key, "orphan spillover object removed: its records landed through a retry");
            report
        }
        Err(e) => ObjectReport::failed(&key.to_string(), chain(&e)),
    }
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
