//! The [`Encoder`]: built once per table schema (and again when BigQuery
//! reports `updated_schema`), shared by every invocation. It turns one JSON
//! record into one row and a list of rows into the `rows` of one AppendRows
//! request, in the configured [`RowFormat`].

use arrow_schema::SchemaRef;
use bytes::Bytes;
use prost_types::DescriptorProto;

use super::arrow::{self, BatchError, SizeModel};
use super::error::{EncodeError, RowError, SchemaError};
use super::meta::RecordMeta;
use super::schema::{self, Fields};
use super::wire::varint_len;
use super::{RowFormat, UnknownFields, descriptor, encode};
use crate::cdc::{CdcColumns, CdcSettings};
use crate::pb::storage::append_rows_request::{ArrowData, ProtoData, Rows};
use crate::pb::storage::{ArrowRecordBatch, ArrowSchema, ProtoRows, ProtoSchema, TableSchema};

/// How records become rows (`ROW_FORMAT`, `UNKNOWN_FIELDS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncoderOptions {
    pub format: RowFormat,
    pub unknown_fields: UnknownFields,
}

/// The `writer_schema` of the first request on a connection.
// Built once per connection; boxing would only add an indirection for callers.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum WriterSchema {
    Proto(ProtoSchema),
    Arrow(ArrowSchema),
}

/// JSON records → rows for one table schema. `Send + Sync`; share it in an `Arc`.
#[derive(Debug)]
pub struct Encoder {
    fields: Fields,
    options: EncoderOptions,
    descriptor: DescriptorProto,
    descriptor_bytes: Vec<u8>,
    arrow: Option<ArrowParts>,
    /// `WRITE_MODE=cdc`: the pseudo-columns every row carries.
    cdc: Option<CdcColumns>,
}

#[derive(Debug)]
struct ArrowParts {
    schema: SchemaRef,
    schema_message: Vec<u8>,
    size: SizeModelDebug,
}

/// [`SizeModel`] with a Debug impl kept out of the arrow module's way.
struct SizeModelDebug(SizeModel);

impl std::fmt::Debug for SizeModelDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SizeModel(fixed_row={}, ratio={})", self.0.fixed_row, self.0.ratio)
    }
}

/// Bytes of the `rows` oneof around the rows themselves, at most: its key and
/// length (1 + 5), ProtoData's rows key and length (1 + 5).
const PROTO_ENVELOPE: usize = 12;

impl Encoder {
    /// Compiles the table schema (as `GetWriteStream` view FULL returns it).
    ///
    /// # Errors
    /// [`SchemaError`] when the schema has a type or parameter this encoder
    /// cannot write (see docs/coercions.md), or is malformed.
    pub fn new(schema: &TableSchema, options: EncoderOptions) -> Result<Self, SchemaError> {
        let fields = schema::compile(schema)?;
        let descriptor = descriptor::build(&fields);
        let descriptor_bytes = descriptor::build_bytes(&fields);
        let arrow = match options.format {
            RowFormat::Proto => None,
            RowFormat::Arrow => {
                let schema = arrow::schema(&fields);
                let schema_message = arrow::schema_message(&schema);
                let size = SizeModelDebug(SizeModel::new(&fields));
                Some(ArrowParts { schema, schema_message, size })
            }
        };
        Ok(Encoder { fields, options, descriptor, descriptor_bytes, arrow, cdc: None })
    }

    /// This encoder, writing CDC rows: `_CHANGE_TYPE` and
    /// `_CHANGE_SEQUENCE_NUMBER` added to the writer schema and to every row
    /// ([`crate::cdc`]).
    ///
    /// # Errors
    /// [`SchemaError::Invalid`] for Arrow rows: BigQuery applies changes
    /// only from proto rows.
    pub fn with_cdc(mut self, settings: CdcSettings) -> Result<Self, SchemaError> {
        if self.arrow.is_some() {
            return Err(SchemaError::Invalid {
                path: String::new(),
                why: "change data capture takes proto rows only (ROW_FORMAT=proto)".into(),
            });
        }
        let columns = CdcColumns::new(settings, &self.descriptor);
        columns.extend_descriptor(&mut self.descriptor);
        columns.extend_descriptor_bytes(&mut self.descriptor_bytes);
        self.cdc = Some(columns);
        Ok(self)
    }

    /// The CDC settings this encoder writes rows with, if any.
    pub fn cdc(&self) -> Option<&CdcSettings> {
        self.cdc.as_ref().map(CdcColumns::settings)
    }

    pub fn format(&self) -> RowFormat {
        self.options.format
    }

    pub fn options(&self) -> EncoderOptions {
        self.options
    }

