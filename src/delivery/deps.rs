//! What `deliver` needs, built once per container (cold start) and shared
//! by every invocation: the BigQuery client, the encoder (swapped when the
//! service announces a new table schema), the three seams, and the limits.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::WriteMode;
use super::crash::CrashPoints;
use super::store::StateStore;
use crate::batch::{BatchLimits, writer_schema as writer_schema_of};
use crate::bigquery::{Appender, AppenderOptions, TableSchema, WriteClient};
use crate::dlq::DeadLetterSink;
use crate::rows::{Encoder, EncoderOptions, SchemaError};
use crate::spill::SpillSink;

/// The current encoder, replaced when an AppendRows response carries
/// `updated_schema` (fact sheet §2.6). Invocations take a snapshot; rows
/// encoded with an older snapshot stay valid (schema changes only add
/// NULLABLE columns or relax modes).
pub struct EncoderCell {
    current: RwLock<Arc<Encoder>>,
    options: EncoderOptions,
}

impl EncoderCell {
    pub fn new(encoder: Encoder, options: EncoderOptions) -> Self {
        Self { current: RwLock::new(Arc::new(encoder)), options }
    }

    pub fn snapshot(&self) -> Arc<Encoder> {
        match self.current.read() {
            Ok(e) => Arc::clone(&e),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Builds an encoder for `schema` and makes it current.
    ///
    /// # Errors
    /// The schema cannot be encoded for; the old encoder stays.
    pub fn replace(&self, schema: &TableSchema) -> Result<Arc<Encoder>, SchemaError> {
        let mut fresh = Encoder::new(schema, self.options)?;
        // A CDC encoder stays one: the new schema gets the pseudo-columns too.
        if let Some(cdc) = self.snapshot().cdc() {
            fresh = fresh.with_cdc(cdc.clone())?;
        }
        let fresh = Arc::new(fresh);
        match self.current.write() {
            Ok(mut e) => *e = Arc::clone(&fresh),
            Err(poisoned) => *poisoned.into_inner() = Arc::clone(&fresh),
        }
        Ok(fresh)
    }
}

/// Time `deliver` keeps before its deadline for what follows a failed
/// append (finalize, spill, the state commit) in production: none. The
/// handler's working deadline already ends `DEADLINE_MARGIN_MS` before
/// Lambda's (docs/operations.md, "Retries"), and that one documented,
/// validated variable is the whole reserve; a second, hidden one would make
/// the margin an operator sets lie. Tests with short deadlines set
/// [`DeliveryDeps::spill_reserve`] themselves.
pub const SPILL_RESERVE: Duration = Duration::ZERO;

/// The write mode with what it needs: only exactly-once has a state store,
/// so the stateless modes need no stand-in for one.
#[derive(Clone)]
pub enum DeliveryMode {
    /// One COMMITTED stream per shard; its offsets live in `state`.
    ExactlyOnce { state: Arc<dyn StateStore> },
    /// The `_default` stream, no state.
    AtLeastOnce,
    /// The `_default` stream with change pseudo-columns, no state.
    Cdc,
}

impl DeliveryMode {
    /// `mode`, with `state` where the mode uses one (the stateless modes
    /// drop it).
    pub fn of(mode: WriteMode, state: Arc<dyn StateStore>) -> Self {
        match mode {
            WriteMode::ExactlyOnce => Self::ExactlyOnce { state },
            WriteMode::AtLeastOnce => Self::AtLeastOnce,
            WriteMode::Cdc => Self::Cdc,
        }
    }

    /// The bare mode (recorded in spillover headers).
    pub fn write_mode(&self) -> WriteMode {
        match self {
            Self::ExactlyOnce { .. } => WriteMode::ExactlyOnce,
            Self::AtLeastOnce => WriteMode::AtLeastOnce,
            Self::Cdc => WriteMode::Cdc,
        }
    }
}

/// Everything `deliver` uses. Fields are public so the handler (and tests)
/// build it from `Config`; [`DeliveryDeps::new`] fills the defaults.
pub struct DeliveryDeps {
    pub client: WriteClient,
    pub encoder: EncoderCell,
    pub spill: Arc<dyn SpillSink>,
    pub dlq: Arc<dyn DeadLetterSink>,
    pub mode: DeliveryMode,
    /// Request cutting (`BATCH_MAX_ROWS`, `BATCH_MAX_BYTES` for the whole
    /// request, `BATCH_WINDOW_MS`); a row that alone does not fit a request
    /// ([`crate::batch::RequestBudget`]) is dead-lettered as too large.
    pub limits: BatchLimits,
    pub appender: AppenderOptions,
    /// Time kept before the `deadline` given to `deliver` for what follows
    /// a failed append; [`SPILL_RESERVE`] (none) in production.
    pub spill_reserve: Duration,
    /// Append/resolve rounds per invocation before the rest is spilled: each
    /// round removes at least one record or rotates once, so this bounds a
    /// pathological batch, not a normal one.
    pub max_rounds: usize,
    /// Test hook; `None` in production.
    pub crash: Option<Arc<CrashPoints>>,
    /// Every path encodes the whole batch before the first request instead
    /// of streaming it through the batcher: the baseline
    /// `benches/batching.rs` measures streaming against. `false` in
    /// production.
    pub encode_first: bool,
    /// `UNKNOWN_FIELDS=add`: the schema step run before each shard batch.
    pub evolve: Option<Arc<crate::evolve::Evolver>>,
    /// One appender (one AppendRows connection) per write stream, kept warm
    /// across invocations of this container.
    appenders: tokio::sync::Mutex<HashMap<String, Appender>>,
}

impl DeliveryDeps {
    pub fn new(
        client: WriteClient,
        encoder: EncoderCell,
        mode: DeliveryMode,
        spill: Arc<dyn SpillSink>,
        dlq: Arc<dyn DeadLetterSink>,
    ) -> Self {
        Self {
            client,
            encoder,
            spill,
            dlq,
            mode,
            limits: BatchLimits::default(),
            appender: AppenderOptions::default(),
            spill_reserve: SPILL_RESERVE,
            max_rounds: 64,
            crash: None,
            encode_first: false,
            evolve: None,
            appenders: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The warm appender of `stream`, or a new one.
    pub(crate) async fn take_appender(&self, stream: &str, encoder: &Encoder) -> Appender {
        let cached = self.appenders.lock().await.remove(stream);
        cached.unwrap_or_else(|| {
            Appender::new(
                self.client.clone(),
                stream.to_string(),
                writer_schema_of(encoder),
                self.appender.clone(),
            )
        })
    }

    /// Returns an appender for reuse; when the service announced a new table
    /// schema, swaps the encoder and gives the appender the new writer schema.
    pub(crate) async fn put_appender(&self, mut appender: Appender) {
        if let Some(schema) = appender.updated_schema() {
            match self.encoder.replace(&schema) {
                Ok(fresh) => appender.set_writer_schema(writer_schema_of(&fresh)),
                Err(e) => tracing::warn!(error = %e, "updated table schema cannot be encoded for"),
            }
        }
        let stream = appender.write_stream().to_string();
        self.appenders.lock().await.insert(stream, appender);
    }

    /// Drops every warm connection (a crashed container loses them all).
    pub(crate) async fn forget_appenders(&self) {
        self.appenders.lock().await.clear();
    }

    /// Forgets the appender of a stream that is finalized or abandoned.
    pub(crate) async fn drop_appender(&self, stream: &str) {
        self.appenders.lock().await.remove(stream);
    }
}
