//! Proto rows → stored rows, with proto2 semantics and BigQuery's value checks.
//!
//! Each serialized row is walked on the wire ([`super::proto_wire`]) with the
//! writer's plan ([`super::proto_schema`]): scalars go straight to stored
//! values, STRUCT fields recurse, and only the rare message-typed scalars
//! (wrappers, `Timestamp`, `Duration`, RANGE bounds) are decoded as
//! prost-reflect messages. Proto2 gives every singular field presence, so an
//! absent field is NULL (never the type's zero); a singular field given twice
//! keeps its last value, a message field merges its occurrences, a repeated
//! scalar may come packed or not, and unknown field numbers are skipped. A
//! row that fails to decode or holds a value BigQuery would refuse yields a
//! `RowError` with its index; the caller then rejects the whole request (fact
//! sheet §2.4).

use std::fmt;

use bytes::Bytes;

use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value as Pv};

use super::defaults::Fill;
use super::proto_schema::{FieldPlan, Plan, ProtoWriter, well_known};
use super::proto_wire::{self as wire, Raw};
use super::row_build::{Build, Cell, Check, Values};
use super::values::{self as v, DecimalKind, Row, Value};
use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::table_field_schema::{Mode, Type};

/// Checks every row as the service would before storing it, building no
/// values; `Err` holds one `(index, message)` per bad row.
pub fn check_rows(
    writer: &ProtoWriter,
    rows: &[Bytes],
    columns: &[TableFieldSchema],
    fill: &Fill,
) -> Result<(), Vec<(usize, String)>> {
    let errors: Vec<_> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, bytes)| row::<Check>(writer, bytes, columns, fill).err().map(|e| (i, e)))
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Decodes one row into the values it stores. The same walk as
/// [`check_rows`], so a row that passed the check decodes.
pub fn decode_row(
    writer: &ProtoWriter,
    bytes: &[u8],
    columns: &[TableFieldSchema],
    fill: &Fill,
) -> Result<Row, String> {
    row::<Values>(writer, bytes, columns, fill)
}

fn row<B: Build>(
    writer: &ProtoWriter,
    bytes: &[u8],
    columns: &[TableFieldSchema],
    fill: &Fill,
) -> Result<Vec<B::Cell>, String> {
    decode_message::<B>(bytes, &writer.plan, columns, Path::Root, Some(fill)).map_err(|e| match e {
        Bad::Wire(e) => format!("Could not parse the row as {}: {e}", writer.message.name()),
        Bad::Value(e) => e,
    })
}

/// Why a row is refused: bytes that are not the writer's message, or a value
/// BigQuery would not store (the message already names the field).
enum Bad {
    Wire(String),
    Value(String),
}

/// A field path, rendered only for an error message (`user.address.zip`).
#[derive(Clone, Copy)]
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
        }
    }
}

/// A singular field's occurrences so far: the last one counts, except that a
/// message merges all of them (proto semantics: decode the concatenation).
enum Last<'a> {
    Absent,
    One(Raw<'a>),
    Merged(Vec<u8>),
}

impl<'a> Last<'a> {
    fn record(&mut self, raw: Raw<'a>, kind: &Kind) {
        let merges = matches!(kind, Kind::Message(_));
        *self = match (std::mem::replace(self, Last::Absent), raw) {
            (Last::One(Raw::Len(prev)), Raw::Len(next)) if merges => {
                Last::Merged([prev, next].concat())
            }
            (Last::Merged(mut all), Raw::Len(next)) if merges => {
                all.extend_from_slice(next);
                Last::Merged(all)
            }
            (_, raw) => Last::One(raw),
        };
    }
}

