//! Proto rows → Arrow columns: the transposer's per-value loop.
//!
//! Each value is one key and one append. What that costs is mostly memory:
//! a `wide_200` row touches 200 column headers, each with its own output
//! vector, so a column's header is kept to the one cache line a value of it
//! reads ([`Col`]: the slot check and the values' vector), nulls cost
//! nothing per present value (they are kept as runs, see [`Col::nulls`]),
//! and the column's kind lives in that line too, so the loop never reads
//! the schema.

use std::sync::Arc;

use arrow_array::types::{
    Date32Type, Decimal128Type, Decimal256Type, Float64Type, Int64Type, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use arrow_array::{ArrayRef, BinaryArray, BooleanArray, ListArray, PrimitiveArray, StructArray};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer, i256};
use arrow_schema::{ArrowError, Field as ArrowField};

use super::reader::Reader;
use super::{arrow_fields, element_type, string_array};
use crate::rows::schema::{Field, Fields, Mode, Ty};
use crate::rows::values::{decimal, time};

const TOO_LARGE: &str = "column larger than 2 GiB";

/// Rows in the batch and their proto bytes in all: capacity hints.
#[derive(Clone, Copy)]
struct Hint {
    rows: usize,
    row_bytes: usize,
}

/// The columns of one batch being built, one per field of the table.
pub(super) struct Columns {
    cols: Vec<Col>,
    hint: Hint,
}

impl Columns {
    /// Columns for `rows` rows of `row_bytes` proto bytes in all.
    pub(super) fn new(fields: &Fields, rows: usize, row_bytes: usize) -> Self {
        let cols = fields.fields.iter().map(|f| Col::new(f, rows)).collect();
        Columns { cols, hint: Hint { rows, row_bytes } }
    }

    /// Reads one row's fields as slot `slot` of each column. Rows come in
    /// slot order.
    pub(super) fn push_row(&mut self, row: &[u8], slot: usize) -> Result<(), &'static str> {
        push_message(&mut self.cols, row, slot, self.hint)
    }

    /// The columns as arrays of `slots` slots, in field order.
    pub(super) fn finish(self, fields: &Fields, slots: usize) -> Result<Vec<ArrayRef>, ArrowError> {
        self.cols.into_iter().zip(&fields.fields).map(|(c, f)| c.finish(f, slots)).collect()
    }
}

/// [`Col::next`] of a REPEATED column: never a slot, so its values all take
/// [`Col::push_slow`].
const LISTED: usize = usize::MAX;

/// One column being built. Slots fill lazily: a value for slot `s` first
/// pads the column up to `s` (nulls; for REPEATED, empty lists), and
/// [`Col::finish`] pads it to the batch's length. A row then costs only
/// its present values.
///
/// `repr(C, align(64))`: `next` and `values` (64 bytes) share the first
/// cache line, all a scalar value reads; the rest is read only to pad or
/// for REPEATED values.
#[repr(C, align(64))]
struct Col {
    /// Scalar: the slots filled so far, so the slot a value goes to when
    /// none was skipped (checked first, alone). REPEATED: [`LISTED`].
    next: usize,
    values: Values,
    /// REPEATED: the list offsets (the leading 0, one per closed row) and
    /// the elements so far.
    list: Option<List>,
    /// The null slots, as (first, count) runs in slot order. A present
    /// value then costs no validity bit; [`null_buffer`] writes the bitmap
    /// once. REPEATED elements are never null.
    nulls: Vec<(usize, usize)>,
}

struct List {
    offsets: Vec<i32>,
    elems: usize,
}

