//! Arrow rows → stored rows (`AppendRowsRequest.arrow_rows`, fact sheet §5).
//!
//! The writer schema is an IPC encapsulated Schema message and each request
//! carries one encapsulated RecordBatch message, with no file footer or EOS
//! marker; the two are read back to back as an IPC stream. Columns map by
//! name (case-insensitive) with §5's type table: decimal128 → NUMERIC,
//! decimal256 → BIGNUMERIC, date32, timestamp(µs) with a zone → TIMESTAMP and
//! without → DATETIME, time64(µs), list → REPEATED, struct → RECORD/RANGE.
//! Values pass the same checks as proto rows ([`super::values`]).

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::i256;
use arrow_ipc::reader::StreamReader;
use arrow_schema::{DataType, Field, Fields, SchemaRef, TimeUnit};
use tonic::Code;

use super::defaults::{self, Fill};
use super::errors::Failure;
use super::values::{self as v, DecimalKind, Row, Value};
use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::storage_error::StorageErrorCode;
use crate::pb::storage::table_field_schema::{Mode, Type};

/// An Arrow writer schema accepted for a table.
pub struct ArrowWriter {
    schema_bytes: Vec<u8>,
    schema: SchemaRef,
}

/// Why a batch was refused: as a whole, or row by row.
pub enum DecodeFailure {
    Request(Failure),
    Rows(Vec<(usize, String)>),
}

fn read_stream(bytes: &[u8]) -> Result<(SchemaRef, Option<RecordBatch>), String> {
    // arrow-ipc validates what it reads; the guard keeps a decoder bug on
    // hostile input from taking the emulator down.
    catch_unwind(AssertUnwindSafe(|| {
        let mut reader =
            StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| e.to_string())?;
        let schema = reader.schema();
        let batch = reader.next().transpose().map_err(|e| e.to_string())?;
        Ok((schema, batch))
    }))
    .unwrap_or_else(|_| Err("the Arrow IPC data could not be decoded".into()))
}

/// Reads the IPC schema message and checks it against `columns`.
///
/// # Errors
/// INVALID_ARGUMENT for unreadable data or incompatible types;
/// SCHEMA_MISMATCH_EXTRA_FIELDS for a field the table lacks.
pub fn load(
    schema_bytes: &[u8],
    columns: &[TableFieldSchema],
    entity: &str,
) -> Result<ArrowWriter, Failure> {
    let (schema, _) = read_stream(schema_bytes)
        .map_err(|e| Failure::invalid(format!("Invalid Arrow schema: {e}")))?;
    check_fields(schema.fields(), columns, "", entity)?;
    Ok(ArrowWriter { schema_bytes: schema_bytes.to_vec(), schema })
}

fn find<'a>(columns: &'a [TableFieldSchema], name: &str) -> Option<(usize, &'a TableFieldSchema)> {
    columns.iter().enumerate().find(|(_, c)| c.name.eq_ignore_ascii_case(name))
}

