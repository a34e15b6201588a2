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
//! If the columns are not visible before the deadline (minus the spill
//! reserve) the batch is handed back to Kinesis whole — nothing is
//! dead-lettered or dropped — and the retry finds the columns in place and
//! waits again. A crash at any step leaves only the table's schema changed,
//! which every later step re-reads: the retry converges.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::columns::add_columns;
use super::infer::{covers, widen};
use crate::bigquery::{RpcError, TablesClient, TablesError};
use crate::delivery::{Boundary, DeliveryDeps, ShardBatch};
use crate::pb::storage::TableSchema;
use crate::rows::{RecordMeta, RowErrorKind, SchemaError};

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
    /// From the first refused record to the new encoder in place.
    pub waited: Duration,
}

impl Evolver {
    pub fn new(tables: TablesClient) -> Arc<Self> {
        Arc::new(Self { tables })
    }

    /// Runs the schema step for `batch` (see the module doc).
    ///
    /// # Errors
    /// [`EvolveError`]; the caller hands the batch back to Kinesis.
    pub async fn prepare(
        &self,
        batch: &ShardBatch<'_>,
        deps: &DeliveryDeps,
        deadline: Instant,
    ) -> Result<EvolveReport, EvolveError> {
        let started = Instant::now();
        let encoder = deps.encoder.snapshot();
        let mut refused = Vec::new();
        let mut scratch = Vec::new();
        for record in batch.records.iter().flatten() {
            scratch.clear();
            if let Err(e) = encoder.encode(&record.data, &RecordMeta::from(record), &mut scratch)
                && e.kind == RowErrorKind::UnknownField
            {
                refused.push(record);
            }
        }
        if refused.is_empty() {
            return Ok(EvolveReport::default());
        }
        let visible =
            deps.client.table_schema(batch.table).await.map_err(EvolveError::WriterSchema)?;
        let mut wanted = visible.fields.clone();
        for record in &refused {
            // Not an object (or not JSON): the encoder dead-letters it later.
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice(&record.data) {
                widen(&mut wanted, &o);
            }
        }
        let hook = deps.crash.as_deref();
        let crash = |b| {
            crate::delivery::crash::pass(hook, b).map_err(|c| EvolveError::Crashed(c.to_string()))
        };
        if wanted != visible.fields {
            crash(Boundary::BeforeSchemaPatch)?;
            add_columns(&self.tables, batch.table, &wanted, None)
                .await
                .map_err(EvolveError::Patch)?;
            crash(Boundary::AfterSchemaPatch)?;
        }
        let before = count(&visible.fields);
        let schema = wait_visible(deps, batch, &wanted, visible, deadline).await?;
        crash(Boundary::AfterSchemaVisible)?;
        let added = count(&schema.fields).saturating_sub(before);
        swap_encoder(deps, &schema).await?;
        let report = EvolveReport { waiting: refused.len(), added, waited: started.elapsed() };
        tracing::info!(
            shard_id = batch.shard_id,
            waiting = report.waiting,
            waited_ms = report.waited.as_millis() as u64,
            "records waited for new columns"
        );
        Ok(report)
    }
}

/// Polls the writers' schema until it holds `wanted`, with backoff, until
/// the deadline less the spill reserve.
async fn wait_visible(
    deps: &DeliveryDeps,
    batch: &ShardBatch<'_>,
    wanted: &[crate::pb::storage::TableFieldSchema],
    mut visible: TableSchema,
    deadline: Instant,
) -> Result<TableSchema, EvolveError> {
    let give_up = deadline.checked_sub(deps.spill_reserve).unwrap_or(deadline);
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