fn decode_message<B: Build>(
    bytes: &[u8],
    plan: &Plan,
    columns: &[TableFieldSchema],
    path: Path<'_>,
    fill: Option<&Fill>,
) -> Result<Vec<B::Cell>, Bad> {
    let mut cells: Vec<B::Cell> = columns.iter().map(B::empty).collect();
    let mut last: Vec<Last<'_>> = plan.fields.iter().map(|_| Last::Absent).collect();
    let counts = if B::SIZES_ARRAYS { repeated_counts(bytes, plan) } else { Vec::new() };
    let mut hint = 0;
    for field in wire::fields(bytes) {
        let (number, raw) = field.map_err(Bad::Wire)?;
        // A field number the writer's descriptor lacks is skipped, as proto2 does.
        let Some(k) = plan.position(number, hint) else { continue };
        hint = k + 1;
        let Some(fp) = plan.fields.get(k) else { continue };
        check_wire_type(raw, fp)?;
        if !fp.repeated {
            if let Some(slot) = last.get_mut(k) {
                slot.record(raw, &fp.kind);
            }
            continue;
        }
        let Some(col) = columns.get(fp.column) else { continue };
        let here = Path::Field(&path, &col.name);
        if let Some(array) = cells.get_mut(fp.column) {
            let expected = counts.get(k).copied().unwrap_or(0);
            append_repeated::<B>(raw, fp, col, here, array, expected)?;
        }
    }
    for (fp, slot) in plan.fields.iter().zip(last) {
        let Some(col) = columns.get(fp.column) else { continue };
        let here = Path::Field(&path, &col.name);
        let value = match slot {
            Last::Absent => continue,
            Last::One(raw) => convert::<B>(raw, fp, col, here)?,
            Last::Merged(bytes) => convert::<B>(Raw::Len(&bytes), fp, col, here)?,
        };
        if let Some(cell) = cells.get_mut(fp.column) {
            *cell = value;
        }
    }
    if let Some(fill) = fill {
        B::fill(&mut cells, fill);
    }
    for (c, cell) in columns.iter().zip(&cells) {
        if c.mode == Mode::Required as i32 && B::is_null(cell) {
            let here = Path::Field(&path, &c.name);
            return Err(Bad::Value(format!("Missing required field: {here}.")));
        }
    }
    Ok(cells)
}

/// How many elements each repeated field of the message holds (by plan
/// index), so each array is allocated once; empty when there is none.
fn repeated_counts(bytes: &[u8], plan: &Plan) -> Vec<usize> {
    if !plan.fields.iter().any(|f| f.repeated) {
        return Vec::new();
    }
    let mut counts = vec![0; plan.fields.len()];
    let mut hint = 0;
    for (number, raw) in wire::fields(bytes).map_while(Result::ok) {
        let Some(k) = plan.position(number, hint) else { continue };
        hint = k + 1;
        let Some(fp) = plan.fields.get(k).filter(|f| f.repeated) else { continue };
        let n = match (raw, wire_type_of(&fp.kind)) {
            (Raw::Len(run), 0) => run.iter().filter(|&&b| b < 0x80).count(),
            (Raw::Len(run), 1) => run.len() / 8,
            (Raw::Len(run), 5) => run.len() / 4,
            _ => 1,
        };
        if let Some(c) = counts.get_mut(k) {
            *c += n;
        }
    }
    counts
}

/// The wire type a field of `kind` is written with.
fn wire_type_of(kind: &Kind) -> u8 {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => 1,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => 5,
        Kind::String | Kind::Bytes | Kind::Message(_) => 2,
        _ => 0,
    }
}

fn check_wire_type(raw: Raw<'_>, fp: &FieldPlan) -> Result<(), Bad> {
    let want = wire_type_of(&fp.kind);
    let got = raw.wire_type();
    // Repeated scalars may also come packed (one length-delimited run).
    if got == want || (fp.repeated && want != 2 && got == 2) {
        return Ok(());
    }
    Err(Bad::Wire(format!(
        "field {} ({}): wire type {got}, expected {want}",
        fp.number,
        fp.proto.name()
    )))
}

