//! Missing values (fact sheet §2.7): what a column gets when the writer
//! schema or the row leaves it out.
//!
//! `missing_value_interpretations` (per request, top-level columns) overrides
//! `default_missing_value_interpretation` (sticky on the connection); without
//! either a missing value is NULL. DEFAULT_VALUE fills the column's
//! `default_value_expression`. The emulator evaluates the expressions people
//! use in practice — literals, `NULL`, `CURRENT_TIMESTAMP()`,
//! `CURRENT_DATE()`, `CURRENT_DATETIME()`, `GENERATE_UUID()` — and treats any
//! other expression as NULL.

use std::collections::HashMap;

use chrono::Utc;

use super::values::{self as v, DecimalKind, Value};
use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::append_rows_request::MissingValueInterpretation as Mvi;
use crate::pb::storage::table_field_schema::{Mode, Type};

/// For each top-level column: the value a missing cell takes, if not NULL.
pub type Fill = Vec<Option<Value>>;

/// Decides the fill for one request.
///
/// # Errors
/// An `UNSPECIFIED` interpretation in the per-column map is refused, as the service does.
pub fn fill_for(
    columns: &[TableFieldSchema],
    per_column: &HashMap<String, i32>,
    sticky_default: i32,
) -> Result<Fill, String> {
    for (name, m) in per_column {
        if *m == Mvi::Unspecified as i32 {
            return Err(format!("missing_value_interpretations for {name:?} is UNSPECIFIED"));
        }
    }
    Ok(columns
        .iter()
        .map(|c| {
            let chosen = per_column
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&c.name))
                .map(|(_, m)| *m)
                .unwrap_or(sticky_default);
            (chosen == Mvi::DefaultValue as i32 && c.mode != Mode::Repeated as i32)
                .then(|| evaluate(c))
                .flatten()
        })
        .collect())
}

/// Fills missing (NULL) top-level cells of `row`.
pub fn apply(row: &mut [Value], fill: &Fill) {
    for (cell, f) in row.iter_mut().zip(fill) {
        if let (Value::Null, Some(value)) = (&*cell, f) {
            *cell = value.clone();
        }
    }
}

fn evaluate(c: &TableFieldSchema) -> Option<Value> {
    let expr = c.default_value_expression.trim();
    if expr.is_empty() {
        return None;
    }
    let t = Type::try_from(c.r#type).unwrap_or(Type::Unspecified);
    let upper = expr.to_ascii_uppercase();
    let call = upper.trim_end_matches("()");
    let now = Utc::now();
    match call {
        "NULL" => return None,
        "CURRENT_TIMESTAMP" if t == Type::Timestamp => {
            return Some(Value::Timestamp(now.timestamp_micros()));
        }
        "CURRENT_DATE" if t == Type::Date => {
            return v::parse_date(&now.format("%Y-%m-%d").to_string()).ok().map(Value::Date);
        }
        "CURRENT_DATETIME" if t == Type::Datetime => return Some(Value::Datetime(now.naive_utc())),
        "GENERATE_UUID" if t == Type::String => {
            return Some(Value::String(uuid::Uuid::new_v4().to_string()));
        }
        "TRUE" | "FALSE" if t == Type::Bool => return Some(Value::Bool(call == "TRUE")),
        _ => {}
    }
    let literal = unquote(expr);
    match t {
        Type::String => literal.map(|s| Value::String(s.to_string())),
        Type::Bytes => literal.map(|s| Value::Bytes(s.as_bytes().to_vec())),
        Type::Int64 => expr.parse().ok().map(Value::Int64),
        Type::Double => expr.parse().ok().map(Value::Float64),
        Type::Numeric | Type::Bignumeric => {
            let kind = DecimalKind::from_type(t)?;
            v::decimal_from_str(literal.unwrap_or(expr), kind).ok().map(Value::Decimal)
        }
        Type::Date => v::parse_date(literal?).ok().map(Value::Date),
        Type::Datetime => v::parse_datetime(literal?).ok().map(Value::Datetime),
        Type::Time => v::parse_time(literal?).ok().map(Value::Time),
        Type::Json => {
            literal.filter(|s| v::check_json(s).is_ok()).map(|s| Value::String(s.to_string()))
        }
        _ => None,
    }
}

/// `'text'`, `"text"`, or a typed literal such as `DATE '2024-01-01'`.
fn unquote(expr: &str) -> Option<&str> {
    let start = expr.find(['\'', '"'])?;
    let quote = expr.get(start..start + 1)?;
    let rest = expr.get(start + 1..)?;
    rest.strip_suffix(quote)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, t: Type, mode: Mode, expr: &str) -> TableFieldSchema {
        TableFieldSchema {
            name: name.into(),
            r#type: t as i32,
            mode: mode as i32,
            default_value_expression: expr.into(),
            ..Default::default()
        }
    }

    #[test]
    fn default_value_fills_only_when_asked() {
        let cols = vec![
            col("s", Type::String, Mode::Required, "'dflt'"),
            col("i", Type::Int64, Mode::Nullable, "42"),
            col("d", Type::Date, Mode::Nullable, "DATE '2024-01-02'"),
            col("ts", Type::Timestamp, Mode::Nullable, "CURRENT_TIMESTAMP()"),
            col("x", Type::String, Mode::Nullable, ""),
        ];
        let none = fill_for(&cols, &HashMap::new(), 0).unwrap();
        assert!(none.iter().all(Option::is_none));
        let all = fill_for(&cols, &HashMap::new(), Mvi::DefaultValue as i32).unwrap();
        assert_eq!(all[0], Some(Value::String("dflt".into())));
        assert_eq!(all[1], Some(Value::Int64(42)));
        assert_eq!(all[2], Some(Value::Date(19_724)));
        assert!(matches!(all[3], Some(Value::Timestamp(_))));
        assert_eq!(all[4], None);
        let per = HashMap::from([("I".to_string(), Mvi::NullValue as i32)]);
        let mixed = fill_for(&cols, &per, Mvi::DefaultValue as i32).unwrap();
        assert_eq!(mixed[1], None, "per-column overrides the sticky default");
        let mut row = vec![Value::Null, Value::Int64(1), Value::Null, Value::Null, Value::Null];
        apply(&mut row, &mixed);
        assert_eq!(row[0], Value::String("dflt".into()));
        assert_eq!(row[1], Value::Int64(1));
        let bad = HashMap::from([("s".to_string(), 0)]);
        assert!(fill_for(&cols, &bad, 0).is_err());
    }
}
