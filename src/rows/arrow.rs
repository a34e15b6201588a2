//! Encoded rows → one Arrow record batch → IPC messages for `arrow_rows`
//! (fact sheet §5: an encapsulated Schema message once per connection, one
//! encapsulated RecordBatch message per request, no footer, no compression).
//!
//! The Arrow path starts from the proto rows [`Encoder::encode`](super::Encoder::encode)
//! produced: coercion and validation happened there, so both formats accept
//! exactly the same records, and this step is a mechanical transpose of
//! already-normalised values into columns.
//!
//! Type mapping (fact sheet §5, Google's samples): BOOL bool, INT64 int64,
//! FLOAT64 float64, NUMERIC decimal128(38, 9), BIGNUMERIC decimal256(76, 38),
//! STRING/GEOGRAPHY/JSON/INTERVAL utf8, BYTES binary, DATE date32, TIME
//! time64[us], DATETIME timestamp[us] without zone, TIMESTAMP timestamp[us, UTC],
//! STRUCT and RANGE struct, REPEATED list.

use std::sync::Arc;

use arrow_array::{RecordBatch, StringArray};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer};
use arrow_ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteOptions, StreamEncoder, write_message,
};
use arrow_schema::{
    ArrowError, DataType, Field as ArrowField, Fields as ArrowFields, Schema, SchemaRef, TimeUnit,
};

use super::schema::{Field, Fields, Mode, Ty};

mod column;
mod reader;

use column::Columns;

/// The Arrow schema of the table.
pub(crate) fn schema(fields: &Fields) -> SchemaRef {
    Arc::new(Schema::new(arrow_fields(fields)))
}

fn arrow_fields(fields: &Fields) -> ArrowFields {
    fields.fields.iter().map(arrow_field).collect()
}

fn arrow_field(f: &Field) -> ArrowField {
    let elem = element_type(&f.ty);
    let dt = if f.mode == Mode::Repeated {
        DataType::List(Arc::new(ArrowField::new_list_field(elem, true)))
    } else {
        elem
    };
    ArrowField::new(&f.name, dt, f.mode != Mode::Required)
}

fn element_type(ty: &Ty) -> DataType {
    match ty {
        Ty::Bool => DataType::Boolean,
        Ty::Int64 => DataType::Int64,
        Ty::Float64 => DataType::Float64,
        Ty::String(_) | Ty::Geography | Ty::Json | Ty::Interval => DataType::Utf8,
        Ty::Bytes(_) => DataType::Binary,
        Ty::Decimal(d) if d.big => DataType::Decimal256(76, 38),
        Ty::Decimal(_) => DataType::Decimal128(38, 9),
        Ty::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Ty::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
        Ty::Date => DataType::Date32,
        Ty::Time => DataType::Time64(TimeUnit::Microsecond),
        Ty::Struct(sub) | Ty::Range(sub) => DataType::Struct(arrow_fields(sub)),
    }
}

/// The IPC-encapsulated Schema message (`ArrowSchema.serialized_schema`).
pub(crate) fn schema_message(schema: &Schema) -> Vec<u8> {
    let options = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &options,
    );
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = write_message(&mut out, encoded, &options);
    out
}

/// Why rows could not be transposed: they were not produced by this encoder.
pub(crate) struct Foreign {
    pub index: usize,
    pub why: &'static str,
}

/// Rows → one IPC-encapsulated RecordBatch message. `schema_message` is
/// [`schema_message`]`(schema)`, which the stream encoder writes first.
pub(crate) fn batch_message(
    fields: &Fields,
    schema: &SchemaRef,
    schema_message: &[u8],
    rows: &[&[u8]],
) -> Result<Vec<u8>, BatchError> {
    let row_bytes = rows.iter().map(|r| r.len()).sum();
    let mut cols = Columns::new(fields, rows.len(), row_bytes);
    for (index, row) in rows.iter().enumerate() {
        cols.push_row(row, index).map_err(|why| BatchError::Foreign(Foreign { index, why }))?;
    }
    let arrays = cols.finish(fields, rows.len())?;
    let batch = RecordBatch::try_new(schema.clone(), arrays)?;
    Ok(record_batch_message(&batch, schema_message)?)
}

