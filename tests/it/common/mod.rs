//! The shared integration harness (STYLE.md §6): the local world every
//! integration test runs against — the BigQuery emulator in-process over real
//! gRPC/TCP, and a moto server (S3 + SQS) reached through the real AWS SDK.
//!
//! Each test starts its own emulator (cheap: in-process, port 0, and it must
//! live on the test's own tokio runtime) and makes its own uuid-named tables,
//! buckets and queues, so tests run in parallel. The moto server is shared
//! by the whole run (see [`moto`]).
//!
//! Use from a test file with `mod common;`.

pub mod moto;

pub use moto::{Moto, moto};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_bigquery::batch::BatchLimits;
use kinesis_bigquery::bigquery::{RetryPolicy, WriteClient};
use kinesis_bigquery::delivery::{DeliveryDeps, DeliveryMode, EncoderCell};
use kinesis_bigquery::dlq::FileDeadLetter;
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::big_query_write_client::BigQueryWriteClient;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{TableFieldSchema, TableSchema};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RowFormat, UnknownFields};
use kinesis_bigquery::source::{Position, SequenceNumber, SourceRecord};
use kinesis_bigquery::spill::FileSpill;
use kinesis_bigquery::table::TableName;
use std::sync::Arc;
use tonic::transport::Channel;

/// Project and dataset of every table the harness makes.
pub const PROJECT: &str = "kbq-test";
pub const DATASET: &str = "events";

/// The local world of one test.
pub struct Harness {
    pub emulator: Emulator,
    pub moto: Moto,
}

impl Harness {
    /// Starts an in-process emulator on 127.0.0.1:0 (both ports) and finds
    /// the moto server (`MOTO_ENDPOINT`, or one started from `.venv`).
    ///
    /// # Errors
    /// When the emulator cannot bind or moto is not available (the message
    /// then says to run `scripts/test`).
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(EmulatorConfig::default()).await
    }

    /// As [`Harness::start`], with emulator settings of the test's choosing
    /// (request size limit, idle timeout, tables).
    pub async fn start_with(config: EmulatorConfig) -> anyhow::Result<Self> {
        let moto = moto()?;
        let emulator = emulator::start(config).await.context("starting the emulator")?;
        Ok(Self { emulator, moto })
    }

    /// A new uuid-named table with `schema` in the emulator.
    pub fn new_table(&self, schema: TableSchema) -> anyhow::Result<TableName> {
        let name =
            TableName::new(PROJECT, DATASET, &format!("t_{}", uuid::Uuid::new_v4().simple()))?;
        self.emulator.create_table(&name, schema)?;
        Ok(name)
    }

    /// A new uuid-named table with the schema of the sample events
    /// ([`events_schema`]).
    pub fn new_events_table(&self) -> anyhow::Result<TableName> {
        self.new_table(events_schema()?)
    }

    /// A raw tonic Storage Write client connected to the emulator.
    pub async fn write_client(&self) -> anyhow::Result<BigQueryWriteClient<Channel>> {
        Ok(BigQueryWriteClient::connect(self.emulator.grpc_endpoint()).await?)
    }

    /// A new uuid-named bucket on moto.
    pub async fn new_bucket(&self) -> anyhow::Result<String> {
        self.moto.new_bucket().await
    }

    /// A new uuid-named queue on moto; returns its URL.
    pub async fn new_queue(&self) -> anyhow::Result<String> {
        self.moto.new_queue().await
    }

    pub async fn shutdown(self) {
        self.emulator.shutdown().await;
    }
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// The table schema of the sample events in `tests/fixtures` (event_id,
/// type, user_id, ts, tags, lat, lng), from `tests/fixtures/events.schema.json`.
pub fn events_schema() -> anyhow::Result<TableSchema> {
    let json = std::fs::read_to_string(fixture("events.schema.json"))?;
    Ok(emulator::parse_bq_schema(&json)?)
}

/// `tests/fixtures/kinesis-event-sample.json`: two plain records, one KPL
/// aggregate of 5, one truncated JSON record, one more plain record.
pub fn sample_event() -> anyhow::Result<KinesisEvent> {
    let path = fixture("kinesis-event-sample.json");
    let json = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let event: kinesis_bigquery::source::Event = serde_json::from_str(&json)?;
    Ok(event.into())
}

/// Moto's S3 client (see [`Moto::s3_client`]).
pub fn s3_client() -> anyhow::Result<aws_sdk_s3::Client> {
    Ok(moto()?.s3_client())
}

/// Moto's SQS client.
pub fn sqs_client() -> anyhow::Result<aws_sdk_sqs::Client> {
    Ok(moto()?.sqs_client())
}

