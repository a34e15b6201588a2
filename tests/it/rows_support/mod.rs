//! Shared helpers for the rows round-trip tests: the in-process emulator,
//! the raw tonic client appending encoder output to `_default`, and schema
//! builders.

pub use crate::common::{col, record};
use anyhow::{Context as _, bail};
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::big_query_write_client::BigQueryWriteClient;
use kinesis_bigquery::pb::storage::table_field_schema::{FieldElementType, Mode, Type};
use kinesis_bigquery::pb::storage::{
    AppendRowsRequest, AppendRowsResponse, TableFieldSchema, TableSchema,
};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RecordMeta, RowFormat, UnknownFields};
use kinesis_bigquery::table::TableName;
use serde_json::Value as Json;

pub fn range(name: &str, elem: Type) -> TableFieldSchema {
    TableFieldSchema {
        range_element_type: Some(FieldElementType { r#type: elem as i32 }),
        ..col(name, Type::Range, Mode::Nullable)
    }
}

pub fn table_name() -> TableName {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TableName::new("proj", "ds", &format!("rows_{id}")).unwrap()
}

pub async fn start() -> Emulator {
    emulator::start(EmulatorConfig::default()).await.unwrap()
}

pub fn encoder(schema: &TableSchema, format: RowFormat) -> Encoder {
    Encoder::new(schema, EncoderOptions { format, unknown_fields: UnknownFields::Reject }).unwrap()
}

/// One AppendRows request on a fresh connection to the table's `_default`
/// stream, writer schema included; the single response.
pub async fn append(
    emu: &Emulator,
    table: &TableName,
    enc: &Encoder,
    rows: &[Vec<u8>],
) -> anyhow::Result<AppendRowsResponse> {
    let mut client = BigQueryWriteClient::connect(emu.grpc_endpoint()).await?;
    let rows: Vec<bytes::Bytes> = rows.iter().map(|r| r.clone().into()).collect();
    let stream = table.default_stream();
    let req = AppendRowsRequest {
        write_stream: stream.clone(),
        rows: Some(enc.request_rows(&rows, true)?),
        ..Default::default()
    };
    let mut call = tonic::Request::new(tokio_stream::iter(vec![req]));
    call.metadata_mut().insert("x-goog-request-params", format!("write_stream={stream}").parse()?);
    let mut responses = client.append_rows(call).await?.into_inner();
    responses.message().await?.context("no response")
}

/// Creates a table, encodes the records (all must encode), appends them in
/// one request and reads the table back in the emulator's canonical JSON.
pub async fn roundtrip(
    schema: &TableSchema,
    format: RowFormat,
    records: &[String],
) -> anyhow::Result<Vec<Json>> {
    roundtrip_meta(schema, format, records, &RecordMeta::default()).await
}

pub async fn roundtrip_meta(
    schema: &TableSchema,
    format: RowFormat,
    records: &[String],
    meta: &RecordMeta<'_>,
) -> anyhow::Result<Vec<Json>> {
    let emu = start().await;
    let table = table_name();
    emu.create_table(&table, schema.clone())?;
    let enc = encoder(schema, format);
    let mut rows = Vec::new();
    for r in records {
        let mut out = Vec::new();
        enc.encode(r.as_bytes(), meta, &mut out).with_context(|| format!("encoding {r}"))?;
        rows.push(out);
    }
    let resp = append(&emu, &table, &enc, &rows).await?;
    if resp.response.as_ref().is_some_and(|r| {
        matches!(r, kinesis_bigquery::pb::storage::append_rows_response::Response::Error(_))
    }) || !resp.row_errors.is_empty()
    {
        bail!("append failed: {resp:?}");
    }
    let out = emu.read_rows(&table)?;
    emu.shutdown().await;
    Ok(out)
}