fn check_fields(
    fields: &Fields,
    columns: &[TableFieldSchema],
    path: &str,
    entity: &str,
) -> Result<(), Failure> {
    for f in fields {
        let Some((_, col)) = find(columns, f.name()) else {
            return Err(Failure::storage(
                Code::InvalidArgument,
                StorageErrorCode::SchemaMismatchExtraFields,
                entity,
                format!(
                    "Input schema has more fields than BigQuery schema, extra fields: '{path}{}'",
                    f.name()
                ),
            ));
        };
        let mismatch = || {
            Failure::invalid(format!(
                "The Arrow field {path}{} of type {} does not fit the BigQuery column of type {} mode {}",
                f.name(),
                f.data_type(),
                Type::try_from(col.r#type).unwrap_or(Type::Unspecified).as_str_name(),
                Mode::try_from(col.mode).unwrap_or(Mode::Nullable).as_str_name()
            ))
        };
        let repeated = col.mode == Mode::Repeated as i32;
        let elem = match (f.data_type(), repeated) {
            (DataType::List(e) | DataType::LargeList(e), true) => e.as_ref(),
            (_, true) | (DataType::List(_) | DataType::LargeList(_), false) => {
                return Err(mismatch());
            }
            _ => f.as_ref(),
        };
        let t = Type::try_from(col.r#type).unwrap_or(Type::Unspecified);
        match (t, elem.data_type()) {
            (Type::Struct, DataType::Struct(sub)) => {
                check_fields(sub, &col.fields, &format!("{path}{}.", f.name()), entity)?
            }
            (Type::Range, DataType::Struct(sub)) => {
                let et = col
                    .range_element_type
                    .as_ref()
                    .and_then(|e| Type::try_from(e.r#type).ok())
                    .unwrap_or(Type::Unspecified);
                if !sub.iter().all(|s| {
                    (s.name() == "start" || s.name() == "end") && compatible(et, s.data_type())
                }) {
                    return Err(mismatch());
                }
            }
            (t, dt) if compatible(t, dt) => {}
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

/// Arrow types each BigQuery type accepts (fact sheet §5, plus the obvious widenings).
fn compatible(t: Type, dt: &DataType) -> bool {
    use DataType as D;
    let int =
        matches!(dt, D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32);
    let text = matches!(dt, D::Utf8 | D::LargeUtf8);
    match t {
        Type::Bool => matches!(dt, D::Boolean),
        Type::Int64 => int,
        Type::Double => matches!(dt, D::Float32 | D::Float64),
        Type::String | Type::Json | Type::Geography | Type::Interval => text,
        Type::Bytes => matches!(dt, D::Binary | D::LargeBinary | D::FixedSizeBinary(_)),
        Type::Numeric => {
            matches!(dt, D::Decimal128(_, s) | D::Decimal256(_, s) if *s >= 0 && *s <= 9)
        }
        Type::Bignumeric => {
            matches!(dt, D::Decimal128(_, s) | D::Decimal256(_, s) if *s >= 0 && *s <= 38)
        }
        Type::Date => matches!(dt, D::Date32),
        Type::Datetime => matches!(dt, D::Timestamp(TimeUnit::Microsecond, None)),
        Type::Timestamp => matches!(dt, D::Timestamp(TimeUnit::Microsecond, _)),
        Type::Time => matches!(dt, D::Time64(TimeUnit::Microsecond)),
        Type::Struct | Type::Range | Type::Unspecified => false,
    }
}

/// Decodes one IPC RecordBatch message into rows.
pub fn decode_rows(
    w: &ArrowWriter,
    batch: &[u8],
    columns: &[TableFieldSchema],
    fill: &Fill,
) -> Result<Vec<Row>, DecodeFailure> {
    let mut bytes = Vec::with_capacity(w.schema_bytes.len() + batch.len());
    bytes.extend_from_slice(&w.schema_bytes);
    bytes.extend_from_slice(batch);
    let (_, batch) = read_stream(&bytes).map_err(|e| {
        DecodeFailure::Request(Failure::invalid(format!("Invalid Arrow record batch: {e}")))
    })?;
    let Some(batch) = batch else { return Ok(Vec::new()) };
    let arrays: Vec<(&Field, &ArrayRef)> =
        w.schema.fields().iter().map(|f| f.as_ref()).zip(batch.columns()).collect();
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut errors = Vec::new();
    for i in 0..batch.num_rows() {
        match cells(&arrays, i, columns, "", Some(fill)) {
            Ok(r) => rows.push(r),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() { Ok(rows) } else { Err(DecodeFailure::Rows(errors)) }
}

fn cells(
    arrays: &[(&Field, &ArrayRef)],
    i: usize,
    columns: &[TableFieldSchema],
    path: &str,
    fill: Option<&Fill>,
) -> Result<Vec<Value>, String> {
    let mut out: Vec<Value> = columns
        .iter()
        .map(|c| if c.mode == Mode::Repeated as i32 { Value::Array(vec![]) } else { Value::Null })
        .collect();
    for (field, array) in arrays {
        let Some((idx, col)) = find(columns, field.name()) else { continue };
        if array.is_null(i) {
            continue;
        }
        let here = format!("{path}{}", col.name);
        let cell = if col.mode == Mode::Repeated as i32 {
            let items = match array.data_type() {
                DataType::List(_) => array.as_list::<i32>().value(i),
                DataType::LargeList(_) => array.as_list::<i64>().value(i),
                _ => return Err(format!("Invalid value for field {here}: expected a list")),
            };
            let mut vals = Vec::with_capacity(items.len());
            for j in 0..items.len() {
                if items.is_null(j) {
                    return Err(format!(
                        "Invalid value for field {here}: a REPEATED value cannot hold NULL"
                    ));
                }
                vals.push(value(&items, j, col, &here)?);
            }
            Value::Array(vals)
        } else {
            value(array, i, col, &here)?
        };
        if let Some(slot) = out.get_mut(idx) {
            *slot = cell;
        }
    }
    if let Some(fill) = fill {
        defaults::apply(&mut out, fill);
    }
    for (c, cell) in columns.iter().zip(&out) {
        if c.mode == Mode::Required as i32 && *cell == Value::Null {
            return Err(format!("Missing required field: {path}{}.", c.name));
        }
    }
    Ok(out)
}

fn value(a: &ArrayRef, i: usize, col: &TableFieldSchema, path: &str) -> Result<Value, String> {
    let t = Type::try_from(col.r#type).unwrap_or(Type::Unspecified);
    match (t, a.data_type()) {
        (Type::Struct, DataType::Struct(fields)) => {
            let s = a.as_struct();
            let arrays: Vec<(&Field, &ArrayRef)> =
                fields.iter().map(|f| f.as_ref()).zip(s.columns()).collect();
            Ok(Value::Struct(cells(&arrays, i, &col.fields, &format!("{path}."), None)?))
        }
        (Type::Range, DataType::Struct(fields)) => {
            let s = a.as_struct();
            let elem = v::range_element_field(col);
            let et = Type::try_from(elem.r#type).unwrap_or(Type::Unspecified);
            let bound = |name: &str| -> Result<Value, String> {
                match fields.iter().position(|f| f.name() == name).and_then(|k| s.columns().get(k))
                {
                    Some(arr) if !arr.is_null(i) => scalar(et, arr, i)
                        .map_err(|e| format!("Invalid value for field {path}: {e}")),
                    _ => Ok(Value::Null),
                }
            };
            let (start, end) = (bound("start")?, bound("end")?);
            v::check_range(&start, &end)
                .map_err(|e| format!("Invalid value for field {path}: {e}"))?;
            Ok(Value::Range(Box::new(start), Box::new(end)))
        }
        _ => scalar(t, a, i).map_err(|e| format!("Invalid value for field {path}: {e}")),
    }
}

fn rescale(unscaled: i256, from: i8, kind: DecimalKind) -> Result<i256, String> {
    let to = kind.scale() as i32;
    let from = i32::from(from);
    let ten = i256::from_i128(10);
    let out = if from <= to {
        ten.checked_pow((to - from) as u32).and_then(|m| unscaled.checked_mul(m))
    } else {
        let d = ten.checked_pow((from - to) as u32).ok_or("scale overflow")?;
        match unscaled.checked_rem(d) {
            Some(r) if r == i256::ZERO => unscaled.checked_div(d),
            _ => return Err(format!("{kind:?} value has more than {to} fractional digits")),
        }
    };
    kind.check(out.ok_or_else(|| format!("{kind:?} value out of range"))?)
}

fn scalar(t: Type, a: &ArrayRef, i: usize) -> Result<Value, String> {
    use DataType as D;
    let dt = a.data_type();
    let int = || -> Option<i64> {
        Some(match dt {
            D::Int8 => i64::from(a.as_primitive::<Int8Type>().value(i)),
            D::Int16 => i64::from(a.as_primitive::<Int16Type>().value(i)),
            D::Int32 => i64::from(a.as_primitive::<Int32Type>().value(i)),
            D::Int64 => a.as_primitive::<Int64Type>().value(i),
            D::UInt8 => i64::from(a.as_primitive::<UInt8Type>().value(i)),
            D::UInt16 => i64::from(a.as_primitive::<UInt16Type>().value(i)),
            D::UInt32 => i64::from(a.as_primitive::<UInt32Type>().value(i)),
            _ => return None,
        })
    };
    let text = || -> Option<&str> {
        match dt {
            D::Utf8 => Some(a.as_string::<i32>().value(i)),
            D::LargeUtf8 => Some(a.as_string::<i64>().value(i)),
            _ => None,
        }
    };
    let wrong = || format!("unexpected Arrow type {dt}");
    Ok(match t {
        Type::Bool => Value::Bool(a.as_boolean_opt().ok_or_else(wrong)?.value(i)),
        Type::Int64 => Value::Int64(int().ok_or_else(wrong)?),
        Type::Double => Value::Float64(match dt {
            D::Float32 => f64::from(a.as_primitive::<Float32Type>().value(i)),
            D::Float64 => a.as_primitive::<Float64Type>().value(i),
            _ => return Err(wrong()),
        }),
        Type::String | Type::Interval => Value::String(text().ok_or_else(wrong)?.to_string()),
        Type::Json => {
            let s = text().ok_or_else(wrong)?;
            v::check_json(s)?;
            Value::String(s.to_string())
        }
        Type::Geography => {
            let s = text().ok_or_else(wrong)?;
            v::check_geography(s)?;
            Value::String(s.to_string())
        }
        Type::Bytes => Value::Bytes(match dt {
            D::Binary => a.as_binary::<i32>().value(i).to_vec(),
            D::LargeBinary => a.as_binary::<i64>().value(i).to_vec(),
            D::FixedSizeBinary(_) => a.as_fixed_size_binary().value(i).to_vec(),
            _ => return Err(wrong()),
        }),
        Type::Numeric | Type::Bignumeric => {
            let kind =
                if t == Type::Numeric { DecimalKind::Numeric } else { DecimalKind::BigNumeric };
            Value::Decimal(match dt {
                D::Decimal128(_, s) => {
                    rescale(i256::from_i128(a.as_primitive::<Decimal128Type>().value(i)), *s, kind)?
                }
                D::Decimal256(_, s) => {
                    rescale(a.as_primitive::<Decimal256Type>().value(i), *s, kind)?
                }
                _ => return Err(wrong()),
            })
        }
        Type::Date => Value::Date(v::check_date_days(i64::from(
            a.as_primitive_opt::<Date32Type>().ok_or_else(wrong)?.value(i),
        ))?),
        Type::Timestamp => {
            let us = a.as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(wrong)?.value(i);
            Value::Timestamp(v::check_timestamp_micros(us)?)
        }
        Type::Datetime => {
            let us = a.as_primitive_opt::<TimestampMicrosecondType>().ok_or_else(wrong)?.value(i);
            let us = v::check_timestamp_micros(us)?;
            let dt = chrono::DateTime::from_timestamp_micros(us).ok_or_else(wrong)?;
            Value::Datetime(dt.naive_utc())
        }
        Type::Time => {
            let us = a.as_primitive_opt::<Time64MicrosecondType>().ok_or_else(wrong)?.value(i);
            let secs = u32::try_from(us.div_euclid(1_000_000))
                .map_err(|_| format!("TIME value {us} out of range"))?;
            let micros = (us.rem_euclid(1_000_000) * 1000) as u32;
            Value::Time(
                chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, micros)
                    .ok_or_else(|| format!("TIME value {us} out of range"))?,
            )
        }
        Type::Struct | Type::Range | Type::Unspecified => return Err(wrong()),
    })
}