    /// Validates and encodes one JSON record as one serialized proto2 row,
    /// appended to `out`. This is the single place coercion rules live; the
    /// Arrow path transposes these bytes, so both formats accept and reject
    /// exactly the same records.
    ///
    /// # Errors
    /// [`RowError`] naming the field path when the record cannot become a
    /// row; `out` is then left as it was.
    pub fn encode(
        &self,
        json: &[u8],
        meta: &RecordMeta,
        out: &mut Vec<u8>,
    ) -> Result<(), RowError> {
        let start = out.len();
        let arrow = self.options.format == RowFormat::Arrow;
        let mut res =
            encode::encode_row(&self.fields, json, meta, self.options.unknown_fields, arrow, out);
        if let (Ok(()), Some(cdc)) = (&res, &self.cdc) {
            res = cdc.append(json, meta, out).map_err(|e| RowError {
                path: e.field,
                kind: super::RowErrorKind::ChangeUnreadable,
                message: e.why,
            });
        }
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    /// The `writer_schema` of the first request on a connection.
    pub fn writer_schema(&self) -> WriterSchema {
        match &self.arrow {
            None => WriterSchema::Proto(self.proto_schema()),
            Some(a) => {
                WriterSchema::Arrow(ArrowSchema { serialized_schema: a.schema_message.clone() })
            }
        }
    }

    /// The proto descriptor of the rows (also what Arrow rows are transposed from).
    pub fn proto_schema(&self) -> ProtoSchema {
        ProtoSchema { proto_descriptor: Some(self.descriptor.clone()) }
    }

    /// The serialized `DescriptorProto` of [`Self::proto_schema`] with the
    /// `column_name` option set on placeholder-named fields. The typed
    /// `ProtoSchema` cannot carry that option (prost keeps no extensions), so
    /// a table with column names that are not proto identifiers needs a sender
    /// that writes these bytes as `ProtoSchema.proto_descriptor` (field 1).
    pub fn proto_descriptor_bytes(&self) -> &[u8] {
        &self.descriptor_bytes
    }

    /// The Arrow schema of `arrow_rows` (None in proto mode).
    pub fn arrow_schema(&self) -> Option<SchemaRef> {
        self.arrow.as_ref().map(|a| a.schema.clone())
    }

    /// The `rows` oneof of one AppendRows request from rows [`encode`](Self::encode)
    /// produced; `with_schema` puts the writer schema in (first request of a
    /// connection). Proto rows are shared with the caller, not copied. Arrow:
    /// one record batch for all rows.
    ///
    /// # Errors
    /// [`EncodeError`] only for bytes this encoder did not produce, or an
    /// Arrow library failure.
    pub fn request_rows(&self, rows: &[Bytes], with_schema: bool) -> Result<Rows, EncodeError> {
        match &self.arrow {
            None => Ok(Rows::ProtoRows(ProtoData {
                writer_schema: with_schema.then(|| self.proto_schema()),
                rows: Some(ProtoRows { serialized_rows: rows.to_vec() }),
            })),
            Some(a) => {
                let rows: Vec<&[u8]> = rows.iter().map(|r| &r[..]).collect();
                let batch = arrow::batch_message(&self.fields, &a.schema, &a.schema_message, &rows)
                    .map_err(|e| match e {
                        BatchError::Foreign(f) => {
                            EncodeError::ForeignRow { index: f.index, why: f.why }
                        }
                        BatchError::Arrow(e) => EncodeError::Arrow(e),
                    })?;
                #[allow(deprecated)]
                let rows_msg = ArrowRecordBatch {
                    serialized_record_batch: batch,
                    row_count: rows.len() as i64,
                };
                Ok(Rows::ArrowRows(ArrowData {
                    writer_schema: with_schema
                        .then(|| ArrowSchema { serialized_schema: a.schema_message.clone() }),
                    rows: Some(rows_msg),
                }))
            }
        }
    }

    /// The serialized size of `request_rows(rows, false)` for rows of these
    /// lengths, as the `rows` field of AppendRowsRequest (key and length
    /// included). Proto: exact up to the 12-byte envelope, which is counted
    /// at its maximum. Arrow: a safe upper bound (a null slot costs Arrow
    /// bytes but no proto bytes; see [`SizeModel`]). Add [`Self::schema_bytes`]
    /// for the first request of a connection. Equals the sum of
    /// [`Self::row_bytes`] plus [`Self::envelope_bytes`].
    pub fn request_bytes(&self, row_lens: impl Iterator<Item = usize>) -> usize {
        self.envelope_bytes() + row_lens.map(|l| self.row_bytes(l)).sum::<usize>()
    }

    /// What one row of `len` encoded bytes adds to a request (see [`Self::request_bytes`]).
    pub fn row_bytes(&self, len: usize) -> usize {
        match &self.arrow {
            None => 1 + varint_len(len as u64) + len,
            Some(a) => a.size.0.row_bound(len),
        }
    }

    /// What a request costs with no rows (see [`Self::request_bytes`]).
    pub fn envelope_bytes(&self) -> usize {
        match &self.arrow {
            None => PROTO_ENVELOPE,
            // + the ArrowRecordBatch row_count field (1 + 10) and its own key/length.
            Some(a) => PROTO_ENVELOPE + 17 + a.size.0.batch_overhead,
        }
    }

    /// Extra bytes the writer schema adds to the first request of a connection.
    pub fn schema_bytes(&self) -> usize {
        use prost::Message as _;
        let body = match &self.arrow {
            None => self.proto_schema().encoded_len(),
            Some(a) => a.schema_message.len() + 6,
        };
        1 + varint_len(body as u64) + body
    }
}
