//! The row-at-a-time transposer the lazy one replaced, kept as the
//! reference it is checked against: after every row it closes every column
//! (a scalar not seen becomes null, a REPEATED column records its length),
//! so each row's columns are complete before the next row starts.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, BooleanArray, ListArray, RecordBatch, StructArray};
use arrow_array::{PrimitiveArray, StringArray, types::*};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer, i256};
use arrow_schema::{Field as ArrowField, SchemaRef};

use crate::rows::arrow::{arrow_fields, element_type};
use crate::rows::schema::{Field, Fields, Mode, Ty};
use crate::rows::values::{decimal, time};
use crate::rows::wire::WireReader;

/// Rows → a record batch, the slow and plain way.
pub(super) fn batch(fields: &Fields, schema: &SchemaRef, rows: &[&[u8]]) -> RecordBatch {
    let mut cols: Vec<Col> = fields.fields.iter().map(Col::new).collect();
    for row in rows {
        push_message(&mut cols, fields, row);
    }
    let arrays = cols.into_iter().zip(&fields.fields).map(|(c, f)| c.finish(f)).collect();
    RecordBatch::try_new(schema.clone(), arrays).expect("reference batch")
}

struct Col {
    valid: Vec<bool>,
    values: Values,
    /// REPEATED: list offsets and the elements of the current row.
    list: Option<(Vec<i32>, i32)>,
}

enum Values {
    Bool(Vec<bool>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    F64(Vec<f64>),
    Bin(Vec<Vec<u8>>),
    D128(Vec<i128>),
    D256(Vec<i256>),
    Struct(Vec<Col>),
}

impl Col {
    fn new(f: &Field) -> Self {
        let values = match &f.ty {
            Ty::Bool => Values::Bool(vec![]),
            Ty::Int64 | Ty::Timestamp | Ty::Time | Ty::DateTime => Values::I64(vec![]),
            Ty::Date => Values::I32(vec![]),
            Ty::Float64 => Values::F64(vec![]),
            Ty::String(_) | Ty::Bytes(_) | Ty::Geography | Ty::Json | Ty::Interval => {
                Values::Bin(vec![])
            }
            Ty::Decimal(d) if d.big => Values::D256(vec![]),
            Ty::Decimal(_) => Values::D128(vec![]),
            Ty::Struct(sub) | Ty::Range(sub) => {
                Values::Struct(sub.fields.iter().map(Col::new).collect())
            }
        };
        let list = (f.mode == Mode::Repeated).then(|| (vec![0], 0));
        Col { valid: vec![], values, list }
    }

    fn push(&mut self, ty: &Ty, v: V) {
        match (&mut self.values, v) {
            (Values::Bool(vals), V::Varint(x)) => vals.push(x != 0),
            (Values::I64(vals), V::Varint(x)) => vals.push(match ty {
                Ty::Time => time::time_to_micros(&time::unpack_time(x as i64).unwrap()),
                Ty::DateTime => time::datetime_to_micros(&time::unpack_datetime(x as i64).unwrap()),
                _ => x as i64,
            }),
            (Values::I32(vals), V::Varint(x)) => vals.push(x as i64 as i32),
            (Values::F64(vals), V::Fixed64(x)) => vals.push(f64::from_bits(x)),
            (Values::Bin(vals), V::Bytes(b)) => vals.push(b.to_vec()),
            (Values::D128(vals), V::Bytes(b)) => {
                vals.push(decimal::from_wire(b).unwrap().to_i128().unwrap())
            }
            (Values::D256(vals), V::Bytes(b)) => vals.push(decimal::from_wire(b).unwrap()),
            (Values::Struct(children), V::Bytes(b)) => {
                let (Ty::Struct(sub) | Ty::Range(sub)) = ty else { panic!("not a struct") };
                push_message(children, sub, b);
            }
            _ => panic!("wire type does not match the column"),
        }
        self.valid.push(true);
    }

    fn push_null(&mut self, ty: &Ty) {
        self.valid.push(false);
        match &mut self.values {
            Values::Bool(v) => v.push(false),
            Values::I64(v) => v.push(0),
            Values::I32(v) => v.push(0),
            Values::F64(v) => v.push(0.0),
            Values::Bin(v) => v.push(vec![]),
            Values::D128(v) => v.push(0),
            Values::D256(v) => v.push(i256::ZERO),
            Values::Struct(children) => {
                let (Ty::Struct(sub) | Ty::Range(sub)) = ty else { panic!("not a struct") };
                for (c, f) in children.iter_mut().zip(&sub.fields) {
                    c.end_row(f, false);
                }
            }
        }
    }

