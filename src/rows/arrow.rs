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

use arrow_array::types::{
    Date32Type, Decimal128Type, Decimal256Type, Float64Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, ListArray, PrimitiveArray, RecordBatch, StringArray,
    StructArray,
};
use arrow_buffer::{
    BooleanBufferBuilder, Buffer, NullBuffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer, i256,
};
use arrow_ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteOptions, StreamEncoder, write_message,
};
use arrow_schema::{
    ArrowError, DataType, Field as ArrowField, Fields as ArrowFields, Schema, SchemaRef, TimeUnit,
};

use super::schema::{Field, Fields, Mode, Ty};
use super::values::{decimal, time};
use super::wire::WireReader;

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
    let mut cols: Vec<Col> =
        fields.fields.iter().map(|f| Col::new(f, rows.len(), row_bytes)).collect();
    for (index, row) in rows.iter().enumerate() {
        push_message(&mut cols, fields, row, index)
            .map_err(|why| BatchError::Foreign(Foreign { index, why }))?;
    }
    let arrays = cols
        .into_iter()
        .zip(&fields.fields)
        .map(|(c, f)| c.finish(f, rows.len()))
        .collect::<Result<Vec<_>, _>>()?;
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

/// One column being built. Slots fill lazily: a value for slot `s` first
/// pads the column up to `s` (nulls; for REPEATED, empty lists), and
/// [`Col::finish`] pads it to the batch's length. A row then costs only
/// its present values: the writer no longer closes every column of every
/// row (200 steps per row of `wide_200`, on top of its 200 values) nor
/// keeps a per-row "seen" set.
struct Col {
    /// Validity of each element: a slot, or for REPEATED a list element
    /// (never null). Unallocated until the first null.
    nulls: NullBufferBuilder,
    values: Values,
    /// REPEATED: list offsets, the leading 0 and one per closed row.
    offsets: Option<Vec<i32>>,
    /// Rows in the batch and their proto bytes in all: capacity hints.
    rows: usize,
    row_bytes: usize,
}

enum Values {
    Bool(BooleanBufferBuilder),
    I64(Vec<i64>),
    I32(Vec<i32>),
    F64(Vec<f64>),
    Bin {
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    D128(Vec<i128>),
    D256(Vec<i256>),
    /// Children are padded lazily too, to this column's element count.
    Struct(Vec<Col>),
}

const TOO_LARGE: &str = "column larger than 2 GiB";

impl Col {
    /// A column for `rows` rows: one element per row is reserved up front
    /// (a REPEATED column's elements may grow past it), so a batch of
    /// thousands of rows does not regrow every vector a dozen times.
    fn new(f: &Field, rows: usize, row_bytes: usize) -> Self {
        let n = rows;
        let values = match &f.ty {
            Ty::Bool => Values::Bool(BooleanBufferBuilder::new(n)),
            Ty::Int64 | Ty::Timestamp | Ty::Time | Ty::DateTime => {
                Values::I64(Vec::with_capacity(n))
            }
            Ty::Date => Values::I32(Vec::with_capacity(n)),
            Ty::Float64 => Values::F64(Vec::with_capacity(n)),
            Ty::String(_) | Ty::Bytes(_) | Ty::Geography | Ty::Json | Ty::Interval => {
                let mut offsets = Vec::with_capacity(n + 1);
                offsets.push(0);
                Values::Bin { offsets, data: Vec::new() }
            }
            Ty::Decimal(d) if d.big => Values::D256(Vec::with_capacity(n)),
            Ty::Decimal(_) => Values::D128(Vec::with_capacity(n)),
            Ty::Struct(sub) | Ty::Range(sub) => {
                Values::Struct(sub.fields.iter().map(|f| Col::new(f, n, row_bytes)).collect())
            }
        };
        let offsets = (f.mode == Mode::Repeated).then(|| {
            let mut offsets = Vec::with_capacity(n + 1);
            offsets.push(0);
            offsets
        });
        Col { nulls: NullBufferBuilder::new(n), values, offsets, rows, row_bytes }
    }

