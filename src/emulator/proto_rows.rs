//! Proto rows → stored rows, with proto2 semantics and BigQuery's value checks.
//!
//! Each serialized row is decoded with the writer's descriptor
//! ([`super::proto_schema`]). Proto2 gives every singular field presence, so
//! an absent field is NULL (never the type's zero). A row that fails to
//! decode or holds a value BigQuery would refuse yields a `RowError` with its
//! index; the caller then rejects the whole request (fact sheet §2.4).

use prost_reflect::{DynamicMessage, Kind, ReflectMessage, Value as Pv};

use super::defaults::{self, Fill};
use super::proto_schema::{FieldPlan, Plan, ProtoWriter, well_known};
use super::values::{self as v, DecimalKind, Row, Value};
use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::table_field_schema::{Mode, Type};

/// Decodes every row; `Err` holds one `(index, message)` per bad row.
pub fn decode_rows(
    writer: &ProtoWriter,
    rows: &[Vec<u8>],
    columns: &[TableFieldSchema],
    fill: &Fill,
) -> Result<Vec<Row>, Vec<(usize, String)>> {
    let mut out = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for (i, bytes) in rows.iter().enumerate() {
        let decoded = DynamicMessage::decode(writer.message.clone(), bytes.as_slice())
            .map_err(|e| format!("Could not parse the row as {}: {e}", writer.message.name()))
            .and_then(|m| message_to_cells(&m, &writer.plan, columns, "", Some(fill)));
        match decoded {
            Ok(row) => out.push(row),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

fn empty_cell(c: &TableFieldSchema) -> Value {
    if c.mode == Mode::Repeated as i32 { Value::Array(vec![]) } else { Value::Null }
}

fn message_to_cells(
    msg: &DynamicMessage,
    plan: &Plan,
    columns: &[TableFieldSchema],
    path: &str,
    fill: Option<&Fill>,
) -> Result<Vec<Value>, String> {
    let mut cells: Vec<Value> = columns.iter().map(empty_cell).collect();
    for fp in &plan.fields {
        let Some(col) = columns.get(fp.column) else { continue };
        let here = format!("{path}{}", col.name);
        if !msg.has_field(&fp.proto) {
            continue;
        }
        let value = msg.get_field(&fp.proto);
        let cell = match value.as_ref() {
            Pv::List(items) => Value::Array(
                items.iter().map(|x| convert(x, fp, col, &here)).collect::<Result<Vec<_>, _>>()?,
            ),
            single => convert(single, fp, col, &here)?,
        };
        if let Some(slot) = cells.get_mut(fp.column) {
            *slot = cell;
        }
    }
    if let Some(fill) = fill {
        defaults::apply(&mut cells, fill);
    }
    for (c, cell) in columns.iter().zip(&cells) {
        if c.mode == Mode::Required as i32 && *cell == Value::Null {
            return Err(format!("Missing required field: {path}{}.", c.name));
        }
    }
    Ok(cells)
}

fn at(path: &str, e: String) -> String {
    format!("Invalid value for field {path}: {e}")
}

fn convert(
    value: &Pv,
    fp: &FieldPlan,
    col: &TableFieldSchema,
    path: &str,
) -> Result<Value, String> {
    match fp.bq_type {
        Type::Struct => match (value, &fp.sub) {
            (Pv::Message(m), Some(sub)) => {
                Ok(Value::Struct(message_to_cells(m, sub, &col.fields, &format!("{path}."), None)?))
            }
            _ => Err(at(path, "expected a message".into())),
        },
        Type::Range => {
            let elem = col.range_element_type.as_ref().and_then(|e| Type::try_from(e.r#type).ok());
            let elem = elem.unwrap_or(Type::Unspecified);
            let Pv::Message(m) = value else { return Err(at(path, "expected a message".into())) };
            let bound = |name: &str| -> Result<Value, String> {
                match m.descriptor().get_field_by_name(name) {
                    Some(f) if m.has_field(&f) => {
                        scalar(elem, m.get_field(&f).as_ref(), &f.kind()).map_err(|e| at(path, e))
                    }
                    _ => Ok(Value::Null),
                }
            };
            let (start, end) = (bound("start")?, bound("end")?);
            v::check_range(&start, &end).map_err(|e| at(path, e))?;
            Ok(Value::Range(Box::new(start), Box::new(end)))
        }
        t => scalar(t, value, &fp.proto.kind()).map_err(|e| at(path, e)),
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
pub fn scalar(t: Type, value: &Pv, kind: &Kind) -> Result<Value, String> {
    if let Some((inner, inner_kind)) = unwrap_wrapper(value, kind) {
        return scalar(t, &inner, &inner_kind);
    }
    let wrong = || format!("cannot convert {value:?} to {}", t.as_str_name());
    Ok(match t {
        Type::Bool => match value {
            Pv::Bool(b) => Value::Bool(*b),
            other => Value::Bool(int_of(other).ok_or_else(wrong)? != 0),
        },
        Type::Bytes => match value {
            Pv::Bytes(b) => Value::Bytes(b.to_vec()),
            Pv::String(s) => Value::Bytes(s.as_bytes().to_vec()),
            _ => return Err(wrong()),
        },
        Type::Int64 => Value::Int64(i64_of(value)?),
        Type::Double => match value {
            Pv::F64(x) => Value::Float64(*x),
            Pv::F32(x) => Value::Float64(f64::from(*x)),
            _ => return Err(wrong()),
        },
        Type::String => match (value, kind) {
            (Pv::String(s), _) => Value::String(s.clone()),
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
        Type::Json => match value {
            Pv::String(s) => {
                v::check_json(s)?;
                Value::String(s.clone())
            }
            _ => return Err(wrong()),
        },
        Type::Geography => match value {
            Pv::String(s) => {
                v::check_geography(s)?;
                Value::String(s.clone())
            }
            _ => return Err(wrong()),
        },
        Type::Interval => match (value, kind) {
            (Pv::String(s), _) => Value::String(s.clone()),
            (Pv::Message(m), Kind::Message(d)) => {
                let get = |n: &str| d.get_field_by_name(n).map(|f| m.get_field(&f).into_owned());
                let secs = get("seconds").and_then(|x| int_of(&x)).unwrap_or(0);
                let nanos = get("nanos").and_then(|x| int_of(&x)).unwrap_or(0);
                Value::String(interval_text(secs, nanos))
            }
            _ => return Err(wrong()),
        },
        Type::Struct | Type::Range | Type::Unspecified => return Err(wrong()),
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