/// Adds one occurrence of a repeated field: an element, or a packed run.
fn append_repeated<B: Build>(
    raw: Raw<'_>,
    fp: &FieldPlan,
    col: &TableFieldSchema,
    here: Path<'_>,
    array: &mut B::Cell,
    expected: usize,
) -> Result<(), Bad> {
    let want = wire_type_of(&fp.kind);
    let mut run = match raw {
        // A packed run of a scalar type.
        Raw::Len(run) if want != 2 => run,
        // One element.
        _ => {
            B::push(array, convert::<B>(raw, fp, col, here)?, expected);
            return Ok(());
        }
    };
    while !run.is_empty() {
        let element = match want {
            0 => Raw::Varint(wire::varint(&mut run).map_err(Bad::Wire)?),
            1 => Raw::Fixed64(u64::from_le_bytes(packed_chunk(&mut run)?)),
            _ => Raw::Fixed32(u32::from_le_bytes(packed_chunk(&mut run)?)),
        };
        B::push(array, convert::<B>(element, fp, col, here)?, expected);
    }
    Ok(())
}

fn packed_chunk<const N: usize>(run: &mut &[u8]) -> Result<[u8; N], Bad> {
    let (head, rest) = run
        .split_first_chunk::<N>()
        .ok_or_else(|| Bad::Wire("packed run is not a whole number of values".into()))?;
    *run = rest;
    Ok(*head)
}

/// One occurrence as the proto value its declared kind says it is.
fn proto_value(raw: Raw<'_>, kind: &Kind) -> Result<Pv, Bad> {
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| invalid_utf8());
    Ok(match (kind, raw) {
        (Kind::Double, Raw::Fixed64(x)) => Pv::F64(f64::from_bits(x)),
        (Kind::Float, Raw::Fixed32(x)) => Pv::F32(f32::from_bits(x)),
        // Wire integers truncate to the declared width, as proto decoders do.
        (Kind::Int32, Raw::Varint(x)) => Pv::I32(x as i32),
        (Kind::Int64, Raw::Varint(x)) => Pv::I64(x as i64),
        (Kind::Uint32, Raw::Varint(x)) => Pv::U32(x as u32),
        (Kind::Uint64, Raw::Varint(x)) => Pv::U64(x),
        (Kind::Sint32, Raw::Varint(x)) => {
            let x = x as u32;
            Pv::I32((x >> 1) as i32 ^ -((x & 1) as i32))
        }
        (Kind::Sint64, Raw::Varint(x)) => Pv::I64((x >> 1) as i64 ^ -((x & 1) as i64)),
        (Kind::Fixed32, Raw::Fixed32(x)) => Pv::U32(x),
        (Kind::Fixed64, Raw::Fixed64(x)) => Pv::U64(x),
        (Kind::Sfixed32, Raw::Fixed32(x)) => Pv::I32(x as i32),
        (Kind::Sfixed64, Raw::Fixed64(x)) => Pv::I64(x as i64),
        (Kind::Bool, Raw::Varint(x)) => Pv::Bool(x != 0),
        (Kind::Enum(_), Raw::Varint(x)) => Pv::EnumNumber(x as i32),
        (Kind::String, Raw::Len(b)) => Pv::String(utf8(b)?),
        (Kind::Bytes, Raw::Len(b)) => Pv::Bytes(bytes::Bytes::copy_from_slice(b)),
        (Kind::Message(d), Raw::Len(b)) => {
            Pv::Message(DynamicMessage::decode(d.clone(), b).map_err(|e| Bad::Wire(e.to_string()))?)
        }
        (_, raw) => return Err(Bad::Wire(format!("unexpected wire type {}", raw.wire_type()))),
    })
}

fn at(path: Path<'_>, e: String) -> Bad {
    Bad::Value(format!("Invalid value for field {path}: {e}"))
}

