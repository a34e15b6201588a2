//! [`Deps`]: everything an invocation uses, kept per container and reused by
//! every invocation — the AWS clients behind the sinks (opened at cold
//! start), and the BigQuery side (gRPC channel, table schema, encoder) in a
//! [`LazyWriter`] that a cold start tries once and every invocation retries
//! until it is built, so an outage never fails an invocation (issue 12,
//! scenario 4).

use crate::batch::{BatchError, BatchLimits, RequestBudget};
use crate::bigquery::{
    AppenderOptions, ClientError, RpcError, TablesClient, TablesError, WriteClient,
};
use crate::config::{Config, Delivery};
use crate::delivery::store::{self, StoreError};
use crate::delivery::{DeliveryDeps, DeliveryMode, EncoderCell, WriteMode};
use crate::dlq::{self, DeadLetterSink, DlqError};
use crate::metrics::LogOutput;
use crate::pb::storage::TableSchema;
use crate::route::RoutedTables;
use crate::rows::{Encoder, EncoderOptions, SchemaError, UnknownFields};
use crate::sink_url::SinkUrl;
use crate::spill::{self, SpillError, SpillSink};
use crate::table::TableName;
use std::sync::Arc;
use std::time::Duration;

use super::lazy_writer::{CONNECT_BUDGET_CAP, LazyWriter};

