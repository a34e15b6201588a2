//! Shared helpers for the emulator's integration tests: a real tonic client
//! over TCP, hand-built proto2 descriptors and rows encoded on the wire.

pub use crate::common::{col, record};
use std::time::Duration;

use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::append_rows_request::{ProtoData, Rows};
use kinesis_bigquery::pb::storage::big_query_write_client::BigQueryWriteClient;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::*;
use kinesis_bigquery::table::TableName;
use prost_types::field_descriptor_proto::{Label, Type as PType};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

pub type Client = BigQueryWriteClient<Channel>;

pub async fn start() -> Emulator {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(config: EmulatorConfig) -> Emulator {
    emulator::start(config).await.unwrap()
}

pub async fn client(emu: &Emulator) -> Client {
    BigQueryWriteClient::connect(emu.grpc_endpoint()).await.unwrap()
}

/// A fresh, uniquely named table.
pub fn table_name() -> TableName {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TableName::new("proj", "ds", &format!("t_{id}")).unwrap()
}

/// `id INT64 REQUIRED, name STRING NULLABLE`.
pub fn simple_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            col("name", Type::String, Mode::Nullable),
        ],
    }
}

pub fn pfield(name: &str, number: i32, t: PType, label: Label) -> FieldDescriptorProto {
    FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        r#type: Some(t as i32),
        label: Some(label as i32),
        ..Default::default()
    }
}

pub fn pmsg_field(name: &str, number: i32, type_name: &str, label: Label) -> FieldDescriptorProto {
    FieldDescriptorProto {
        type_name: Some(type_name.into()),
        ..pfield(name, number, PType::Message, label)
    }
}

pub fn message(name: &str, fields: Vec<FieldDescriptorProto>) -> DescriptorProto {
    DescriptorProto { name: Some(name.into()), field: fields, ..Default::default() }
}

/// proto2 `Row { optional int64 id = 1; optional string name = 2; }`.
pub fn simple_descriptor() -> DescriptorProto {
    message(
        "Row",
        vec![
            pfield("id", 1, PType::Int64, Label::Optional),
            pfield("name", 2, PType::String, Label::Optional),
        ],
    )
}

/// Wire encoding of one row, field by field.
#[derive(Default, Clone)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn int64(mut self, tag: u32, v: i64) -> Self {
        prost::encoding::int64::encode(tag, &v, &mut self.0);
        self
    }
    pub fn int32(mut self, tag: u32, v: i32) -> Self {
        prost::encoding::int32::encode(tag, &v, &mut self.0);
        self
    }
    pub fn double(mut self, tag: u32, v: f64) -> Self {
        prost::encoding::double::encode(tag, &v, &mut self.0);
        self
    }
    pub fn boolean(mut self, tag: u32, v: bool) -> Self {
        prost::encoding::bool::encode(tag, &v, &mut self.0);
        self
    }
    pub fn string(mut self, tag: u32, v: &str) -> Self {
        prost::encoding::string::encode(tag, &v.to_string(), &mut self.0);
        self
    }
    pub fn bytes(mut self, tag: u32, v: &[u8]) -> Self {
        prost::encoding::bytes::encode(tag, &v.to_vec(), &mut self.0);
        self
    }
    pub fn message(self, tag: u32, inner: Enc) -> Self {
        self.bytes(tag, &inner.0)
    }
    pub fn done(self) -> Vec<u8> {
        self.0
    }
}

pub fn row(id: i64, name: &str) -> Vec<u8> {
    Enc::new().int64(1, id).string(2, name).done()
}

/// An AppendRows request with proto rows (schema included when given).
pub fn request(
    stream: &str,
    schema: Option<&DescriptorProto>,
    offset: Option<i64>,
    rows: Vec<Vec<u8>>,
) -> AppendRowsRequest {
    AppendRowsRequest {
        write_stream: stream.into(),
        offset,
        rows: Some(Rows::ProtoRows(ProtoData {
            writer_schema: schema.map(|d| ProtoSchema { proto_descriptor: Some(d.clone()) }),
            rows: Some(ProtoRows { serialized_rows: rows.into_iter().map(Into::into).collect() }),
        })),
        ..Default::default()
    }
}

/// One open AppendRows connection: send requests, read responses in order.
pub struct Conn {
    pub tx: mpsc::Sender<AppendRowsRequest>,
    pub rx: tonic::Streaming<AppendRowsResponse>,
}

impl Conn {
    /// Opens a connection with `x-goog-request-params: write_stream=<stream>`.
    pub async fn open(client: &mut Client, stream: &str) -> Result<Conn, tonic::Status> {
        Self::open_with_routing(client, Some(&format!("write_stream={stream}"))).await
    }

