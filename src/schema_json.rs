//! Table schemas in the `bq` CLI / REST JSON form, both ways.
//!
//! `bq mk --schema FILE` and the REST `schema.fields` use the same shape:
//! `[{"name","type","mode","fields","description",...}]`. The REST tables
//! client ([`crate::bigquery::TablesClient`]) reads and writes table
//! resources with [`fields_from_json`] / [`to_bq_schema_json`]; the emulator
//! (feature `local`) reads schema files given on its command line and REST
//! bodies the same way ([`parse_bq_schema`]). Type names follow REST (INTEGER, FLOAT, BOOLEAN,
//! RECORD) and the Standard SQL aliases (INT64, FLOAT64, BOOL, STRUCT) are
//! accepted too.

use serde_json::{Value as Json, json};

use crate::pb::storage::table_field_schema::{FieldElementType, Mode, Type};
use crate::pb::storage::{TableFieldSchema, TableSchema};

#[derive(Debug, thiserror::Error)]
pub enum SchemaJsonError {
    #[error("schema JSON does not parse: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid schema at {path}: {why}")]
    Invalid { path: String, why: String },
}

/// Parses a `bq` schema file: a JSON array of fields, or an object with a
/// `fields` array (the REST `schema` object).
///
/// # Errors
/// [`SchemaJsonError`] naming the offending field.
pub fn parse_bq_schema(json: &str) -> Result<TableSchema, SchemaJsonError> {
    let v: Json = serde_json::from_str(json)?;
    let fields = match &v {
        Json::Array(_) => &v,
        Json::Object(o) => o.get("fields").unwrap_or(&Json::Null),
        _ => &Json::Null,
    };
    let schema = TableSchema { fields: fields_from_json(fields, "")? };
    validate_schema(&schema)
        .map_err(|why| SchemaJsonError::Invalid { path: "schema".into(), why })?;
    Ok(schema)
}