    /// Makes `slot` the one the next value goes to: pads the slots before
    /// it, and for a scalar refuses a slot already filled.
    #[inline]
    fn open_slot(&mut self, slot: usize) -> Result<(), &'static str> {
        match &mut self.offsets {
            None => {
                let len = self.nulls.len();
                if len > slot {
                    return Err("field repeated in a row");
                }
                if len < slot {
                    self.pad_nulls(slot - len);
                }
            }
            // Rows before `slot` have all their elements: close them.
            Some(offsets) => {
                if offsets.len() <= slot {
                    let n = i32::try_from(self.nulls.len()).map_err(|_| TOO_LARGE)?;
                    offsets.resize(slot + 1, n);
                }
            }
        }
        Ok(())
    }

    /// `k` null slots (a null struct's children are padded later, to its
    /// element count, like any other lagging column).
    fn pad_nulls(&mut self, k: usize) {
        self.nulls.append_n_nulls(k);
        match &mut self.values {
            Values::Bool(v) => v.append_n(k, false),
            Values::I64(v) => v.resize(v.len() + k, 0),
            Values::I32(v) => v.resize(v.len() + k, 0),
            Values::F64(v) => v.resize(v.len() + k, 0.0),
            Values::Bin { offsets, .. } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.resize(offsets.len() + k, last);
            }
            Values::D128(v) => v.resize(v.len() + k, 0),
            Values::D256(v) => v.resize(v.len() + k, i256::ZERO),
            Values::Struct(_) => {}
        }
    }

    /// Reads one element of wire type `wire` from `r` and appends it (after
    /// [`Col::open_slot`]). The column says what to read, so no value is
    /// decoded into a general form and matched again.
    #[inline]
    fn read(&mut self, ty: &Ty, wire: u8, r: &mut WireReader) -> Result<(), &'static str> {
        const BAD: &str = "wire type does not match the column";
        const VARINT: u8 = 0;
        const FIXED64: u8 = 1;
        const LEN: u8 = 2;
        match (&mut self.values, wire) {
            (Values::Bool(vals), VARINT) => vals.append(r.varint()? != 0),
            (Values::I64(vals), VARINT) => {
                let x = r.varint()? as i64;
                vals.push(match ty {
                    Ty::Time => time::time_to_micros(&time::unpack_time(x)?),
                    Ty::DateTime => time::datetime_to_micros(&time::unpack_datetime(x)?),
                    _ => x,
                })
            }
            (Values::I32(vals), VARINT) => {
                vals.push(i32::try_from(r.varint()? as i64).map_err(|_| BAD)?)
            }
            (Values::F64(vals), FIXED64) => vals.push(f64::from_bits(r.fixed64()?)),
            (Values::Bin { offsets, data }, LEN) => {
                let b = r.bytes()?;
                if data.capacity() == 0 {
                    // Sized once from the first value, for every row like it
                    // (never past all the rows' bytes), instead of a dozen
                    // doublings per column per batch.
                    data.reserve(b.len().saturating_mul(self.rows).min(self.row_bytes));
                }
                data.extend_from_slice(b);
                offsets.push(i32::try_from(data.len()).map_err(|_| TOO_LARGE)?);
            }
            (Values::D128(vals), LEN) => {
                vals.push(numeric_from_wire(r.bytes()?).ok_or("bad NUMERIC bytes")?)
            }
            (Values::D256(vals), LEN) => {
                vals.push(decimal::from_wire(r.bytes()?).ok_or("bad BIGNUMERIC bytes")?)
            }
            (Values::Struct(children), LEN) => {
                let (Ty::Struct(sub) | Ty::Range(sub)) = ty else { return Err(BAD) };
                push_message(children, sub, r.bytes()?, self.nulls.len())?;
            }
            _ => return Err(BAD),
        }
        self.nulls.append_non_null();
        Ok(())
    }

    /// The column as an array of `slots` slots, its buffers moved, not copied.
    fn finish(mut self, f: &Field, slots: usize) -> Result<ArrayRef, ArrowError> {
        let too_large = || ArrowError::ComputeError(TOO_LARGE.into());
        match self.offsets.take() {
            None => {
                if self.nulls.len() < slots {
                    self.pad_nulls(slots - self.nulls.len());
                }
                self.finish_values(&f.ty)
            }
            Some(mut offsets) => {
                let n = i32::try_from(self.nulls.len()).map_err(|_| too_large())?;
                offsets.resize(slots + 1, n);
                let elem = self.finish_values(&f.ty)?;
                let item = Arc::new(ArrowField::new_list_field(element_type(&f.ty), true));
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Ok(Arc::new(ListArray::try_new(item, offsets, elem, None)?))
            }
        }
    }

    /// The elements as an array.
    fn finish_values(mut self, ty: &Ty) -> Result<ArrayRef, ArrowError> {
        let len = self.nulls.len();
        let nulls = self.nulls.finish();
        Ok(match self.values {
            Values::Bool(mut v) => Arc::new(BooleanArray::new(v.finish(), nulls)),
            Values::I64(v) => {
                let buf = ScalarBuffer::from(v);
                match ty {
                    Ty::Timestamp => Arc::new(
                        PrimitiveArray::<TimestampMicrosecondType>::try_new(buf, nulls)?
                            .with_timezone("UTC"),
                    ),
                    Ty::DateTime => {
                        Arc::new(PrimitiveArray::<TimestampMicrosecondType>::try_new(buf, nulls)?)
                    }
                    Ty::Time => {
                        Arc::new(PrimitiveArray::<Time64MicrosecondType>::try_new(buf, nulls)?)
                    }
                    _ => Arc::new(PrimitiveArray::<Int64Type>::try_new(buf, nulls)?),
                }
            }
            Values::I32(v) => {
                Arc::new(PrimitiveArray::<Date32Type>::try_new(ScalarBuffer::from(v), nulls)?)
            }
            Values::F64(v) => {
                Arc::new(PrimitiveArray::<Float64Type>::try_new(ScalarBuffer::from(v), nulls)?)
            }
            Values::Bin { offsets, data } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                let data = Buffer::from_vec(data);
                if matches!(ty, Ty::Bytes(_)) {
                    Arc::new(BinaryArray::try_new(offsets, data, nulls)?)
                } else {
                    Arc::new(string_array(offsets, data, nulls)?)
                }
            }
            Values::D128(v) => Arc::new(
                PrimitiveArray::<Decimal128Type>::try_new(ScalarBuffer::from(v), nulls)?
                    .with_precision_and_scale(38, 9)?,
            ),
            Values::D256(v) => Arc::new(
                PrimitiveArray::<Decimal256Type>::try_new(ScalarBuffer::from(v), nulls)?
                    .with_precision_and_scale(76, 38)?,
            ),
            Values::Struct(children) => {
                let (Ty::Struct(sub) | Ty::Range(sub)) = ty else {
                    return Err(ArrowError::SchemaError(
                        "struct values for a non-struct column".into(),
                    ));
                };
                let arrays = children
                    .into_iter()
                    .zip(&sub.fields)
                    .map(|(c, f)| c.finish(f, len))
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(StructArray::try_new_with_length(arrow_fields(sub), arrays, nulls, len)?)
            }
        })
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

/// Reads one message's fields into `cols` (one per field of `fields`),
/// as slot `slot` of each: the row's index, or a struct's element index.
fn push_message(
    cols: &mut [Col],
    fields: &Fields,
    bytes: &[u8],
    slot: usize,
) -> Result<(), &'static str> {
    let mut r = WireReader::new(bytes);
    while !r.is_done() {
        let (number, wire) = r.key()?;
        let i = (number as usize).checked_sub(1).ok_or("field number 0")?;
        let (Some(col), Some(f)) = (cols.get_mut(i), fields.fields.get(i)) else {
            return Err("unknown field number");
        };
        col.open_slot(slot)?;
        col.read(&f.ty, wire, &mut r)?;
    }
    Ok(())
}

/// NUMERIC wire bytes (at most 16 for any NUMERIC value) → the unscaled
/// i128, sign-extended directly rather than through i256.
#[inline]
fn numeric_from_wire(b: &[u8]) -> Option<i128> {
    if b.is_empty() || b.len() > 16 {
        return decimal::from_wire(b).and_then(|v| v.to_i128());
    }
    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xFF } else { 0x00 };
    let mut full = [fill; 16];
    full.get_mut(..b.len())?.copy_from_slice(b);
    Some(i128::from_le_bytes(full))
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