/// The elements, by what the column reads and stores.
enum Values {
    Bool(BooleanBufferBuilder),
    /// INT64 and TIMESTAMP: the varint as it is.
    I64(Vec<i64>),
    /// TIME and DATETIME: packed civil values, stored as microseconds.
    Time(Vec<i64>),
    DateTime(Vec<i64>),
    Date(Vec<i32>),
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

impl Col {
    /// A column for `rows` rows: one element per row is reserved up front
    /// (a REPEATED column's elements may grow past it), so a batch of
    /// thousands of rows does not regrow every vector a dozen times.
    fn new(f: &Field, rows: usize) -> Self {
        let n = rows;
        let values = match &f.ty {
            Ty::Bool => Values::Bool(BooleanBufferBuilder::new(n)),
            Ty::Int64 | Ty::Timestamp => Values::I64(Vec::with_capacity(n)),
            Ty::Time => Values::Time(Vec::with_capacity(n)),
            Ty::DateTime => Values::DateTime(Vec::with_capacity(n)),
            Ty::Date => Values::Date(Vec::with_capacity(n)),
            Ty::Float64 => Values::F64(Vec::with_capacity(n)),
            Ty::String(_) | Ty::Bytes(_) | Ty::Geography | Ty::Json | Ty::Interval => {
                let mut offsets = Vec::with_capacity(n + 1);
                offsets.push(0);
                Values::Bin { offsets, data: Vec::new() }
            }
            Ty::Decimal(d) if d.big => Values::D256(Vec::with_capacity(n)),
            Ty::Decimal(_) => Values::D128(Vec::with_capacity(n)),
            Ty::Struct(sub) | Ty::Range(sub) => {
                Values::Struct(sub.fields.iter().map(|f| Col::new(f, n)).collect())
            }
        };
        let list = (f.mode == Mode::Repeated).then(|| {
            let mut offsets = Vec::with_capacity(n + 1);
            offsets.push(0);
            List { offsets, elems: 0 }
        });
        let next = if list.is_some() { LISTED } else { 0 };
        Col { next, values, list, nulls: Vec::new() }
    }

    /// A value for `slot` that is not simply the next one: a scalar after
    /// skipped slots (padded with nulls) or given twice (refused), or any
    /// REPEATED element (rows before `slot` are closed first).
    #[inline(never)]
    fn push_slow(
        &mut self,
        slot: usize,
        wire: u8,
        r: &mut Reader,
        hint: Hint,
    ) -> Result<(), &'static str> {
        match &mut self.list {
            None => {
                if self.next > slot {
                    return Err("field repeated in a row");
                }
                self.pad_nulls(slot - self.next);
                read(&mut self.values, wire, r, slot, hint)?;
                self.next = slot + 1;
            }
            Some(list) => {
                if list.offsets.len() <= slot {
                    let n = i32::try_from(list.elems).map_err(|_| TOO_LARGE)?;
                    list.offsets.resize(slot + 1, n);
                }
                read(&mut self.values, wire, r, list.elems, hint)?;
                list.elems += 1;
            }
        }
        Ok(())
    }