/// Fields from a JSON array in REST form.
pub fn fields_from_json(v: &Json, path: &str) -> Result<Vec<TableFieldSchema>, SchemaJsonError> {
    let bad =
        |p: &str, why: &str| SchemaJsonError::Invalid { path: p.to_string(), why: why.to_string() };
    let Some(items) = v.as_array() else { return Err(bad(path, "expected an array of fields")) };
    items
        .iter()
        .map(|item| {
            let name = item
                .get("name")
                .and_then(Json::as_str)
                .ok_or_else(|| bad(path, "a field has no name"))?;
            let here = format!("{path}{name}");
            let ty =
                item.get("type").and_then(Json::as_str).ok_or_else(|| bad(&here, "no type"))?;
            let r#type =
                type_from_name(ty).ok_or_else(|| bad(&here, &format!("unknown type {ty}")))?;
            let mode = match item
                .get("mode")
                .and_then(Json::as_str)
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                None | Some("NULLABLE") | Some("") => Mode::Nullable,
                Some("REQUIRED") => Mode::Required,
                Some("REPEATED") => Mode::Repeated,
                Some(m) => return Err(bad(&here, &format!("unknown mode {m}"))),
            };
            let fields = match item.get("fields") {
                Some(f) if !f.is_null() => fields_from_json(f, &format!("{here}."))?,
                _ => vec![],
            };
            let int = |k: &str| {
                item.get(k)
                    .and_then(|x| x.as_i64().or_else(|| x.as_str().and_then(|s| s.parse().ok())))
                    .unwrap_or(0)
            };
            let range_element_type = item
                .get("rangeElementType")
                .and_then(|r| r.get("type"))
                .and_then(Json::as_str)
                .and_then(type_from_name)
                .map(|t| FieldElementType { r#type: t as i32 });
            Ok(TableFieldSchema {
                name: name.to_string(),
                r#type: r#type as i32,
                mode: mode as i32,
                fields,
                description: item
                    .get("description")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                max_length: int("maxLength"),
                precision: int("precision"),
                scale: int("scale"),
                default_value_expression: item
                    .get("defaultValueExpression")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                range_element_type,
                timestamp_precision: None,
            })
        })
        .collect()
}

/// The REST / `bq` JSON array for `schema`.
pub fn to_bq_schema_json(schema: &TableSchema) -> Json {
    Json::Array(schema.fields.iter().map(field_to_json).collect())
}

fn field_to_json(f: &TableFieldSchema) -> Json {
    let t = Type::try_from(f.r#type).unwrap_or(Type::Unspecified);
    let mode =
        Mode::try_from(f.mode).ok().filter(|m| *m != Mode::Unspecified).unwrap_or(Mode::Nullable);
    let mut o = json!({"name": f.name, "type": rest_type_name(t), "mode": mode.as_str_name()});
    if !f.fields.is_empty() {
        o["fields"] = Json::Array(f.fields.iter().map(field_to_json).collect());
    }
    if !f.description.is_empty() {
        o["description"] = json!(f.description);
    }
    for (k, v) in [("maxLength", f.max_length), ("precision", f.precision), ("scale", f.scale)] {
        if v != 0 {
            o[k] = json!(v.to_string());
        }
    }
    if let Some(e) = &f.range_element_type {
        o["rangeElementType"] =
            json!({"type": rest_type_name(Type::try_from(e.r#type).unwrap_or(Type::Unspecified))});
    }
    if !f.default_value_expression.is_empty() {
        o["defaultValueExpression"] = json!(f.default_value_expression);
    }
    o
}

pub fn type_from_name(name: &str) -> Option<Type> {
    Some(match name.to_ascii_uppercase().as_str() {
        "STRING" => Type::String,
        "BYTES" => Type::Bytes,
        "INTEGER" | "INT64" => Type::Int64,
        "FLOAT" | "FLOAT64" | "DOUBLE" => Type::Double,
        "BOOLEAN" | "BOOL" => Type::Bool,
        "NUMERIC" | "DECIMAL" => Type::Numeric,
        "BIGNUMERIC" | "BIGDECIMAL" => Type::Bignumeric,
        "TIMESTAMP" => Type::Timestamp,
        "DATE" => Type::Date,
        "TIME" => Type::Time,
        "DATETIME" => Type::Datetime,
        "GEOGRAPHY" => Type::Geography,
        "RECORD" | "STRUCT" => Type::Struct,
        "JSON" => Type::Json,
        "INTERVAL" => Type::Interval,
        "RANGE" => Type::Range,
        _ => return None,
    })
}

/// The REST spelling of a type (what `tables.get` returns).
pub fn rest_type_name(t: Type) -> &'static str {
    match t {
        Type::String => "STRING",
        Type::Int64 => "INTEGER",
        Type::Double => "FLOAT",
        Type::Struct => "RECORD",
        Type::Bytes => "BYTES",
        Type::Bool => "BOOLEAN",
        Type::Timestamp => "TIMESTAMP",
        Type::Date => "DATE",
        Type::Time => "TIME",
        Type::Datetime => "DATETIME",
        Type::Geography => "GEOGRAPHY",
        Type::Numeric => "NUMERIC",
        Type::Bignumeric => "BIGNUMERIC",
        Type::Interval => "INTERVAL",
        Type::Json => "JSON",
        Type::Range => "RANGE",
        Type::Unspecified => "TYPE_UNSPECIFIED",
    }
}

/// The rules a table schema must meet: names are letters, digits and `_`
/// (not starting with a digit) up to 300 characters [BigQuery column-name
/// docs; flexible column names allow more, which the emulator also takes
/// except for empty names], unique case-insensitively; RECORDs have
/// sub-fields; at most 15 levels of nesting.
pub fn validate_schema(schema: &TableSchema) -> Result<(), String> {
    validate_fields(&schema.fields, "", 0)
}

fn validate_fields(fields: &[TableFieldSchema], path: &str, depth: usize) -> Result<(), String> {
    if depth > 15 {
        return Err(format!("{path} nests deeper than 15 levels"));
    }
    let mut seen = std::collections::HashSet::new();
    for f in fields {
        if f.name.is_empty() || f.name.len() > 300 {
            return Err(format!(
                "field name {:?} under {path:?} must be 1..300 characters",
                f.name
            ));
        }
        if !seen.insert(f.name.to_ascii_lowercase()) {
            return Err(format!("duplicate field {path}{}", f.name));
        }
        let t = Type::try_from(f.r#type).unwrap_or(Type::Unspecified);
        match t {
            Type::Unspecified => return Err(format!("field {path}{} has no type", f.name)),
            Type::Struct if f.fields.is_empty() => {
                return Err(format!("RECORD {path}{} has no fields", f.name));
            }
            Type::Struct => validate_fields(&f.fields, &format!("{path}{}.", f.name), depth + 1)?,
            _ if !f.fields.is_empty() => {
                return Err(format!("only RECORD fields have sub-fields ({path}{})", f.name));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_bq_schema() {
        let s = parse_bq_schema(
            r#"[{"name":"id","type":"INTEGER","mode":"REQUIRED"},
                {"name":"tags","type":"STRING","mode":"REPEATED"},
                {"name":"r","type":"RECORD","fields":[{"name":"x","type":"FLOAT64"}]},
                {"name":"p","type":"RANGE","rangeElementType":{"type":"DATE"}}]"#,
        )
        .unwrap();
        assert_eq!(s.fields.len(), 4);
        assert_eq!(s.fields[0].mode, Mode::Required as i32);
        assert_eq!(s.fields[2].fields[0].r#type, Type::Double as i32);
        let back = to_bq_schema_json(&s);
        assert_eq!(back[0]["type"], "INTEGER");
        assert_eq!(back[2]["fields"][0]["type"], "FLOAT");
        assert_eq!(parse_bq_schema(&back.to_string()).unwrap(), s);
        assert!(parse_bq_schema(r#"[{"name":"a","type":"NOPE"}]"#).is_err());
        assert!(parse_bq_schema(r#"[{"name":"a","type":"RECORD"}]"#).is_err());
        assert!(
            parse_bq_schema(r#"[{"name":"a","type":"INT64"},{"name":"A","type":"INT64"}]"#)
                .is_err()
        );
    }
}
