//! A backfill run: take the lease on the spillover root, list the objects,
//! filter them, replay up to `concurrency` at a time, report progress and the
//! summary, release the lease.
//!
//! Nothing disappears that was not replayed, unless asked: an object another
//! `WRITE_MODE` wrote is left alone and reported (`other_mode`); an orphan
//! (unlisted, the shard state past it) is moved under `quarantine/` unless
//! `--delete-orphans`; an object the state does not reach (or with no state
//! object at all) stays for a later run.

use super::error::BackfillError;
use super::gate::{Gate, gate, prune};
use super::lease::{DEFAULT_LEASE, Lease, holder_id};
use super::options::{BackfillOptions, CrashPoint, QUARANTINE_PREFIX};
use super::progress::Progress;
use super::replay::{committed_marker, remove, replay};
use super::summary::{ObjectReport, ObjectStatus, Summary};
use crate::batch::BatchLimits;
use crate::bigquery::{AppenderOptions, WriteClient};
use crate::cdc::CdcSettings;
use crate::delivery::spill_manifest::ManifestCache;
use crate::delivery::store::StateStore;
use crate::delivery::{WriteMode, state_key};
use crate::dlq::DeadLetterSink;
use crate::rows::{Encoder, EncoderOptions};
use crate::spill::format::mode_name;
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
    /// `None` for `WRITE_MODE=at_least_once`, which keeps no state. With
    /// `cdc` set it gates nothing (a CDC Lambda keeps no shard state) and
    /// only holds the run's lease.
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

impl BackfillDeps {
    /// The Lambda `WRITE_MODE` this run replays for: `cdc` with CDC
    /// settings, `exactly_once` with a state store, `at_least_once` without.
    pub fn write_mode(&self) -> WriteMode {
        match (&self.cdc, &self.state) {
            (Some(_), _) => WriteMode::Cdc,
            (None, Some(_)) => WriteMode::ExactlyOnce,
            (None, None) => WriteMode::AtLeastOnce,
        }
    }

    /// The state store that gates objects: exactly-once mode only.
    pub(super) fn gate_state(&self) -> Option<&Arc<dyn StateStore>> {
        self.state.as_ref().filter(|_| self.write_mode() == WriteMode::ExactlyOnce)
    }
}

/// Shared by the objects of one run.
pub struct Ctx<'a> {
    pub deps: &'a BackfillDeps,
    pub options: &'a BackfillOptions,
    mode: WriteMode,
    encoders: tokio::sync::Mutex<HashMap<TableName, Arc<Encoder>>>,
    manifests: ManifestCache,
    /// The state key and spillover filter of every shard this run gated.
    gated: std::sync::Mutex<HashMap<String, SpillFilter>>,
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

/// Replays every spillover object that matches `options.filter`, holding
/// the spillover root's lease (a dry run writes nothing and takes none).
///
/// A failed object is reported and counted, never fatal to the run:
/// [`Summary::left_behind`] tells the caller to exit non-zero.
///
/// # Errors
/// [`BackfillError::Leased`] when another run holds the lease (nothing is
/// touched); [`BackfillError::LeaseLost`] when this run's lease was taken
/// over mid-run; or the objects cannot even be listed.
pub async fn run(
    deps: &BackfillDeps,
    options: &BackfillOptions,
    progress: &Progress,
) -> Result<Summary, BackfillError> {
    let mode = deps.write_mode();
    if mode != WriteMode::ExactlyOnce && deps.state.is_some() {
        tracing::info!(
            write_mode = mode_name(mode),
            "this write mode keeps no shard state: objects are not gated, the state store holds only the lease"
        );
    }
    if options.dry_run {
        return replay_all(deps, options, progress).await;
    }
    let store = deps.state.clone().unwrap_or_else(|| deps.spill.lease_store());
    let ttl = options.lease.unwrap_or(DEFAULT_LEASE);
    let lease =
        Lease::take(store, &deps.spill.root(), holder_id(), ttl, chrono::Utc::now()).await?;
    tracing::info!(lease = %lease.location(), "backfill lease taken");
    // Stopping mid-object when the lease is lost is as safe as a crash there.
    let outcome = tokio::select! {
        lost = lease.keep() => Err(lost),
        done = replay_all(deps, options, progress) => done,
    };
    if let Err(e) = lease.release().await {
        tracing::warn!(error = %e, "releasing the backfill lease failed; it expires on its own");
    }
    outcome
}

