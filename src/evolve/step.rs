//! The schema step of one shard batch under `UNKNOWN_FIELDS=add`, run
//! before the batch is mapped to offsets (so the exactly-once mapping only
//! ever sees a schema that is final for the batch):
//!
//! 1. encode each record with the current encoder; only records refused for
//!    an unknown field go further (the common batch costs one encode more);
//! 2. infer their new columns ([`super::infer`]) on top of the schema
//!    writers see now;
//! 3. `tables.patch` them in, guarded by the etag ([`super::columns`]);
//! 4. wait until the Storage Write API sees them (the schema
//!    `GetWriteStream` reports, which is what AppendRows then validates and
//!    announces as `updated_schema`), polling with backoff;
//! 5. swap the shared encoder for one of the new schema and drop the warm
//!    connections, whose writer schema is the old one.
//!
//! The wait takes at most half the time left to the working deadline (less
//! the spill reserve), so the other records are still delivered in time. If
//! the columns are not visible by then (or the patch failed), the records
//! that need them are reported as [`EvolveReport::awaiting`]: exactly-once
//! delivery takes them out of the mapping (a persisted exclusion, like any
//! refused record) and spills them as `awaiting_columns` instead of
//! dead-lettering them; the backfill writes them once the columns are
//! visible. Nothing is dead-lettered or dropped for a column in flight. A
//! crash at any step leaves only the table's schema changed, which every
//! later step re-reads: the retry converges.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::columns::add_columns;
use super::infer::{covers, widen};
use crate::bigquery::{RpcError, TablesClient, TablesError};
use crate::delivery::{Boundary, DeliveryDeps, ShardBatch};
use crate::pb::storage::TableSchema;
use crate::rows::{Encoder, RecordMeta, RowErrorKind, SchemaError};
use crate::source::SourceRecord;

/// First and longest pause between visibility checks.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_secs(2);

