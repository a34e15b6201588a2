//! One writer side per routed table, opened on first use and kept for the
//! container's life: its schema, encoder and AppendRows connections (one per
//! write stream, in its [`DeliveryDeps`]) are reused by every warm
//! invocation. The gRPC channel, the REST client and the sinks are shared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::create::{CreateError, TableCreator};
use super::extract::Router;
use crate::batch::{BatchLimits, RequestBudget};
use crate::bigquery::{AppenderOptions, Endpoint, RetryPolicy, WriteClient};
use crate::cdc::CdcSettings;
use crate::delivery::{DeliveryDeps, DeliveryMode, EncoderCell};
use crate::dlq::DeadLetterSink;
use crate::evolve::Evolver;
use crate::rows::{Encoder, EncoderOptions};
use crate::spill::SpillSink;
use crate::table::TableName;

/// What every routed table's writer shares (the gRPC channel too, once
/// connected).
#[derive(Clone)]
pub struct SharedParts {
    /// Where the Storage Write API is; connected on first need.
    pub endpoint: Endpoint,
    /// Retries of unary calls (the schema read), within `RETRY_BUDGET_MS`.
    pub retry: RetryPolicy,
    pub mode: DeliveryMode,
    pub spill: Arc<dyn SpillSink>,
    pub dead_letter: Arc<dyn DeadLetterSink>,
    pub options: EncoderOptions,
    /// `WRITE_MODE=cdc`: every table's encoder adds the change columns.
    pub cdc: Option<CdcSettings>,
    pub limits: BatchLimits,
    pub appender: AppenderOptions,
    pub evolve: Option<Arc<Evolver>>,
    /// Kept before the deadline for what follows a failed append (tests).
    pub spill_reserve: Duration,
}

/// Why a table has no writer.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The table does not exist and is not created: its records are dead
    /// letters (`no_such_table`).
    #[error("{0}")]
    NoSuchTable(String),
    /// The table exists but no row can be written to it as configured (its
    /// schema cannot be encoded, or `BATCH_MAX_BYTES` leaves no room for a
    /// row): its records are dead letters (`schema_mismatch`).
    #[error("{0}")]
    Unusable(String),
    /// BigQuery did not answer (in time): the records are spilled raw, as
    /// in an outage of a one-table setup.
    #[error("{0}")]
    Transient(String),
}

/// The routed tables of a container.
pub struct RoutedTables {
    pub router: Router,
    /// `MAX_TABLES`: tables one shard batch writes to.
    pub max_tables: usize,
    /// `CREATE_TABLES=true`.
    pub create: Option<TableCreator>,
    parts: SharedParts,
    client: tokio::sync::OnceCell<WriteClient>,
    open: Mutex<HashMap<TableName, Arc<DeliveryDeps>>>,
}

impl RoutedTables {
    pub fn new(
        router: Router,
        max_tables: usize,
        create: Option<TableCreator>,
        parts: SharedParts,
    ) -> Self {
        let client = tokio::sync::OnceCell::new();
        Self { router, max_tables, create, parts, client, open: Mutex::new(HashMap::new()) }
    }

    pub fn dead_letter(&self) -> &Arc<dyn DeadLetterSink> {
        &self.parts.dead_letter
    }

    pub fn spill(&self) -> &Arc<dyn SpillSink> {
        &self.parts.spill
    }

    pub fn mode(&self) -> &DeliveryMode {
        &self.parts.mode
    }