/// Why the process cannot start serving.
#[derive(Debug, thiserror::Error)]
pub enum DepsError {
    #[error("cannot connect to the Storage Write API")]
    Connect(#[from] ClientError),
    #[error("cannot read the table schema")]
    Schema(#[from] RpcError),
    #[error("BigQuery REST API")]
    Tables(#[from] TablesError),
    #[error("the table schema cannot be encoded")]
    Encoder(#[from] SchemaError),
    #[error("state store")]
    State(#[from] StoreError),
    #[error("spillover")]
    Spill(#[from] SpillError),
    #[error("dead-letter queue")]
    DeadLetter(#[from] DlqError),
    #[error("request size")]
    Batch(#[from] BatchError),
    #[error("BigQuery did not answer within {0:?}")]
    Timeout(Duration),
    /// `BIGQUERY_TABLE` is a template: no one table to connect to; each
    /// routed table is opened when a record first names it.
    #[error("BIGQUERY_TABLE {0} is a template: tables are opened as records name them")]
    Routed(String),
}

impl DepsError {
    /// Whether the failure is BigQuery (or its credentials) being out of
    /// reach — an outage the invocation rides out by spilling — rather than
    /// a configuration no retry can fix (the table's schema cannot be
    /// encoded for, `BATCH_MAX_BYTES` leaves no room for rows, a sink URL).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Schema(_) | Self::Tables(_) | Self::Timeout(_))
    }
}

/// The batch limits of `config`, checked against the table's own request
/// overhead: `BATCH_MAX_BYTES` must leave room for rows after the stream
/// name, writer schema and envelope.
///
/// # Errors
/// [`BatchError::NoRoomForRows`], naming `BATCH_MAX_BYTES`.
pub fn batch_limits(
    config: &Config,
    encoder: &Encoder,
    table: &TableName,
) -> Result<BatchLimits, BatchError> {
    RequestBudget::new(&config.batch, encoder, table).check()?;
    Ok(config.batch)
}

/// The BigQuery side: a connected client, the live schema, its encoder.
pub struct WriterSide {
    /// The one table (`BIGQUERY_TABLE`).
    pub table: TableName,
    pub client: WriteClient,
    /// The REST tables API, only with `UNKNOWN_FIELDS=add` (it patches the
    /// schema): other setups never load REST credentials.
    pub tables: Option<TablesClient>,
    pub schema: TableSchema,
    pub encoder: Encoder,
    pub options: EncoderOptions,
}

impl WriterSide {
    /// Connects (TLS + Application Default Credentials for `https://`,
    /// plain and unauthenticated for `http://`, i.e. the emulator), reads the
    /// table schema and builds the encoder.
    ///
    /// # Errors
    /// [`DepsError::Connect`], [`DepsError::Schema`] or [`DepsError::Encoder`];
    /// [`DepsError::Routed`] for a templated `BIGQUERY_TABLE`.
    pub async fn connect(config: &Config) -> Result<Self, DepsError> {
        let table =
            config.table.fixed().ok_or_else(|| DepsError::Routed(config.table.to_string()))?;
        let client =
            WriteClient::connect(&config.endpoint).await?.with_unary_retry(config.retry.clone());
        let schema = client.table_schema(table).await?;
        let tables = match config.unknown_fields {
            UnknownFields::Add => Some(TablesClient::new(&config.rest_endpoint)?),
            _ => None,
        };
        let options =
            EncoderOptions { format: config.row_format, unknown_fields: config.unknown_fields };
        let mut encoder = Encoder::new(&schema, options)?;
        if config.write_mode() == WriteMode::Cdc {
            encoder = encoder.with_cdc(config.cdc.clone())?;
        }
        Ok(Self { table: table.clone(), client, tables, schema, encoder, options })
    }

    /// "7 columns: a STRING, ...": what `check` prints.
    pub fn describe(&self) -> String {
        /// Enough to recognise the table; a wide one is not printed whole.
        const SHOWN: usize = 20;
        let fields = &self.schema.fields;
        let mut columns: Vec<String> = fields
            .iter()
            .take(SHOWN)
            .map(|f| format!("{} {}", f.name, f.r#type().as_str_name()))
            .collect();
        if fields.len() > SHOWN {
            columns.push(format!("… and {} more", fields.len() - SHOWN));
        }
        format!("{} columns: {}", fields.len(), columns.join(", "))
    }
}

/// The three seams, opened from their URLs (STYLE.md §5).
#[derive(Clone)]
pub struct Sinks {
    /// The write mode with its opened state store (exactly-once only).
    pub mode: DeliveryMode,
    pub spill: Arc<dyn SpillSink>,
    pub dead_letter: Arc<dyn DeadLetterSink>,
}

impl Sinks {
    /// Opens every configured sink. AWS configuration (credentials chain,
    /// region, `AWS_ENDPOINT_URL_*`) is loaded only when a sink is on AWS:
    /// a `file://`-only setup starts without touching it.
    ///
    /// # Errors
    /// The first sink that cannot be opened.
    pub async fn open(config: &Config) -> Result<Self, DepsError> {
        Self::open_with(config, &aws_config(config).await)
    }

    /// As [`Sinks::open`], with an AWS configuration of the caller's (tests
    /// pointing at a local S3/SQS).
    ///
    /// # Errors
    /// The first sink that cannot be opened.
    pub fn open_with(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, DepsError> {
        let mode = match &config.delivery {
            Delivery::ExactlyOnce { state } => {
                DeliveryMode::ExactlyOnce { state: store::open(state, aws)? }
            }
            Delivery::AtLeastOnce => DeliveryMode::AtLeastOnce,
            Delivery::Cdc => DeliveryMode::Cdc,
        };
        let spill = spill::open(&config.spill, aws)?;
        // Letters too large for an SQS message carry a pointer to their bytes
        // in the spillover bucket instead; the payload store adds its own
        // `dead-letter-payloads/` prefix, as the backfill's does.
        let payloads = match &config.spill {
            url @ SinkUrl::S3 { .. } => Some(url.clone()),
            _ => None,
        };
        let dead_letter = dlq::open(&config.dead_letter, payloads.as_ref(), aws)?;
        Ok(Self { mode, spill, dead_letter })
    }
}

/// The AWS configuration the sinks (and an `s3://` schema URL) need; a
/// `file://`-only setup never loads it.
pub async fn aws_config(config: &Config) -> aws_config::SdkConfig {
    let on_aws = |u: &SinkUrl| !matches!(u, SinkUrl::File { .. });
    let needed = config.state().is_some_and(on_aws)
        || on_aws(&config.spill)
        || on_aws(&config.dead_letter)
        || config.routing.create.as_ref().is_some_and(|u| u.is_s3());
    if needed {
        aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
    } else {
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }
}

/// Everything one invocation needs.
pub struct Deps {
    pub config: Config,
    /// The BigQuery side with the sinks, once connected; the sinks alone
    /// serve invocations until then.
    pub writer: LazyWriter,
    /// With a templated `BIGQUERY_TABLE`: one writer per table, opened as
    /// records name them (`writer` then never connects).
    pub routes: Option<RoutedTables>,
    /// Where EMF lines go (stdout under Lambda, stderr for the CLI).
    pub output: LogOutput,
    /// The time limit of an invocation without a Lambda deadline (`invoke`).
    pub local_timeout: Duration,
}

impl Deps {
    /// Opens the sinks and tries once (within [`CONNECT_BUDGET_CAP`]) to
    /// build the writer side. BigQuery out of reach is not an error: the
    /// invocations spill raw and retry the connection.
    ///
    /// # Errors
    /// A sink that cannot be opened, or a configuration the table's schema
    /// refuses (its encoder, `BATCH_MAX_BYTES`).
    pub async fn build(config: &Config, output: LogOutput) -> Result<Self, DepsError> {
        let aws = aws_config(config).await;
        let sinks = Sinks::open_with(config, &aws)?;
        Self::connect_once(config, output, sinks, &aws).await
    }

    /// As [`Deps::build`], with an AWS configuration of the caller's (tests
    /// and benchmarks pointing at a local S3/SQS).
    ///
    /// # Errors
    /// As [`Deps::build`].
    pub async fn build_with_aws(
        config: &Config,
        output: LogOutput,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, DepsError> {
        let sinks = Sinks::open_with(config, aws)?;
        Self::connect_once(config, output, sinks, aws).await
    }

    async fn connect_once(
        config: &Config,
        output: LogOutput,
        sinks: Sinks,
        aws: &aws_config::SdkConfig,
    ) -> Result<Self, DepsError> {
        let routes = super::routed::routed_tables(config, &sinks, aws)?;
        let routed = routes.is_some();
        let deps = Self {
            config: config.clone(),
            writer: LazyWriter::new(sinks),
            routes,
            output,
            local_timeout: Duration::from_secs(900),
        };
        if routed {
            return Ok(deps);
        }
        match deps.writer.get_or_connect(config, CONNECT_BUDGET_CAP).await {
            Ok(_) => {}
            Err(e) if e.is_unreachable() => tracing::warn!(
                error = %crate::check::error_chain(&e),
                "BigQuery is out of reach at cold start: invocations spill raw until it answers"
            ),
            Err(e) => return Err(e),
        }
        Ok(deps)
    }

    /// The connected delivery, if BigQuery has been reached.
    pub fn delivery(&self) -> Option<&DeliveryDeps> {
        self.writer.get()
    }

    /// As [`Deps::delivery`], to adjust settings (tests, benchmarks).
    pub fn delivery_mut(&mut self) -> Option<&mut DeliveryDeps> {
        self.writer.get_mut()
    }
}

/// The delivery of a connected writer side over `sinks`, tuned by `config`.
pub(crate) fn delivery_deps(config: &Config, writer: WriterSide, sinks: Sinks) -> DeliveryDeps {
    let mut delivery = DeliveryDeps::new(
        writer.client,
        EncoderCell::new(writer.encoder, writer.options),
        sinks.mode,
        sinks.spill,
        sinks.dead_letter,
    );
    delivery.evolve = writer.tables.map(crate::evolve::Evolver::new);
    delivery.limits = config.batch;
    delivery.appender = AppenderOptions {
        max_inflight_requests: config.max_inflight_requests,
        max_inflight_bytes: config.max_inflight_bytes,
        retry: config.retry.clone(),
    };
    delivery
}
