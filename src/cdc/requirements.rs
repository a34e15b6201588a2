//! What BigQuery requires of a table before it applies changes from the
//! `_default` stream (fact sheet `storage-write-api.md`, "Change data
//! capture"), judged from the table's REST resource: `kinesis-bigquery
//! check` says what is wrong before a deploy, rather than the first batch
//! finding out (every append refused, every batch spilled).
//!
//! `ROW_FORMAT=proto` is the other requirement; the configuration refuses
//! `WRITE_MODE=cdc` with `ROW_FORMAT=arrow` at start, so a `Config` never
//! holds that pair.

use super::{CdcSettings, FieldPath, MAX_PRIMARY_KEY_COLUMNS};
use crate::bigquery::TableResource;
use crate::rows::UnknownFields;

/// Judges `table` for `WRITE_MODE=cdc` with `settings`.
///
/// `Ok` describes what was found (the key, where change type and sequence
/// number come from, `max_staleness`).
///
/// # Errors
/// Every requirement the table does not meet, each saying what to do,
/// joined with `; `.
pub fn judge(
    table: &TableResource,
    settings: &CdcSettings,
    unknown_fields: UnknownFields,
) -> Result<String, String> {
    let mut problems = Vec::new();
    let key = &table.primary_key;
    if key.is_empty() {
        problems.push(format!(
            "the table has no primary key: BigQuery applies changes only to a table declared \
             with one (ALTER TABLE ... ADD PRIMARY KEY (column, ...) NOT ENFORCED, at most \
             {MAX_PRIMARY_KEY_COLUMNS} columns); without it every append is refused"
        ));
    } else if key.len() > MAX_PRIMARY_KEY_COLUMNS {
        problems.push(format!(
            "the primary key has {} columns; BigQuery applies changes with at most \
             {MAX_PRIMARY_KEY_COLUMNS}",
            key.len()
        ));
    }
    let has_column =
        |name: &str| table.schema.fields.iter().any(|f| f.name.eq_ignore_ascii_case(name));
    let fields = [
        ("CDC_CHANGE_TYPE_FIELD", &settings.change_type_field),
        ("CDC_SEQUENCE_FIELD", &settings.sequence_field),
    ];
    for (variable, field) in fields {
        let Some(path) = field else { continue };
        let column = path.top_level();
        if unknown_fields == UnknownFields::Reject && !has_column(column) {
            problems.push(format!(
                "{variable}={path}: the table has no column {column} and UNKNOWN_FIELDS=reject \
                 sends every record carrying it to the dead-letter queue; add the column or set \
                 UNKNOWN_FIELDS=ignore"
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let source = |path: &Option<FieldPath>, default: &str| {
        path.as_ref().map_or_else(|| default.to_string(), |p| format!("from field {p}"))
    };
    let staleness = match &table.max_staleness {
        Some(s) => format!("max_staleness {s}"),
        None => "max_staleness not set (every read merges the pending changes)".to_string(),
    };
    Ok(format!(
        "primary key ({}); _CHANGE_TYPE {}, _CHANGE_SEQUENCE_NUMBER {}; {staleness}",
        key.join(", "),
        source(&settings.change_type_field, "UPSERT for every record"),
        source(&settings.sequence_field, "from the Kinesis position"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::storage::TableSchema;
    use crate::pb::storage::table_field_schema::{Mode, Type};
    use crate::rows::test_column;

    fn table(key: &[&str]) -> TableResource {
        TableResource {
            schema: TableSchema {
                fields: vec![
                    test_column("id", Type::Int64, Mode::Required, vec![]),
                    test_column("op", Type::String, Mode::Nullable, vec![]),
                ],
            },
            etag: String::new(),
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            max_staleness: None,
        }
    }

    fn settings(change_type: Option<&str>, sequence: Option<&str>) -> CdcSettings {
        CdcSettings {
            change_type_field: change_type.map(|f| f.parse().unwrap()),
            sequence_field: sequence.map(|f| f.parse().unwrap()),
        }
    }

    #[test]
    fn a_keyed_table_with_the_field_columns_passes() {
        let found =
            judge(&table(&["id"]), &settings(Some("op"), None), UnknownFields::Reject).unwrap();
        assert!(found.starts_with("primary key (id); _CHANGE_TYPE from field op"), "{found}");
        assert!(found.contains("from the Kinesis position"), "{found}");
    }

    #[test]
    fn no_primary_key_says_how_to_declare_one() {
        let why = judge(&table(&[]), &CdcSettings::default(), UnknownFields::Reject).unwrap_err();
        assert!(why.contains("no primary key"), "{why}");
        assert!(why.contains("PRIMARY KEY (column, ...) NOT ENFORCED"), "{why}");
    }

    #[test]
    fn a_field_without_a_column_is_refused_only_under_reject() {
        let s = settings(Some("metadata.operation"), Some("lsn"));
        let why = judge(&table(&["id"]), &s, UnknownFields::Reject).unwrap_err();
        assert!(why.contains("CDC_CHANGE_TYPE_FIELD=metadata.operation"), "{why}");
        assert!(why.contains("no column metadata"), "{why}");
        assert!(why.contains("CDC_SEQUENCE_FIELD=lsn"), "{why}");
        assert!(judge(&table(&["id"]), &s, UnknownFields::Ignore).is_ok());
    }

    #[test]
    fn too_many_key_columns_are_named() {
        let key: Vec<String> = (0..17).map(|i| format!("k{i}")).collect();
        let keys: Vec<&str> = key.iter().map(String::as_str).collect();
        let why = judge(&table(&keys), &CdcSettings::default(), UnknownFields::Reject).unwrap_err();
        assert!(why.contains("17 columns"), "{why}");
    }
}
