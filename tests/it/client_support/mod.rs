//! Shared pieces of the client tests: an in-process emulator over real TCP, a
//! `WriteClient` pointed at it, and proto rows for `id INT64 REQUIRED, name STRING`.

pub use crate::common::{col, fast_retry};
use std::time::Duration;

use kinesis_bigquery::bigquery::{
    AppendOutcome, AppendRequest, Appender, AppenderOptions, RetryPolicy, WriteClient, write_stream,
};
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::append_rows_request::{ProtoData, Rows};
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{ProtoRows, ProtoSchema, TableSchema};
use kinesis_bigquery::table::TableName;
use prost_types::field_descriptor_proto::{Label, Type as PType};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use tokio::time::Instant;

pub struct World {
    pub emulator: Emulator,
    pub client: WriteClient,
    pub table: TableName,
}

pub async fn world() -> World {
    world_with(EmulatorConfig::default()).await
}

pub async fn world_with(config: EmulatorConfig) -> World {
    let emulator = emulator::start(config).await.unwrap();
    let table = table_name();
    emulator.create_table(&table, schema()).unwrap();
    let config = emulator.endpoint();
    let client = WriteClient::connect(&config).await.unwrap().with_unary_retry(fast_retry(5));
    World { emulator, client, table }
}

impl World {
    pub async fn committed_stream(&self) -> String {
        self.client
            .create_write_stream(&self.table, write_stream::Type::Committed)
            .await
            .unwrap()
            .name
    }

    pub fn appender(&self, stream: &str, options: AppenderOptions) -> Appender {
        Appender::new(self.client.clone(), stream.to_string(), writer_schema(), options)
    }

    /// The `id` column of the visible rows, in write order.
    pub fn ids(&self) -> Vec<i64> {
        self.emulator
            .read_rows(&self.table)
            .unwrap()
            .iter()
            .map(|r| match &r["id"] {
                serde_json::Value::String(s) => s.parse().unwrap(),
                v => v.as_i64().unwrap(),
            })
            .collect()
    }
}

pub fn table_name() -> TableName {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TableName::new("proj", "ds", &format!("t_{id}")).unwrap()
}

/// `id INT64 REQUIRED, name STRING NULLABLE`.
pub fn schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            col("name", Type::String, Mode::Nullable),
        ],
    }
}

fn field(name: &str, number: i32, t: PType) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        r#type: Some(t as i32),
        label: Some(Label::Optional as i32),
        ..Default::default()
    }
}

pub fn writer_schema() -> Rows {
    let descriptor = DescriptorProto {
        name: Some("Row".into()),
        field: vec![field("id", 1, PType::Int64), field("name", 2, PType::String)],
        ..Default::default()
    };
    Rows::ProtoRows(ProtoData {
        writer_schema: Some(ProtoSchema { proto_descriptor: Some(descriptor) }),
        rows: None,
    })
}

pub fn row(id: i64, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::int64::encode(1, &id, &mut out);
    prost::encoding::string::encode(2, &name.to_string(), &mut out);
    out
}

/// A row without the REQUIRED `id`: the service rejects it with a row error.
pub fn bad_row() -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::string::encode(2, &"no id".to_string(), &mut out);
    out
}

pub fn request(offset: Option<i64>, rows: Vec<Vec<u8>>) -> AppendRequest {
    let row_count = rows.len();
    let bytes = rows.iter().map(|r| r.len() + 2).sum::<usize>() + 16;
    AppendRequest {
        offset,
        rows: Rows::ProtoRows(ProtoData {
            writer_schema: None,
            rows: Some(ProtoRows { serialized_rows: rows.into_iter().map(Into::into).collect() }),
        }),
        row_count,
        bytes,
    }
}

/// `n` requests of `per` rows with ids counting from `first`, offsets from `first`
/// when `offsets`.
pub fn requests(first: i64, n: usize, per: usize, offsets: bool) -> Vec<AppendRequest> {
    (0..n)
        .map(|k| {
            let start = first + (k * per) as i64;
            let rows = (start..start + per as i64).map(|id| row(id, "x")).collect();
            request(offsets.then_some(start), rows)
        })
        .collect()
}

pub fn options(max_inflight_requests: usize, retry: RetryPolicy) -> AppenderOptions {
    AppenderOptions { max_inflight_requests, max_inflight_bytes: 64 * 1024 * 1024, retry }
}

pub fn in_secs(s: u64) -> Instant {
    Instant::now() + Duration::from_secs(s)
}

/// A compact view of outcomes for assertions: "ok", "exists", "rows", "failed", "doubt", "notsent".
pub fn kinds(outcomes: &[AppendOutcome]) -> Vec<&'static str> {
    outcomes
        .iter()
        .map(|o| match o {
            AppendOutcome::Appended { .. } => "ok",
            AppendOutcome::AlreadyExists => "exists",
            AppendOutcome::RowErrors(_) => "rows",
            AppendOutcome::Failed(_) => "failed",
            AppendOutcome::InDoubt(_) => "doubt",
            AppendOutcome::NotSent => "notsent",
        })
        .collect()
}