fn convert<B: Build>(
    raw: Raw<'_>,
    fp: &FieldPlan,
    col: &TableFieldSchema,
    path: Path<'_>,
) -> Result<B::Cell, Bad> {
    match fp.bq_type {
        Type::Struct => match (raw, &fp.sub) {
            (Raw::Len(bytes), Some(sub)) => {
                Ok(B::structure(decode_message::<B>(bytes, sub, &col.fields, path, None)?))
            }
            _ => Err(at(path, "expected a message".into())),
        },
        Type::Range => {
            let elem = col.range_element_type.as_ref().and_then(|e| Type::try_from(e.r#type).ok());
            let elem = elem.unwrap_or(Type::Unspecified);
            let Pv::Message(m) = proto_value(raw, &fp.kind)? else {
                return Err(at(path, "expected a message".into()));
            };
            let bound = |name: &str| -> Result<Value, Bad> {
                match m.descriptor().get_field_by_name(name) {
                    Some(f) if m.has_field(&f) => {
                        scalar(elem, m.get_field(&f).into_owned(), &f.kind())
                            .map_err(|e| at(path, e))
                    }
                    _ => Ok(Value::Null),
                }
            };
            let (start, end) = (bound("start")?, bound("end")?);
            v::check_range(&start, &end).map_err(|e| at(path, e))?;
            Ok(B::cell(Cell::Value(Value::Range(Box::new(start), Box::new(end)))))
        }
        t => match (&fp.kind, raw) {
            (Kind::String, Raw::Len(b)) => {
                let s = std::str::from_utf8(b).map_err(|_| invalid_utf8())?;
                text(t, s).map(B::cell).map_err(|e| at(path, e))
            }
            (Kind::Bytes, Raw::Len(b)) if t == Type::Bytes => Ok(B::cell(Cell::Blob(b))),
            _ => {
                let value = scalar(t, proto_value(raw, &fp.kind)?, &fp.kind);
                value.map(|v| B::cell(Cell::Value(v))).map_err(|e| at(path, e))
            }
        },
    }
}

fn invalid_utf8() -> Bad {
    Bad::Wire("invalid UTF-8 in a string field".into())
}

/// A string field's text as a cell of type `t`, borrowed where the cell
/// keeps the text as it is.
fn text(t: Type, s: &str) -> Result<Cell<'_>, String> {
    match t {
        Type::String | Type::Interval => Ok(Cell::Text(s)),
        Type::Json => v::check_json(s).map(|()| Cell::Text(s)),
        Type::Geography => v::check_geography(s).map(|()| Cell::Text(s)),
        Type::Bytes => Ok(Cell::Blob(s.as_bytes())),
        _ => scalar(t, Pv::String(s.to_owned()), &Kind::String).map(Cell::Value),
    }
}

/// Unwraps inlined wrapper messages (`Int64Value{value}`) to their scalar;
/// an absent `value` inside a present wrapper is the type's zero.
fn unwrap_wrapper(value: &Pv, kind: &Kind) -> Option<(Pv, Kind)> {
    let (Pv::Message(m), Kind::Message(d)) = (value, kind) else { return None };
    match well_known(d)? {
        "Timestamp" | "Duration" => None,
        _ => {
            let f = d.get_field_by_name("value")?;
            Some((m.get_field(&f).into_owned(), f.kind()))
        }
    }
}

fn int_of(value: &Pv) -> Option<i128> {
    match value {
        Pv::I32(x) => Some(i128::from(*x)),
        Pv::I64(x) => Some(i128::from(*x)),
        Pv::U32(x) => Some(i128::from(*x)),
        Pv::U64(x) => Some(i128::from(*x)),
        Pv::EnumNumber(x) => Some(i128::from(*x)),
        _ => None,
    }
}

fn i64_of(value: &Pv) -> Result<i64, String> {
    int_of(value)
        .and_then(|x| i64::try_from(x).ok())
        .ok_or_else(|| format!("expected an integer, got {value:?}"))
}

/// One scalar cell of BigQuery type `t` from a proto value (§4.1, §4.2).
pub fn scalar(t: Type, value: Pv, kind: &Kind) -> Result<Value, String> {
    if let Some((inner, inner_kind)) = unwrap_wrapper(&value, kind) {
        return scalar(t, inner, &inner_kind);
    }
    // Text kept as text moves into the cell; everything else is read borrowed.
    let value = match (t, value) {
        (Type::String | Type::Interval, Pv::String(s)) => return Ok(Value::String(s)),
        (Type::Json, Pv::String(s)) => return v::check_json(&s).map(|()| Value::String(s)),
        (Type::Geography, Pv::String(s)) => {
            return v::check_geography(&s).map(|()| Value::String(s));
        }
        (Type::Bytes, Pv::String(s)) => return Ok(Value::Bytes(s.into_bytes())),
        (_, value) => value,
    };
    let value = &value;
    let wrong = || format!("cannot convert {value:?} to {}", t.as_str_name());
    Ok(match t {
        Type::Bool => match value {
            Pv::Bool(b) => Value::Bool(*b),
            other => Value::Bool(int_of(other).ok_or_else(wrong)? != 0),
        },
        Type::Bytes => match value {
            Pv::Bytes(b) => Value::Bytes(b.to_vec()),
            _ => return Err(wrong()),
        },
        Type::Int64 => Value::Int64(i64_of(value)?),
        Type::Double => match value {
            Pv::F64(x) => Value::Float64(*x),
            Pv::F32(x) => Value::Float64(f64::from(*x)),
            _ => return Err(wrong()),
        },
        Type::String => match (value, kind) {
            (Pv::EnumNumber(n), Kind::Enum(e)) => Value::String(
                e.get_value(*n).map(|v| v.name().to_string()).unwrap_or_else(|| n.to_string()),
            ),
            _ => return Err(wrong()),
        },
        Type::Numeric | Type::Bignumeric => {
            let k = if t == Type::Numeric { DecimalKind::Numeric } else { DecimalKind::BigNumeric };
            Value::Decimal(match value {
                Pv::Bytes(b) => v::decimal_from_le_bytes(b, k)?,
                Pv::String(s) => v::decimal_from_str(s, k)?,
                Pv::F64(x) => v::decimal_from_f64(*x, k)?,
                Pv::F32(x) => v::decimal_from_f64(f64::from(*x), k)?,
                other => v::decimal_from_i128(int_of(other).ok_or_else(wrong)?, k)?,
            })
        }
        Type::Timestamp => match (value, kind) {
            (Pv::Message(m), Kind::Message(d)) => {
                let get = |n: &str| d.get_field_by_name(n).map(|f| m.get_field(&f).into_owned());
                let secs = get("seconds").and_then(|x| int_of(&x)).unwrap_or(0);
                let nanos = get("nanos").and_then(|x| int_of(&x)).unwrap_or(0);
                let us = secs.checked_mul(1_000_000).and_then(|s| s.checked_add(nanos / 1000));
                let us = us.and_then(|u| i64::try_from(u).ok()).ok_or_else(wrong)?;
                Value::Timestamp(v::check_timestamp_micros(us)?)
            }
            _ => Value::Timestamp(v::check_timestamp_micros(i64_of(value)?)?),
        },
        Type::Date => match value {
            Pv::String(s) => Value::Date(v::parse_date(s)?),
            other => Value::Date(v::check_date_days(i64_of(other)?)?),
        },
        Type::Datetime => match value {
            Pv::String(s) => Value::Datetime(v::parse_datetime(s)?),
            other => Value::Datetime(v::datetime_from_packed(i64_of(other)?)?),
        },
        Type::Time => match value {
            Pv::String(s) => Value::Time(v::parse_time(s)?),
            other => Value::Time(v::time_from_packed(i64_of(other)?)?),
        },
        Type::Interval => match (value, kind) {
            (Pv::Message(m), Kind::Message(d)) => {
                let get = |n: &str| d.get_field_by_name(n).map(|f| m.get_field(&f).into_owned());
                let secs = get("seconds").and_then(|x| int_of(&x)).unwrap_or(0);
                let nanos = get("nanos").and_then(|x| int_of(&x)).unwrap_or(0);
                Value::String(interval_text(secs, nanos))
            }
            _ => return Err(wrong()),
        },
        Type::Json | Type::Geography | Type::Struct | Type::Range | Type::Unspecified => {
            return Err(wrong());
        }
    })
}

/// A `google.protobuf.Duration` as an INTERVAL literal (`0-0 0 H:M:S.ffffff`).
fn interval_text(secs: i128, nanos: i128) -> String {
    let total_us = secs * 1_000_000 + nanos / 1000;
    let sign = if total_us < 0 { "-" } else { "" };
    let a = total_us.abs();
    let (h, m, s, us) = (a / 3_600_000_000, a / 60_000_000 % 60, a / 1_000_000 % 60, a % 1_000_000);
    format!("0-0 0 {sign}{h}:{m}:{s}.{us:06}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::proto_schema;
    use prost::Message as _;
    use prost_types::field_descriptor_proto::{Label, Type as P};
    use prost_types::{DescriptorProto, FieldDescriptorProto};

    fn field(name: &str, number: i32, t: P, label: Label) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            r#type: Some(t as i32),
            label: Some(label as i32),
            ..Default::default()
        }
    }

    use crate::rows::test_column as column;

    /// `id INT64, tags INT64 REPEATED, name STRING, s STRUCT<a INT64, b INT64>`.
    fn world() -> (ProtoWriter, Vec<TableFieldSchema>) {
        let (o, r) = (Label::Optional, Label::Repeated);
        let s = DescriptorProto {
            name: Some("S".into()),
            field: vec![field("a", 1, P::Int64, o), field("b", 2, P::Int64, o)],
            ..Default::default()
        };
        let mut sf = field("s", 4, P::Message, o);
        sf.type_name = Some("S".into());
        let row = DescriptorProto {
            name: Some("Row".into()),
            field: vec![
                field("id", 1, P::Int64, o),
                field("tags", 2, P::Int64, r),
                field("name", 3, P::String, o),
                sf,
            ],
            nested_type: vec![s],
            ..Default::default()
        };
        let int = |n: &str| column(n, Type::Int64, Mode::Nullable, vec![]);
        let columns = vec![
            int("id"),
            column("tags", Type::Int64, Mode::Repeated, vec![]),
            column("name", Type::String, Mode::Nullable, vec![]),
            column("s", Type::Struct, Mode::Nullable, vec![int("a"), int("b")]),
        ];
        let writer = proto_schema::load(&row.encode_to_vec(), &columns, "t").unwrap();
        (writer, columns)
    }

    fn decode(bytes: &[u8]) -> Result<Row, String> {
        let (writer, columns) = world();
        let fill = crate::emulator::defaults::fill_for(&columns, &Default::default(), 0).unwrap();
        let decoded = decode_row(&writer, bytes, &columns, &fill);
        // The check that guards the store must agree with the decode.
        let checked = check_rows(&writer, &[Bytes::copy_from_slice(bytes)], &columns, &fill);
        assert_eq!(checked.map_err(|mut e| e.remove(0).1), decoded.clone().map(|_| ()));
        decoded
    }

    #[test]
    fn proto2_wire_semantics() {
        use Value::{Array, Int64, Null, String as S, Struct};
        // id twice (the last counts), tags packed [1, 2, 300] then one more
        // unpacked, an unknown field 9, s given twice (merged).
        let row = [
            0x08, 1, 0x08, 2, 0x12, 4, 1, 2, 0xAC, 0x02, 0x10, 4, 0x48, 7, 0x22, 2, 0x08, 5, 0x22,
            2, 0x10, 6, 0x1A, 2, b'h', b'i',
        ];
        let want = vec![
            Int64(2),
            Array(vec![Int64(1), Int64(2), Int64(300), Int64(4)]),
            S("hi".into()),
            Struct(vec![Int64(5), Int64(6)]),
        ];
        assert_eq!(decode(&row).unwrap(), want);
        assert_eq!(decode(&[]).unwrap(), vec![Null, Array(vec![]), Null, Null]);
    }

    #[test]
    fn bytes_that_are_not_the_message_are_row_errors() {
        for (bytes, why) in [
            (&[0x0A, 1, 0][..], "id as length-delimited"),
            (&[0x1D, 0, 0, 0, 0], "name as fixed32"),
            (&[0x08], "truncated varint"),
            (&[0x1A, 5, b'a'], "length past the end"),
            (&[0x1A, 1, 0xFF], "invalid UTF-8"),
            (&[0x12, 3, 0xFF, 0xFF, 0xFF], "packed run cut inside a varint"),
            (&[0x22, 2, 0x08], "truncated nested message"),
        ] {
            let e = decode(bytes).expect_err(why);
            assert!(e.starts_with("Could not parse the row as Row:"), "{why}: {e}");
        }
    }
}