    pub async fn open_with_routing(
        client: &mut Client,
        routing: Option<&str>,
    ) -> Result<Conn, tonic::Status> {
        let (tx, rx) = mpsc::channel(64);
        let mut req = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(r) = routing {
            req.metadata_mut().insert("x-goog-request-params", r.parse().unwrap());
        }
        let rx = client.append_rows(req).await?.into_inner();
        Ok(Conn { tx, rx })
    }

    pub async fn send(&self, req: AppendRowsRequest) {
        self.tx.send(req).await.unwrap();
    }

    /// The next response, or the status that ended the connection.
    pub async fn next(&mut self) -> Result<AppendRowsResponse, tonic::Status> {
        match tokio::time::timeout(Duration::from_secs(10), self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => Err(tonic::Status::cancelled("stream ended without status")),
            Ok(Err(s)) => Err(s),
            Err(_) => panic!("no response within 10 s"),
        }
    }

    pub async fn append(
        &mut self,
        req: AppendRowsRequest,
    ) -> Result<AppendRowsResponse, tonic::Status> {
        self.send(req).await;
        self.next().await
    }
}

/// The offset an append landed at, or the in-stream error code.
pub fn outcome(r: &AppendRowsResponse) -> Result<Option<i64>, (tonic::Code, String)> {
    use append_rows_response::Response;
    match &r.response {
        Some(Response::AppendResult(a)) => Ok(a.offset),
        Some(Response::Error(s)) => Err((tonic::Code::from_i32(s.code), s.message.clone())),
        None => Err((tonic::Code::Unknown, "empty response".into())),
    }
}

pub fn storage_code(r: &AppendRowsResponse) -> Option<storage_error::StorageErrorCode> {
    match &r.response {
        Some(append_rows_response::Response::Error(s)) => emulator::storage_error_in(s)
            .and_then(|e| storage_error::StorageErrorCode::try_from(e.code).ok()),
        _ => None,
    }
}

pub async fn create_stream(client: &mut Client, t: &TableName, kind: write_stream::Type) -> String {
    client
        .create_write_stream(CreateWriteStreamRequest {
            parent: t.path(),
            write_stream: Some(WriteStream { r#type: kind as i32, ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

pub fn ids(rows: &[serde_json::Value]) -> Vec<String> {
    rows.iter().map(|r| r["id"].as_str().unwrap_or("?").to_string()).collect()
}

/// AppendRowsRequest with the writer's DescriptorProto as raw bytes, to send
/// descriptors whose field options prost_types would drop (`column_name`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawRequest {
    #[prost(string, tag = "1")]
    pub write_stream: String,
    #[prost(message, optional, tag = "4")]
    pub proto_rows: Option<RawProtoData>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawProtoData {
    #[prost(message, optional, tag = "1")]
    pub writer_schema: Option<RawSchema>,
    #[prost(message, optional, tag = "2")]
    pub rows: Option<ProtoRows>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawSchema {
    #[prost(bytes = "vec", tag = "1")]
    pub proto_descriptor: Vec<u8>,
}

/// A field's descriptor bytes with `[(google.cloud.bigquery.storage.v1.column_name) = column]`.
pub fn field_with_column_name(f: &FieldDescriptorProto, column: &str) -> Vec<u8> {
    let mut bytes = prost::Message::encode_to_vec(f);
    let mut options = Vec::new();
    prost::encoding::string::encode(454_943_157, &column.to_string(), &mut options);
    prost::encoding::bytes::encode(8, &options, &mut bytes);
    bytes
}

/// DescriptorProto bytes from a name and raw field descriptors.
pub fn descriptor_bytes(name: &str, fields: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    prost::encoding::string::encode(1, &name.to_string(), &mut out);
    for f in fields {
        prost::encoding::bytes::encode(2, f, &mut out);
    }
    out
}

/// Sends raw requests on one AppendRows call and collects one response each.
pub async fn raw_append(
    emu: &Emulator,
    reqs: Vec<RawRequest>,
) -> Vec<Result<AppendRowsResponse, tonic::Status>> {
    let channel = tonic::transport::Endpoint::from_shared(emu.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let n = reqs.len();
    let path = http::uri::PathAndQuery::from_static(
        "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows",
    );
    let codec = tonic_prost::ProstCodec::<RawRequest, AppendRowsResponse>::default();
    let resp = grpc.streaming(tonic::Request::new(tokio_stream::iter(reqs)), path, codec).await;
    let mut out = Vec::new();
    match resp {
        Err(s) => out.push(Err(s)),
        Ok(r) => {
            let mut rx = r.into_inner();
            while out.len() < n {
                match rx.message().await {
                    Ok(Some(m)) => out.push(Ok(m)),
                    Ok(None) => break,
                    Err(s) => {
                        out.push(Err(s));
                        break;
                    }
                }
            }
        }
    }
    out
}
