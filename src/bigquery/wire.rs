//! The AppendRows request as it goes on the wire.
//!
//! `prost_types::DescriptorProto` drops unknown fields, and with them the
//! `column_name` field option (extension 454943157) that maps a proto field to
//! a BigQuery column whose name is not a proto identifier (fact sheet §1.1,
//! §2.3). So the writer schema may also be given as the serialized
//! `DescriptorProto` bytes, and requests are encoded through this mirror of
//! `AppendRowsRequest` whose `ProtoSchema.proto_descriptor` is plain bytes. An
//! embedded message and a bytes field are the same on the wire (length-delimited),
//! so the service sees exactly the generated message's encoding.
//!
//! The rows of each request are prepared once ([`PreparedRows`]) and shared by
//! every send of it: proto rows as the encoder's `Bytes` (copied once, into
//! the gRPC frame), Arrow rows as one serialized record batch.

use bytes::Bytes;
use prost::Message;
use tonic::codec::{Codec, EncodeBuf, Encoder, Streaming};
use tonic::transport::Channel;

use crate::pb::storage::append_rows_request::Rows;
use crate::pb::storage::{AppendRowsResponse, ArrowSchema, ProtoRows, ProtoSchema};

/// The writer schema of a connection's first request.
#[derive(Clone, Debug, PartialEq)]
pub enum WriterSchema {
    /// A serialized, self-contained proto2 `DescriptorProto`, options and all.
    ProtoDescriptorBytes(Vec<u8>),
    /// An Arrow IPC schema message.
    Arrow(ArrowSchema),
}

impl WriterSchema {
    pub fn proto(schema: &ProtoSchema) -> Self {
        Self::ProtoDescriptorBytes(
            schema.proto_descriptor.as_ref().map(Message::encode_to_vec).unwrap_or_default(),
        )
    }
}

/// The `rows` oneof carrying only a writer schema (as `rows::Encoder` produces it).
/// Without one, a proto writer schema is empty and the service will refuse it.
impl From<Rows> for WriterSchema {
    fn from(rows: Rows) -> Self {
        match rows {
            Rows::ProtoRows(data) => Self::proto(&data.writer_schema.unwrap_or_default()),
            Rows::ArrowRows(data) => Self::Arrow(data.writer_schema.unwrap_or_default()),
        }
    }
}

