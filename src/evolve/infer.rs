//! Column types inferred from JSON values (`UNKNOWN_FIELDS=add`), by the
//! rules of docs/coercions.md ("New columns"):
//!
//! | JSON value | new column |
//! | --- | --- |
//! | string | STRING |
//! | integer (fits INT64) | INT64 |
//! | any other number | FLOAT64 |
//! | true / false | BOOL |
//! | object | RECORD with a field per member (by these rules) |
//! | array | REPEATED of its elements' type (integers and other numbers mixed: FLOAT64) |
//! | null, [], {}, an array of nulls | nothing yet: a later value decides |
//! | an array of arrays | nothing: BigQuery has no arrays of arrays |
//!
//! Every new column is NULLABLE (REPEATED for arrays). Existing columns are
//! never changed: a value that conflicts with one stays a schema mismatch
//! for the encoder to report. Objects in an existing RECORD (or REPEATED
//! RECORD) column may add subfields. The first value seen decides a type.

use serde_json::{Map, Value};

use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::table_field_schema::{Mode, Type};

/// BigQuery's column name limit (legacy rules: letters, digits, `_`).
const MAX_NAME_LEN: usize = 300;

/// Prefixes BigQuery reserves for its own pseudo-columns (case-insensitive).
const RESERVED_PREFIXES: [&str; 6] =
    ["_table_", "_file_", "_partition", "_row_timestamp", "__root__", "_colon_"];

/// Adds to `fields` the columns `object` has and `fields` lacks (recursing
/// into RECORDs). Returns whether anything was added.
pub fn widen(fields: &mut Vec<TableFieldSchema>, object: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (key, value) in object {
        match fields.iter_mut().find(|f| f.name.eq_ignore_ascii_case(key)) {
            Some(f) if f.r#type == Type::Struct as i32 => {
                changed |= widen_record(f, value);
            }
            Some(_) => {}
            None => {
                if let Some(column) = infer(key, value) {
                    fields.push(column);
                    changed = true;
                }
            }
        }
    }
    changed
}

/// An existing RECORD column seeing `value`: its objects may add subfields.
fn widen_record(column: &mut TableFieldSchema, value: &Value) -> bool {
    let repeated = column.mode == Mode::Repeated as i32;
    match value {
        Value::Object(o) if !repeated => widen(&mut column.fields, o),
        Value::Array(items) if repeated => items.iter().fold(false, |changed, item| match item {
            Value::Object(o) => widen(&mut column.fields, o) | changed,
            _ => changed,
        }),
        _ => false,
    }
}

/// The column `value` calls for under `name`, if any yet.
pub fn infer(name: &str, value: &Value) -> Option<TableFieldSchema> {
    if !valid_name(name) {
        return None;
    }
    let (ty, mode, fields) = match value {
        Value::Array(items) => {
            let (ty, fields) = element_type(items)?;
            (ty, Mode::Repeated, fields)
        }
        v => {
            let (ty, fields) = scalar_or_record(v)?;
            (ty, Mode::Nullable, fields)
        }
    };
    Some(TableFieldSchema {
        name: name.to_string(),
        r#type: ty as i32,
        mode: mode as i32,
        fields,
        ..Default::default()
    })
}

fn scalar_or_record(v: &Value) -> Option<(Type, Vec<TableFieldSchema>)> {
    match v {
        Value::Null | Value::Array(_) => None,
        Value::Bool(_) => Some((Type::Bool, Vec::new())),
        Value::Number(n) if n.is_i64() => Some((Type::Int64, Vec::new())),
        Value::Number(_) => Some((Type::Double, Vec::new())),
        Value::String(_) => Some((Type::String, Vec::new())),
        Value::Object(o) => {
            let mut fields = Vec::new();
            widen(&mut fields, o);
            (!fields.is_empty()).then_some((Type::Struct, fields))
        }
    }
}

/// The type of an array's elements: the first non-null decides, except
/// that integers and other numbers together are FLOAT64 and objects merge.
fn element_type(items: &[Value]) -> Option<(Type, Vec<TableFieldSchema>)> {
    let first = items.iter().find(|v| !v.is_null())?;
    match first {
        Value::Array(_) => None,
        Value::Object(_) => {
            let mut fields = Vec::new();
            for item in items {
                if let Value::Object(o) = item {
                    widen(&mut fields, o);
                }
            }
            (!fields.is_empty()).then_some((Type::Struct, fields))
        }
        Value::Number(_) => {
            let all_int = items.iter().all(|v| v.as_number().is_none_or(|n| n.is_i64()));
            Some((if all_int { Type::Int64 } else { Type::Double }, Vec::new()))
        }
        v => scalar_or_record(v),
    }
}

/// Letters, digits and `_`, not starting with a digit, at most 300
/// characters, no reserved prefix: a name the service accepts everywhere.
pub fn valid_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// `base` with what `wanted` has and `base` lacks appended (at any depth);
/// `base`'s own fields are kept exactly as they are.
pub fn merge(base: &[TableFieldSchema], wanted: &[TableFieldSchema]) -> Vec<TableFieldSchema> {
    let mut out = base.to_vec();
    for w in wanted {
        match out.iter_mut().find(|f| f.name.eq_ignore_ascii_case(&w.name)) {
            Some(f) if f.r#type == Type::Struct as i32 && w.r#type == Type::Struct as i32 => {
                f.fields = merge(&f.fields, &w.fields);
            }
            Some(_) => {}
            None => out.push(w.clone()),
        }
    }
    out
}