/// Why a batch cannot be delivered yet.
#[derive(Debug, thiserror::Error)]
pub enum EvolveError {
    #[error("cannot read the writers' table schema")]
    WriterSchema(#[source] RpcError),
    #[error("cannot add the columns")]
    Patch(#[source] TablesError),
    #[error("new columns not visible to writers before the deadline")]
    NotVisible,
    #[error("the extended schema cannot be encoded for")]
    Encoder(#[source] SchemaError),
    #[error("{0}")]
    Crashed(String),
}

/// `UNKNOWN_FIELDS=add`: the REST client and what the wait may cost.
#[derive(Clone, Debug)]
pub struct Evolver {
    pub tables: TablesClient,
}

/// What one schema step did (for logs and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvolveReport {
    /// Records refused for an unknown field by the encoder of the time.
    pub waiting: usize,
    /// Columns the writers' schema gained (0: none were needed or addable).
    pub added: usize,
    /// From the first refused record to the new encoder in place (or to
    /// the end of the wait).
    pub waited: Duration,
    /// Batch indexes (ascending) of records that need columns the writers
    /// did not see before the wait ended: delivery spills them.
    pub awaiting: Vec<usize>,
}

impl Evolver {
    pub fn new(tables: TablesClient) -> Arc<Self> {
        Arc::new(Self { tables })
    }

    /// Runs the schema step for `batch` (see the module doc).
    ///
    /// # Errors
    /// [`EvolveError`] when the writers' schema cannot be read, the new
    /// encoder cannot be built, or at a test crash point; the caller hands
    /// the batch back to Kinesis. Columns not visible in time (or a failed
    /// patch) are not an error: see [`EvolveReport::awaiting`].
    pub async fn prepare(
        &self,
        batch: &ShardBatch<'_>,
        deps: &DeliveryDeps,
        deadline: Instant,
    ) -> Result<EvolveReport, EvolveError> {
        let started = Instant::now();
        let encoder = deps.encoder.snapshot();
        let mut refused: Vec<(usize, &SourceRecord)> = Vec::new();
        let mut scratch = Vec::new();
        for (index, record) in batch.records.iter().enumerate() {
            let Ok(record) = record else { continue };
            scratch.clear();
            if let Err(e) = encoder.encode(&record.data, &RecordMeta::from(record), &mut scratch)
                && e.kind == RowErrorKind::UnknownField
            {
                refused.push((index, record));
            }
        }
        if refused.is_empty() {
            return Ok(EvolveReport::default());
        }
        let visible =
            deps.client.table_schema(batch.table).await.map_err(EvolveError::WriterSchema)?;
        let mut wanted = visible.fields.clone();
        for (_, record) in &refused {
            // Not an object (or not JSON): the encoder dead-letters it later.
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(&record.data) {
                widen(&mut wanted, &o);
            }
        }
        let hook = deps.crash.as_deref();
        let crash = |b| {
            crate::delivery::crash::pass(hook, b).map_err(|c| EvolveError::Crashed(c.to_string()))
        };
        let pending = |why: &EvolveError| {
            let awaiting = awaiting(&refused, &wanted, &encoder)?;
            tracing::warn!(
                shard_id = batch.shard_id,
                awaiting = awaiting.len(),
                reason = %why,
                "records wait for new columns in the spillover"
            );
            Ok(EvolveReport {
                waiting: refused.len(),
                added: 0,
                waited: started.elapsed(),
                awaiting,
            })
        };
        if wanted != visible.fields {
            crash(Boundary::BeforeSchemaPatch)?;
            if let Err(e) = add_columns(&self.tables, batch.table, &wanted, None).await {
                // Handing the batch back would stall the shard as long as the
                // patch fails; the records that need the columns wait in the
                // spillover instead and the rest of the batch goes on.
                tracing::error!(table = %batch.table, error = %e, "cannot add the new columns");
                return pending(&EvolveError::Patch(e));
            }
            crash(Boundary::AfterSchemaPatch)?;
        }
        let before = count(&visible.fields);
        let give_up = wait_ends(started, deadline, deps.spill_reserve);
        let schema = match wait_visible(deps, batch, &wanted, visible, give_up).await {
            Err(EvolveError::NotVisible) => return pending(&EvolveError::NotVisible),
            other => other?,
        };
        crash(Boundary::AfterSchemaVisible)?;
        let added = count(&schema.fields).saturating_sub(before);
        swap_encoder(deps, &schema).await?;
        let report = EvolveReport {
            waiting: refused.len(),
            added,
            waited: started.elapsed(),
            awaiting: Vec::new(),
        };
        tracing::info!(
            shard_id = batch.shard_id,
            waiting = report.waiting,
            waited_ms = report.waited.as_millis() as u64,
            "records waited for new columns"
        );
        Ok(report)
    }
}

/// When the wait for visibility gives up: halfway from `now` to the
/// working deadline less the spill reserve, so the rest of the batch keeps
/// the other half for its appends, spills and state writes.
fn wait_ends(now: Instant, deadline: Instant, reserve: Duration) -> Instant {
    let work_ends = deadline.checked_sub(reserve).unwrap_or(deadline);
    now + work_ends.saturating_duration_since(now) / 2
}

/// The refused records (batch index, record) that the `wanted` schema
/// takes: they wait for its columns. The others are refused under any
/// schema this step can make (a field no column can be inferred for) and
/// stay dead letters.
fn awaiting(
    refused: &[(usize, &SourceRecord)],
    wanted: &[crate::pb::storage::TableFieldSchema],
    current: &Encoder,
) -> Result<Vec<usize>, EvolveError> {
    let schema = TableSchema { fields: wanted.to_vec() };
    let mut future = Encoder::new(&schema, current.options()).map_err(EvolveError::Encoder)?;
    if let Some(cdc) = current.cdc() {
        future = future.with_cdc(cdc.clone()).map_err(EvolveError::Encoder)?;
    }
    let mut scratch = Vec::new();
    Ok(refused
        .iter()
        .filter(|(_, record)| {
            scratch.clear();
            future.encode(&record.data, &RecordMeta::from(*record), &mut scratch).is_ok()
        })
        .map(|(index, _)| *index)
        .collect())
}

/// Polls the writers' schema until it holds `wanted`, with backoff, until
/// `give_up`.
async fn wait_visible(
    deps: &DeliveryDeps,
    batch: &ShardBatch<'_>,
    wanted: &[crate::pb::storage::TableFieldSchema],
    mut visible: TableSchema,
    give_up: Instant,
) -> Result<TableSchema, EvolveError> {
    let mut pause = POLL_FIRST;
    loop {
        if covers(&visible.fields, wanted) {
            return Ok(visible);
        }
        if Instant::now() + pause > give_up {
            return Err(EvolveError::NotVisible);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(POLL_MAX);
        visible = deps.client.table_schema(batch.table).await.map_err(EvolveError::WriterSchema)?;
    }
}

fn count(fields: &[crate::pb::storage::TableFieldSchema]) -> usize {
    fields.iter().map(|f| 1 + count(&f.fields)).sum()
}

/// Makes `schema` the encoder's, and drops warm connections that would
/// keep sending the old writer schema.
async fn swap_encoder(deps: &DeliveryDeps, schema: &TableSchema) -> Result<(), EvolveError> {
    let before = deps.encoder.snapshot();
    let fresh = deps.encoder.replace(schema).map_err(EvolveError::Encoder)?;
    if fresh.proto_descriptor_bytes() != before.proto_descriptor_bytes() {
        deps.forget_appenders().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_takes_half_the_time_left_after_the_reserve() {
        let now = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(wait_ends(now, now + s(10), s(2)), now + s(4));
        assert_eq!(wait_ends(now, now + s(10), Duration::ZERO), now + s(5));
        // No time left: give up at once, never before now.
        assert_eq!(wait_ends(now, now + s(1), s(2)), now);
    }
}