/// `AppendRowsRequest` with the descriptor as bytes (field numbers as storage.proto).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireAppendRowsRequest {
    #[prost(string, tag = "1")]
    pub write_stream: String,
    /// `google.protobuf.Int64Value`.
    #[prost(message, optional, tag = "2")]
    pub offset: Option<i64>,
    #[prost(oneof = "WireRows", tags = "4, 5")]
    pub rows: Option<WireRows>,
    #[prost(string, tag = "6")]
    pub trace_id: String,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum WireRows {
    #[prost(message, tag = "4")]
    ProtoRows(WireProtoData),
    #[prost(message, tag = "5")]
    ArrowRows(WireArrowData),
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireProtoData {
    #[prost(message, optional, tag = "1")]
    pub writer_schema: Option<WireProtoSchema>,
    /// The rows, shared with the encoder's buffer until the frame is written.
    #[prost(message, optional, tag = "2")]
    pub rows: Option<ProtoRows>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireArrowData {
    #[prost(message, optional, tag = "1")]
    pub writer_schema: Option<ArrowSchema>,
    /// A serialized `ArrowRecordBatch`.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub rows: Option<Bytes>,
}

/// A request's rows, ready for every send of it. Cloning a `ProtoRows` shares
/// its rows (`Bytes`), so a send copies each row once: into the frame.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum PreparedRows {
    Proto(Option<ProtoRows>),
    Arrow(Option<Bytes>),
}

impl From<Rows> for PreparedRows {
    fn from(rows: Rows) -> Self {
        match rows {
            Rows::ProtoRows(data) => Self::Proto(data.rows),
            Rows::ArrowRows(data) => Self::Arrow(data.rows.map(|r| r.encode_to_vec().into())),
        }
    }
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct WireProtoSchema {
    /// A serialized `DescriptorProto` (field 1 of `ProtoSchema`).
    #[prost(bytes = "vec", tag = "1")]
    pub proto_descriptor: Vec<u8>,
}

const APPEND_ROWS: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows";

/// Opens an AppendRows call carrying [`WireAppendRowsRequest`]s.
pub(crate) async fn append_rows<S>(
    channel: Channel,
    max_response_bytes: usize,
    request: tonic::Request<S>,
) -> Result<tonic::Response<Streaming<AppendRowsResponse>>, tonic::Status>
where
    S: futures::Stream<Item = WireAppendRowsRequest> + Send + 'static,
{
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(max_response_bytes);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
    let path = http::uri::PathAndQuery::from_static(APPEND_ROWS);
    grpc.streaming(request, path, AppendCodec).await
}

/// Prost's codec, except that a request's whole encoded length is reserved
/// before it is written: a multi-MB request is copied into the frame buffer
/// once rather than regrown (and recopied) as it goes.
struct AppendCodec;

impl Codec for AppendCodec {
    type Encode = WireAppendRowsRequest;
    type Decode = AppendRowsResponse;
    type Encoder = ReservingEncoder;
    type Decoder = tonic_prost::ProstDecoder<AppendRowsResponse>;

    fn encoder(&mut self) -> ReservingEncoder {
        ReservingEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

struct ReservingEncoder;

impl Encoder for ReservingEncoder {
    type Item = WireAppendRowsRequest;
    type Error = tonic::Status;

    fn encode(&mut self, item: Self::Item, buf: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        buf.reserve(item.encoded_len());
        item.encode(buf).map_err(|e| tonic::Status::internal(format!("encoding a request: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::storage::AppendRowsRequest;
    use crate::pb::storage::append_rows_request::ProtoData;
    use prost_types::{DescriptorProto, FieldDescriptorProto};

    #[test]
    fn encodes_exactly_as_the_generated_message() {
        let descriptor = DescriptorProto {
            name: Some("Row".into()),
            field: vec![FieldDescriptorProto {
                name: Some("id".into()),
                number: Some(1),
                r#type: Some(3),
                ..Default::default()
            }],
            ..Default::default()
        };
        let rows = ProtoRows { serialized_rows: vec![vec![8, 1].into(), vec![8, 2].into()] };
        let generated = AppendRowsRequest {
            write_stream: "s".into(),
            offset: Some(5),
            trace_id: "t".into(),
            rows: Some(Rows::ProtoRows(ProtoData {
                writer_schema: Some(ProtoSchema { proto_descriptor: Some(descriptor.clone()) }),
                rows: Some(rows.clone()),
            })),
            ..Default::default()
        };
        let wire = WireAppendRowsRequest {
            write_stream: "s".into(),
            offset: Some(5),
            trace_id: "t".into(),
            rows: Some(WireRows::ProtoRows(WireProtoData {
                writer_schema: Some(WireProtoSchema {
                    proto_descriptor: descriptor.encode_to_vec(),
                }),
                rows: Some(rows.clone()),
            })),
        };
        assert_eq!(wire.encode_to_vec(), generated.encode_to_vec());
        let back = AppendRowsRequest::decode(wire.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, generated);
    }

    #[test]
    fn unknown_descriptor_options_survive() {
        // FieldOptions with the column_name extension (454943157, string): prost_types drops
        // it, the bytes form keeps it.
        let mut options = Vec::new();
        prost::encoding::string::encode(454_943_157, &"user-name".to_string(), &mut options);
        let mut field = Vec::new();
        prost::encoding::string::encode(1, &"col_dXNlci1uYW1l".to_string(), &mut field);
        prost::encoding::bytes::encode(8, &options, &mut field);
        let mut descriptor = Vec::new();
        prost::encoding::string::encode(1, &"Row".to_string(), &mut descriptor);
        prost::encoding::bytes::encode(2, &field, &mut descriptor);
        let wire = WireAppendRowsRequest {
            rows: Some(WireRows::ProtoRows(WireProtoData {
                writer_schema: Some(WireProtoSchema { proto_descriptor: descriptor.clone() }),
                rows: None,
            })),
            ..Default::default()
        };
        let bytes = wire.encode_to_vec();
        assert!(bytes.windows(descriptor.len()).any(|w| w == descriptor.as_slice()));
    }
}