/// A new uuid-named bucket on moto.
pub async fn new_bucket() -> anyhow::Result<String> {
    moto()?.new_bucket().await
}

/// A new uuid-named queue on moto; returns its URL.
pub async fn new_queue() -> anyhow::Result<String> {
    moto()?.new_queue().await
}

/// One Kinesis record of `shard` on stream `arn` at sequence number `seq`
/// (sub-sequence 0, partition key `pk`, no arrival time).
pub fn source_record(arn: &str, shard: &str, seq: u64, data: String) -> SourceRecord {
    SourceRecord {
        shard_id: Arc::from(shard),
        stream_arn: Arc::from(arn),
        position: Position {
            sequence_number: SequenceNumber::new(&seq.to_string()).expect("digits"),
            sub_sequence_number: 0,
        },
        event_index: usize::try_from(seq).expect("a small test index"),
        partition_key: Arc::from("pk"),
        explicit_hash_key: None,
        arrival_micros: None,
        data: data.into(),
    }
}

/// A fresh table in `dataset` of a required `key` and a nullable `pad`
/// string: the rows the batching tests size with `pad`.
pub fn key_pad_table(dataset: &str) -> anyhow::Result<(TableName, TableSchema)> {
    let schema = TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("pad", Type::String, Mode::Nullable),
        ],
    };
    let table = TableName::new("p", dataset, &format!("t{}", uuid::Uuid::new_v4().simple()))?;
    Ok((table, schema))
}

/// Delivery to a fresh key/pad table ([`key_pad_table`]) in `dataset`,
/// served by a fresh emulator (refusing requests over `max_request_bytes`,
/// when given): deps of `mode` under `limits`, proto rows, the spillover in
/// `dir/spill` and the dead-letter queue in `dir/dlq.ndjson`.
pub async fn key_pad_delivery(
    dataset: &str,
    mode: DeliveryMode,
    dir: &Path,
    limits: BatchLimits,
    max_request_bytes: Option<usize>,
) -> anyhow::Result<(TableName, Emulator, DeliveryDeps)> {
    let (table, schema) = key_pad_table(dataset)?;
    let mut config =
        EmulatorConfig { tables: vec![(table.clone(), schema.clone())], ..Default::default() };
    if let Some(max) = max_request_bytes {
        config.max_request_bytes = max;
    }
    let emu = emulator::start(config).await?;
    let client = WriteClient::connect(&emu.endpoint()).await?;
    let options =
        EncoderOptions { format: RowFormat::Proto, unknown_fields: UnknownFields::Reject };
    let mut deps = DeliveryDeps::new(
        client,
        EncoderCell::new(Encoder::new(&schema, options)?, options),
        mode,
        Arc::new(FileSpill::new(dir.join("spill"))),
        Arc::new(FileDeadLetter::new(dir.join("dlq.ndjson"))),
    );
    deps.limits = limits;
    Ok((table, emu, deps))
}

/// A column of a table schema.
pub fn col(name: &str, t: Type, mode: Mode) -> TableFieldSchema {
    TableFieldSchema {
        name: name.into(),
        r#type: t as i32,
        mode: mode as i32,
        ..Default::default()
    }
}

/// A RECORD column with `fields`.
pub fn record(name: &str, mode: Mode, fields: Vec<TableFieldSchema>) -> TableFieldSchema {
    TableFieldSchema { fields, ..col(name, Type::Struct, mode) }
}

/// Retries transient failures `max_attempts` times, quickly and without
/// jitter, so tests are fast and deterministic.
pub fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        budget: Duration::from_secs(60),
        max_attempts,
        initial_delay: Duration::from_millis(2),
        throttled_initial_delay: Duration::from_millis(10),
        factor: 2.0,
        max_delay: Duration::from_millis(50),
        jitter: false,
        reserve: Duration::ZERO,
    }
}

/// Waits until the emulator's [`Activity`](kinesis_bigquery::emulator::Activity)
/// counters satisfy `reached` — the way tests wait for the service (a stream
/// released, delayed requests written, an outage seen) instead of sleeping. The
/// 10 s bound only turns "it never happens" into a failure instead of a hang;
/// nothing is asserted about how fast it happens.
pub async fn until_activity(
    emulator: &Emulator,
    reached: impl FnMut(&kinesis_bigquery::emulator::Activity) -> bool,
) -> anyhow::Result<kinesis_bigquery::emulator::Activity> {
    let mut activity = emulator.activity();
    let seen = tokio::time::timeout(Duration::from_secs(10), activity.wait_for(reached))
        .await
        .context("the emulator never reached the awaited activity (10 s)")?
        .context("the emulator stopped")?;
    Ok(*seen)
}
