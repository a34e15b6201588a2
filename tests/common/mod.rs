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

#![allow(dead_code, unused_imports)] // each test binary uses its own subset

pub mod moto;

pub use moto::{Moto, moto};

use std::path::{Path, PathBuf};

use anyhow::Context;
use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::pb::storage::big_query_write_client::BigQueryWriteClient;
use kinesis_bigquery::table::TableName;
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

/// `../shared/data/<rel>` beside the checkout (CI lays `shared/` there too).
pub fn shared_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel)
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

/// The table schema of the sample events in `../shared/data` (event_id,
/// type, user_id, ts, tags, lat, lng), from `tests/fixtures/events.schema.json`.
pub fn events_schema() -> anyhow::Result<TableSchema> {
    let json = std::fs::read_to_string(fixture("events.schema.json"))?;
    Ok(emulator::parse_bq_schema(&json)?)
}

/// `../shared/data/kinesis-event-sample.json`: two plain records, one KPL
/// aggregate of 5, one truncated JSON record, one more plain record.
pub fn sample_event() -> anyhow::Result<KinesisEvent> {
    let path = shared_data("kinesis-event-sample.json");
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