    /// `k` null slots after the `next` filled ones (a null struct's children
    /// are padded later, to its element count, like any other lagging
    /// column). Scalar columns only.
    fn pad_nulls(&mut self, k: usize) {
        if k == 0 {
            return;
        }
        match self.nulls.last_mut() {
            Some((first, count)) if *first + *count == self.next => *count += k,
            _ => self.nulls.push((self.next, k)),
        }
        self.next += k;
        match &mut self.values {
            Values::Bool(v) => v.append_n(k, false),
            Values::I64(v) | Values::Time(v) | Values::DateTime(v) => v.resize(v.len() + k, 0),
            Values::Date(v) => v.resize(v.len() + k, 0),
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

    /// The column as an array of `slots` slots, its buffers moved, not copied.
    fn finish(mut self, f: &Field, slots: usize) -> Result<ArrayRef, ArrowError> {
        let too_large = || ArrowError::ComputeError(TOO_LARGE.into());
        match self.list.take() {
            None => {
                if self.next < slots {
                    self.pad_nulls(slots - self.next);
                }
                let len = self.next;
                self.finish_values(&f.ty, len)
            }
            Some(List { mut offsets, elems }) => {
                let n = i32::try_from(elems).map_err(|_| too_large())?;
                offsets.resize(slots + 1, n);
                let elem = self.finish_values(&f.ty, elems)?;
                let item = Arc::new(ArrowField::new_list_field(element_type(&f.ty), true));
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Ok(Arc::new(ListArray::try_new(item, offsets, elem, None)?))
            }
        }
    }

    /// The `len` elements as an array.
    fn finish_values(self, ty: &Ty, len: usize) -> Result<ArrayRef, ArrowError> {
        let nulls = null_buffer(&self.nulls, len);
        Ok(match self.values {
            Values::Bool(mut v) => Arc::new(BooleanArray::new(v.finish(), nulls)),
            Values::I64(v) => {
                let buf = ScalarBuffer::from(v);
                if matches!(ty, Ty::Timestamp) {
                    Arc::new(
                        PrimitiveArray::<TimestampMicrosecondType>::try_new(buf, nulls)?
                            .with_timezone("UTC"),
                    )
                } else {
                    Arc::new(PrimitiveArray::<Int64Type>::try_new(buf, nulls)?)
                }
            }
            Values::DateTime(v) => Arc::new(PrimitiveArray::<TimestampMicrosecondType>::try_new(
                ScalarBuffer::from(v),
                nulls,
            )?),
            Values::Time(v) => Arc::new(PrimitiveArray::<Time64MicrosecondType>::try_new(
                ScalarBuffer::from(v),
                nulls,
            )?),
            Values::Date(v) => {
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

/// The validity bitmap of `len` elements with these null runs: `None`
/// when there are none (as `NullBufferBuilder` gives when no null was
/// appended), else the same bits it would have set.
fn null_buffer(runs: &[(usize, usize)], len: usize) -> Option<NullBuffer> {
    if runs.is_empty() {
        return None;
    }
    let mut bits = BooleanBufferBuilder::new(len);
    let mut at = 0;
    for &(first, count) in runs {
        bits.append_n(first.saturating_sub(at), true);
        bits.append_n(count, false);
        at = first + count;
    }
    bits.append_n(len.saturating_sub(at), true);
    Some(NullBuffer::new(bits.finish()))
}

/// Reads one message's fields into `cols` (one per field), as slot `slot`
/// of each: the row's index, or a struct's element index.
fn push_message(
    cols: &mut [Col],
    bytes: &[u8],
    slot: usize,
    hint: Hint,
) -> Result<(), &'static str> {
    let mut r = Reader::new(bytes);
    while !r.is_done() {
        let (number, wire) = r.key()?;
        let i = (number as usize).checked_sub(1).ok_or("field number 0")?;
        let col = cols.get_mut(i).ok_or("unknown field number")?;
        if col.next == slot {
            read(&mut col.values, wire, &mut r, slot, hint)?;
            col.next += 1;
        } else {
            col.push_slow(slot, wire, &mut r, hint)?;
        }
    }
    Ok(())
}

/// A struct value's fields, as element `elem` of its children. Out of line:
/// it is what keeps [`read`] inlinable into [`push_message`].
#[inline(never)]
fn push_struct(
    children: &mut [Col],
    bytes: &[u8],
    elem: usize,
    hint: Hint,
) -> Result<(), &'static str> {
    push_message(children, bytes, elem, hint)
}

/// Reads one element of wire type `wire` from `r` and appends it; `elem` is
/// its index (a struct's children's slot). The column says what to read,
/// so no value is decoded into a general form and matched again. Inlined
/// into [`push_message`] (a call per value, with its register saves, cost
/// more than the read); the recursion into a struct's fields goes through
/// [`push_struct`] instead.
#[inline(always)]
fn read(
    values: &mut Values,
    wire: u8,
    r: &mut Reader,
    elem: usize,
    hint: Hint,
) -> Result<(), &'static str> {
    const BAD: &str = "wire type does not match the column";
    const VARINT: u8 = 0;
    const FIXED64: u8 = 1;
    const LEN: u8 = 2;
    match (values, wire) {
        (Values::Bool(vals), VARINT) => vals.append(r.varint()? != 0),
        (Values::I64(vals), VARINT) => vals.push(r.varint()? as i64),
        (Values::Time(vals), VARINT) => {
            vals.push(time::time_to_micros(&time::unpack_time(r.varint()? as i64)?))
        }
        (Values::DateTime(vals), VARINT) => {
            vals.push(time::datetime_to_micros(&time::unpack_datetime(r.varint()? as i64)?))
        }
        (Values::Date(vals), VARINT) => {
            vals.push(i32::try_from(r.varint()? as i64).map_err(|_| BAD)?)
        }
        (Values::F64(vals), FIXED64) => vals.push(f64::from_bits(r.fixed64()?)),
        (Values::Bin { offsets, data }, LEN) => {
            let b = r.bytes()?;
            if data.capacity() == 0 {
                // Sized once from the first value, for every row like it
                // (never past all the rows' bytes), instead of a dozen
                // doublings per column per batch. (Twice that, to spare
                // the regrowth when later values are longer, was slower:
                // more fresh pages per batch.)
                data.reserve(b.len().saturating_mul(hint.rows).min(hint.row_bytes));
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
        (Values::Struct(children), LEN) => push_struct(children, r.bytes()?, elem, hint)?,
        _ => return Err(BAD),
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