    fn end_row(&mut self, f: &Field, seen: bool) {
        match &mut self.list {
            Some((offsets, n)) => {
                offsets.push(offsets.last().unwrap() + *n);
                *n = 0;
            }
            None if !seen => self.push_null(&f.ty),
            None => {}
        }
    }

    fn finish(mut self, f: &Field) -> ArrayRef {
        let list = self.list.take();
        let elem = self.finish_values(&f.ty);
        match list {
            None => elem,
            Some((offsets, _)) => {
                let item = Arc::new(ArrowField::new_list_field(element_type(&f.ty), true));
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(ListArray::try_new(item, offsets, elem, None).unwrap())
            }
        }
    }

    fn finish_values(self, ty: &Ty) -> ArrayRef {
        let len = self.valid.len();
        let nulls =
            if self.valid.iter().all(|&v| v) { None } else { Some(NullBuffer::from(self.valid)) };
        match self.values {
            Values::Bool(v) => Arc::new(BooleanArray::new(BooleanBuffer::from(v), nulls)),
            Values::I64(v) => {
                let buf = ScalarBuffer::from(v);
                match ty {
                    Ty::Timestamp => Arc::new(
                        PrimitiveArray::<TimestampMicrosecondType>::new(buf, nulls)
                            .with_timezone("UTC"),
                    ),
                    Ty::DateTime => {
                        Arc::new(PrimitiveArray::<TimestampMicrosecondType>::new(buf, nulls))
                    }
                    Ty::Time => Arc::new(PrimitiveArray::<Time64MicrosecondType>::new(buf, nulls)),
                    _ => Arc::new(PrimitiveArray::<Int64Type>::new(buf, nulls)),
                }
            }
            Values::I32(v) => Arc::new(PrimitiveArray::<Date32Type>::new(v.into(), nulls)),
            Values::F64(v) => Arc::new(PrimitiveArray::<Float64Type>::new(v.into(), nulls)),
            Values::Bin(v) => {
                let offsets = OffsetBuffer::from_lengths(v.iter().map(Vec::len));
                let data = Buffer::from_vec(v.concat());
                if matches!(ty, Ty::Bytes(_)) {
                    Arc::new(BinaryArray::new(offsets, data, nulls))
                } else {
                    Arc::new(StringArray::new(offsets, data, nulls))
                }
            }
            Values::D128(v) => Arc::new(
                PrimitiveArray::<Decimal128Type>::new(v.into(), nulls)
                    .with_precision_and_scale(38, 9)
                    .unwrap(),
            ),
            Values::D256(v) => Arc::new(
                PrimitiveArray::<Decimal256Type>::new(v.into(), nulls)
                    .with_precision_and_scale(76, 38)
                    .unwrap(),
            ),
            Values::Struct(children) => {
                let (Ty::Struct(sub) | Ty::Range(sub)) = ty else { panic!("not a struct") };
                let arrays = children.into_iter().zip(&sub.fields).map(|(c, f)| c.finish(f));
                Arc::new(
                    StructArray::try_new_with_length(
                        arrow_fields(sub),
                        arrays.collect(),
                        nulls,
                        len,
                    )
                    .unwrap(),
                )
            }
        }
    }
}

/// One field's value, read the general way.
enum V<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
}

fn push_message(cols: &mut [Col], fields: &Fields, bytes: &[u8]) {
    let mut seen = vec![false; cols.len()];
    let mut r = WireReader::new(bytes);
    while !r.is_done() {
        let (number, wire) = r.key().unwrap();
        let v = match wire {
            0 => V::Varint(r.varint().unwrap()),
            1 => V::Fixed64(r.fixed64().unwrap()),
            _ => V::Bytes(r.bytes().unwrap()),
        };
        let i = number as usize - 1;
        let (col, f) = (&mut cols[i], &fields.fields[i]);
        match &mut col.list {
            Some((_, n)) => *n += 1,
            None => {
                assert!(!seen[i], "field repeated in a row");
                seen[i] = true;
            }
        }
        col.push(&f.ty, v);
    }
    for (i, (col, f)) in cols.iter_mut().zip(&fields.fields).enumerate() {
        col.end_row(f, seen[i]);
    }
}