    /// Tables whose writer is open now.
    pub fn open_tables(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TableName, Arc<DeliveryDeps>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The writer of `table`: the open one, or a new one (reading the
    /// table's schema; creating the table first when it is missing and
    /// `CREATE_TABLES=true`).
    ///
    /// Opening gives up after `budget` (a table that does not answer must
    /// leave time to spill its records); a failure is not remembered, the
    /// next batch tries again.
    ///
    /// # Errors
    /// [`OpenError`] saying what becomes of the table's records.
    pub async fn writer(
        &self,
        table: &TableName,
        budget: Duration,
    ) -> Result<Arc<DeliveryDeps>, OpenError> {
        if let Some(open) = self.lock().get(table) {
            return Ok(Arc::clone(open));
        }
        let fresh = tokio::time::timeout(budget, self.connect(table)).await.map_err(|_| {
            OpenError::Transient(format!("{table}: BigQuery did not answer within {budget:?}"))
        })??;
        let fresh = Arc::new(fresh);
        let mut open = self.lock();
        // Warm writers are bounded: past a few batches' worth of tables,
        // those no invocation holds now are dropped (they reopen on demand).
        if open.len() >= self.max_tables.saturating_mul(4) {
            open.retain(|_, w| Arc::strong_count(w) > 1);
        }
        // Another shard may have opened it meanwhile: keep the first.
        Ok(Arc::clone(open.entry(table.clone()).or_insert(fresh)))
    }

    async fn connect(&self, table: &TableName) -> Result<DeliveryDeps, OpenError> {
        let p = &self.parts;
        let client = self
            .client
            .get_or_try_init(|| async {
                WriteClient::connect(&p.endpoint)
                    .await
                    .map(|c| c.with_unary_retry(p.retry.clone()))
                    .map_err(|e| OpenError::Transient(format!("connecting to BigQuery: {e}")))
            })
            .await?;
        let schema = match client.table_schema(table).await {
            Ok(schema) => schema,
            Err(e) if e.code() == Some(tonic::Code::NotFound) => {
                self.create_missing(table, &e.to_string()).await?;
                client
                    .table_schema(table)
                    .await
                    .map_err(|e| OpenError::Transient(format!("{table} after creating it: {e}")))?
            }
            Err(e) if e.code().is_some_and(permanent) => {
                return Err(OpenError::NoSuchTable(format!("{table}: {e}")));
            }
            Err(e) => return Err(OpenError::Transient(format!("{table}: {e}"))),
        };
        let unusable = |e: String| OpenError::Unusable(format!("{table}: {e}"));
        let mut encoder = Encoder::new(&schema, p.options).map_err(|e| unusable(e.to_string()))?;
        if let Some(cdc) = &p.cdc {
            encoder = encoder.with_cdc(cdc.clone()).map_err(|e| unusable(e.to_string()))?;
        }
        RequestBudget::new(&p.limits, &encoder, table)
            .check()
            .map_err(|e| unusable(e.to_string()))?;
        let mut deps = DeliveryDeps::new(
            client.clone(),
            EncoderCell::new(encoder, p.options),
            p.mode.clone(),
            Arc::clone(&p.spill),
            Arc::clone(&p.dead_letter),
        );
        deps.limits = p.limits;
        deps.appender = p.appender.clone();
        deps.evolve = p.evolve.clone();
        deps.spill_reserve = p.spill_reserve;
        tracing::info!(%table, "routed table opened");
        Ok(deps)
    }

    async fn create_missing(&self, table: &TableName, why: &str) -> Result<(), OpenError> {
        let Some(creator) = &self.create else {
            return Err(OpenError::NoSuchTable(format!("{table} does not exist ({why})")));
        };
        let template = self.router.template();
        let Some(value) = template.value_of(table) else {
            return Err(OpenError::NoSuchTable(format!("{table} is not a table of {template}")));
        };
        creator.create(template, table, value).await.map_err(|e| match e {
            CreateError::Permanent(why) => OpenError::NoSuchTable(why),
            CreateError::Transient(why) => OpenError::Transient(why),
        })
    }
}

/// Answers that stay the same however often the table is asked for. Not
/// PERMISSION_DENIED: a grant still propagating (or fixed later) must not
/// turn a table's records into dead letters; they wait in Kinesis.
fn permanent(code: tonic::Code) -> bool {
    code == tonic::Code::InvalidArgument
}