async fn replay_all(
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
    let ctx = Ctx {
        deps,
        options,
        mode: deps.write_mode(),
        encoders: tokio::sync::Mutex::new(HashMap::new()),
        manifests: ManifestCache::default(),
        gated: std::sync::Mutex::new(HashMap::new()),
    };
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
    if !options.dry_run {
        prune_chains(&ctx).await;
    }
    progress.finish(&summary);
    Ok(summary)
}

/// Once a shard's objects are all replayed, its state drops the spill
/// manifest chain that vouched for them (see `gate::prune`). A failure only
/// leaves the chain for the next run.
async fn prune_chains(ctx: &Ctx<'_>) {
    let Some(state) = ctx.deps.gate_state() else { return };
    let shards: Vec<(String, SpillFilter)> =
        ctx.gated.lock().map(|g| g.clone().into_iter().collect()).unwrap_or_default();
    for (skey, filter) in shards {
        let pruned = async {
            let remaining =
                ctx.deps.spill.list(&filter).await?.iter().map(SpillKey::path).collect();
            prune(state.as_ref(), &ctx.manifests, &skey, &remaining).await
        };
        match pruned.await {
            Ok(true) => {
                tracing::info!(state = %skey, "spill manifest chain replayed in full: dropped from the shard state")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(state = %skey, error = %chain(&e), "spill manifest chain kept for the next run")
            }
        }
    }
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
    if let Some(written) = batch.write_mode
        && written != ctx.mode
    {
        return Some(other_mode(ctx, key, &batch, written));
    }
    if let Some(state) = ctx.deps.gate_state() {
        if let Ok(mut gated) = ctx.gated.lock() {
            let filter = SpillFilter {
                table: Some(batch.table.clone()),
                stream: Some(batch.stream_arn.clone()),
                shard: Some(batch.shard_id.clone()),
            };
            gated.insert(state_key(&batch.table, &batch.stream_arn, &batch.shard_id), filter);
        }
        match gate(state.as_ref(), &ctx.manifests, key, &batch).await {
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

/// Leaves an object another `WRITE_MODE` wrote where it is: replaying it
/// in this mode could duplicate it (exactly-once objects need their shard
/// state) or gate it on a state that never lists it (at-least-once objects).
fn other_mode(
    ctx: &Ctx<'_>,
    key: &SpillKey,
    batch: &SpilledBatch,
    written: WriteMode,
) -> ObjectReport {
    let why = format!(
        "written with WRITE_MODE={}; this run is WRITE_MODE={}: left as it is (rerun with --write-mode {})",
        mode_name(written),
        mode_name(ctx.mode),
        mode_name(written)
    );
    tracing::warn!(key = %key, reason = %why, "spillover object of another write mode");
    ObjectReport {
        status: ObjectStatus::OtherMode,
        records: batch.records.len() as u64,
        error: Some(why),
        ..ObjectReport::failed(&key.to_string(), String::new())
    }
}

/// An orphan is not replayed: it is moved under `quarantine/` or, with
/// `--delete-orphans`, deleted (neither in a dry run).
async fn orphan(ctx: &Ctx<'_>, key: &SpillKey, batch: &SpilledBatch) -> ObjectReport {
    let delete = ctx.options.delete_orphans;
    let mut report = ObjectReport {
        status: if delete { ObjectStatus::Orphaned } else { ObjectStatus::Quarantined },
        records: batch.records.len() as u64,
        error: None,
        ..ObjectReport::failed(&key.to_string(), String::new())
    };
    if ctx.options.dry_run {
        return report;
    }
    // A replay that committed and unlisted the object, then died before the
    // removal, left done work, not an orphan: finish removing it.
    match committed_marker(ctx, key).await {
        Ok(true) => {
            report.status = ObjectStatus::AlreadyCommitted;
            return match remove(ctx, key).await {
                Ok(()) => report,
                Err(e) => ObjectReport::failed(&key.to_string(), chain(&e)),
            };
        }
        Ok(false) => {}
        Err(e) => return ObjectReport::failed(&key.to_string(), chain(&e)),
    }
    let moved = if delete {
        ctx.deps.spill.delete(key).await.map(|()| "deleted".to_string())
    } else {
        ctx.deps.spill.archive(key, QUARANTINE_PREFIX).await
    };
    match moved {
        Ok(to) => {
            tracing::info!(key = %key, to = %to, "orphan spillover object not replayed: its records landed through a retry");
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