/// Whether `have` already holds every field of `wanted` (by name, at any depth).
pub fn covers(have: &[TableFieldSchema], wanted: &[TableFieldSchema]) -> bool {
    merge(have, wanted) == have
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::test_column;
    use serde_json::json;
    use test_case::test_case;

    fn added(fields: &[TableFieldSchema], record: Value) -> Vec<TableFieldSchema> {
        let mut f = fields.to_vec();
        widen(&mut f, record.as_object().unwrap());
        f[fields.len()..].to_vec()
    }

    fn shape(f: &TableFieldSchema) -> (String, Type, Mode) {
        (f.name.clone(), f.r#type(), f.mode())
    }

    #[test_case(json!("x"), Type::String, Mode::Nullable ; "string")]
    #[test_case(json!(7), Type::Int64, Mode::Nullable ; "integer")]
    #[test_case(json!(-7), Type::Int64, Mode::Nullable ; "negative integer")]
    #[test_case(json!(1.5), Type::Double, Mode::Nullable ; "fraction")]
    #[test_case(json!(18446744073709551615u64), Type::Double, Mode::Nullable ; "beyond INT64")]
    #[test_case(json!(true), Type::Bool, Mode::Nullable ; "boolean")]
    #[test_case(json!(["a", null, "b"]), Type::String, Mode::Repeated ; "array of strings")]
    #[test_case(json!([1, 2.5]), Type::Double, Mode::Repeated ; "mixed numbers")]
    #[test_case(json!([1, 2]), Type::Int64, Mode::Repeated ; "integers")]
    #[test_case(json!({"a": 1}), Type::Struct, Mode::Nullable ; "object")]
    #[test_case(json!([{"a": 1}, {"b": "x"}]), Type::Struct, Mode::Repeated ; "array of objects")]
    fn a_value_decides_a_type(value: Value, ty: Type, mode: Mode) {
        let f = added(&[], json!({ "n": value }));
        assert_eq!(f.iter().map(shape).collect::<Vec<_>>(), [("n".into(), ty, mode)]);
    }

    #[test_case(json!(null) ; "null")]
    #[test_case(json!([]) ; "empty array")]
    #[test_case(json!([null]) ; "array of nulls")]
    #[test_case(json!({}) ; "empty object")]
    #[test_case(json!({"a": null}) ; "object of nulls")]
    #[test_case(json!([[1]]) ; "array of arrays")]
    fn nothing_to_add_yet(value: Value) {
        assert!(added(&[], json!({ "n": value })).is_empty());
    }

    #[test]
    fn objects_become_records_and_arrays_of_objects_merge() {
        let f = added(&[], json!({"o": {"a": 1, "b": {"c": "x"}}, "l": [{"a": 1}, {"b": true}]}));
        // serde_json objects iterate in key order: "l" before "o".
        let (l, o) = (&f[0], &f[1]);
        assert_eq!(shape(&o.fields[0]), ("a".into(), Type::Int64, Mode::Nullable));
        assert_eq!(o.fields[1].fields[0].name, "c");
        assert_eq!(shape(l), ("l".into(), Type::Struct, Mode::Repeated));
        assert_eq!(l.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    }

    #[test]
    fn existing_columns_are_never_changed_but_records_gain_subfields() {
        let mut rec = test_column("r", Type::Struct, Mode::Nullable, vec![]);
        rec.fields = vec![test_column("x", Type::String, Mode::Nullable, vec![])];
        let base = vec![test_column("id", Type::Int64, Mode::Required, vec![]), rec];
        let mut f = base.clone();
        // "id" conflicts (a string): left alone; "R" matches case-insensitively.
        assert!(widen(&mut f, json!({"id": "abc", "R": {"x": 1, "y": 2.5}}).as_object().unwrap()));
        assert_eq!(f[0], base[0]);
        assert_eq!(
            f[1].fields.iter().map(shape).collect::<Vec<_>>()[1],
            ("y".into(), Type::Double, Mode::Nullable)
        );
        assert!(!widen(&mut f, json!({"id": 1, "r": {"x": "s"}}).as_object().unwrap()));
    }

    #[test_case("ok_name", true ; "plain")]
    #[test_case("_x", true ; "underscore first")]
    #[test_case("1x", false ; "digit first")]
    #[test_case("a-b", false ; "dash")]
    #[test_case("", false ; "empty")]
    #[test_case("_PARTITIONTIME", false ; "reserved")]
    fn names(name: &str, ok: bool) {
        assert_eq!(valid_name(name), ok);
        assert_eq!(added(&[], json!({ name: 1 })).len(), usize::from(ok));
    }

    #[test]
    fn merge_keeps_the_base_and_appends_what_is_missing() {
        let base = vec![test_column("a", Type::String, Mode::Nullable, vec![])];
        let wanted = vec![
            test_column("A", Type::Int64, Mode::Nullable, vec![]),
            test_column("b", Type::Bool, Mode::Nullable, vec![]),
        ];
        let m = merge(&base, &wanted);
        assert_eq!(
            m.iter().map(shape).collect::<Vec<_>>(),
            [("a".into(), Type::String, Mode::Nullable), ("b".into(), Type::Bool, Mode::Nullable)]
        );
        assert!(covers(&m, &wanted));
        assert!(!covers(&base, &wanted));
    }
}