/// The encapsulated RecordBatch message of `batch`, in one buffer sized
/// once. `StreamEncoder` hands out the column buffers themselves, so they
/// are copied once, into the message; `IpcDataGenerator::encode` and
/// `write_message` copied every byte twice (into its body, then into the
/// message) through two growing buffers. The encoder's first output is the
/// stream's Schema message, identical to `schema_message` (checked: it is
/// the same writer with the same options), which is left out.
fn record_batch_message(batch: &RecordBatch, schema_message: &[u8]) -> Result<Vec<u8>, ArrowError> {
    let mut encoder = StreamEncoder::try_new(&batch.schema())?;
    let parts = encoder.encode(batch)?;
    let total: usize = parts.iter().map(Buffer::len).sum();
    let Some(body_len) = total.checked_sub(schema_message.len()) else {
        return Err(ArrowError::IpcError("IPC stream shorter than its schema message".into()));
    };
    let mut out = Vec::with_capacity(body_len);
    // Bytes of the Schema message still to skip (and compare).
    let mut schema_left = schema_message;
    for part in &parts {
        let mut bytes = part.as_slice();
        if !schema_left.is_empty() {
            let n = schema_left.len().min(bytes.len());
            let (head, rest) = bytes.split_at(n);
            let (want, left) = schema_left.split_at(n);
            if head != want {
                return Err(ArrowError::IpcError(
                    "IPC stream does not start with the schema message".into(),
                ));
            }
            schema_left = left;
            bytes = rest;
        }
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

pub(crate) enum BatchError {
    Foreign(Foreign),
    Arrow(ArrowError),
}

impl From<ArrowError> for BatchError {
    fn from(e: ArrowError) -> Self {
        BatchError::Arrow(e)
    }
}

/// `StringArray::try_new` with its UTF-8 check done by `simdutf8` (the
/// standard library's, which `try_new` uses, runs several times slower on
/// accented and CJK text, and this check saw every byte of a text-heavy
/// batch once more). The rows came from the encoder, which checked every
/// string, but rows handed to `request_rows` are checked again here all the
/// same: a foreign row must be refused, never become an invalid array.
fn string_array(
    offsets: OffsetBuffer<i32>,
    data: Buffer,
    nulls: Option<NullBuffer>,
) -> Result<StringArray, ArrowError> {
    let bad = |why: &str| Err(ArrowError::InvalidArgumentError(why.to_string()));
    let (Ok(start), Ok(end)) = (usize::try_from(offsets.first()), usize::try_from(offsets.last()))
    else {
        return bad("negative string offset");
    };
    let Some(text) = data.as_slice().get(start..end) else {
        return bad("string offsets beyond the column's bytes");
    };
    let Ok(text) = simdutf8::basic::from_utf8(text) else {
        return bad("string column bytes are not UTF-8");
    };
    for &o in offsets.iter() {
        let inside = usize::try_from(o).ok().and_then(|o| o.checked_sub(start));
        if !inside.is_some_and(|o| text.is_char_boundary(o)) {
            return bad("string offset splits a UTF-8 character");
        }
    }
    if nulls.as_ref().is_some_and(|n| n.len() != offsets.len() - 1) {
        return bad("null buffer length differs from the string count");
    }
    // SAFETY: `new_unchecked` is safe exactly when `try_new` would not fail
    // (arrow-array's contract). `try_new` checks, for Utf8: the last offset
    // within the values, the bytes between the first and last offset valid
    // UTF-8, every offset on a character boundary of them, and the null
    // buffer one entry per string; each is checked above with the same
    // meaning. `OffsetBuffer::new` already ensured the offsets are
    // non-negative and non-decreasing.
    Ok(unsafe { StringArray::new_unchecked(offsets, data, nulls) })
}

/// An upper bound on the Arrow bytes of one row, from its proto length: the
/// fixed-width slots of a row of nulls plus the proto bytes times the worst
/// Arrow-bytes-per-proto-byte ratio of any repeated element (a present proto
/// value takes at least 2 bytes: key and one value byte).
pub(crate) struct SizeModel {
    pub fixed_row: usize,
    pub ratio: usize,
    pub batch_overhead: usize,
}

impl SizeModel {
    pub(crate) fn new(fields: &Fields) -> Self {
        let mut ratio = 1;
        let mut nodes = 0;
        let fixed_row = slots(fields, &mut ratio, &mut nodes);
        // IPC framing: continuation, length, flatbuffer header per field node
        // and buffer (16 bytes each in the flatbuffer), up to 63 bytes of
        // 64-byte alignment padding per buffer (arrow-ipc default alignment),
        // three buffers per node at most, plus the message header.
        let batch_overhead = 1024 + nodes * (16 + 3 * (16 + 64));
        SizeModel { fixed_row, ratio, batch_overhead }
    }

    pub(crate) fn row_bound(&self, proto_len: usize) -> usize {
        self.fixed_row + self.ratio * proto_len
    }
}

fn slot_of(ty: &Ty, ratio: &mut usize, nodes: &mut usize) -> usize {
    1 + match ty {
        Ty::Bool => 1,
        Ty::Int64 | Ty::Timestamp | Ty::Time | Ty::DateTime | Ty::Float64 => 8,
        Ty::Date => 4,
        Ty::String(_) | Ty::Bytes(_) | Ty::Geography | Ty::Json | Ty::Interval => 4,
        Ty::Decimal(d) if d.big => 32,
        Ty::Decimal(_) => 16,
        Ty::Struct(sub) | Ty::Range(sub) => slots(sub, ratio, nodes),
    }
}

fn slots(fields: &Fields, ratio: &mut usize, nodes: &mut usize) -> usize {
    let mut total = 0;
    for f in &fields.fields {
        *nodes += 1;
        let slot = slot_of(&f.ty, ratio, nodes);
        if f.mode == Mode::Repeated {
            *nodes += 1;
            *ratio = (*ratio).max((slot + 4).div_ceil(2));
            total += 4;
        } else {
            total += slot;
        }
    }
    total
}

#[cfg(test)]
mod tests;
