//! The demo's BigQuery table: a click-stream schema with nested, repeated,
//! decimal and timestamp columns, plus the Kinesis metadata columns the
//! encoder fills from each record's position.

use crate::emulator::parse_bq_schema;
use crate::pb::storage::TableSchema;
use crate::table::{TableName, TableNameError};

/// `demo.analytics.clicks`.
///
/// # Errors
/// Only if the constant were invalid (a unit test proves it is not).
pub fn name() -> Result<TableName, TableNameError> {
    TableName::new("demo", "analytics", "clicks")
}

/// `demo --routing`: `BIGQUERY_TABLE`, one table per click type.
pub const ROUTED_TEMPLATE: &str = "demo.analytics.clicks_{type}";

/// The routed tables, one per [`super::generate::TYPES`] entry.
///
/// # Errors
/// Only if the constants were invalid (a unit test proves they are not).
pub fn routed() -> Result<Vec<TableName>, TableNameError> {
    super::generate::TYPES
        .iter()
        .map(|kind| TableName::new("demo", "analytics", &format!("clicks_{kind}")))
        .collect()
}

/// The schema in the `bq` CLI's JSON form.
pub const SCHEMA_JSON: &str = r#"[
  {"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
  {"name": "type", "type": "STRING", "mode": "REQUIRED"},
  {"name": "user_id", "type": "INT64", "mode": "REQUIRED"},
  {"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
  {"name": "tags", "type": "STRING", "mode": "REPEATED"},
  {"name": "lat", "type": "FLOAT64"},
  {"name": "lng", "type": "FLOAT64"},
  {"name": "amount", "type": "NUMERIC"},
  {"name": "page", "type": "RECORD", "fields": [
    {"name": "path", "type": "STRING"},
    {"name": "referrer", "type": "STRING"}
  ]},
  {"name": "_kinesis_sequence_number", "type": "STRING"},
  {"name": "_kinesis_sub_sequence_number", "type": "INT64"},
  {"name": "_kinesis_partition_key", "type": "STRING"},
  {"name": "_kinesis_shard_id", "type": "STRING"},
  {"name": "_kinesis_approximate_arrival", "type": "TIMESTAMP"}
]"#;

/// # Errors
/// Only if [`SCHEMA_JSON`] were malformed (a unit test proves it is not).
pub fn schema() -> Result<TableSchema, crate::emulator::SchemaJsonError> {
    parse_bq_schema(SCHEMA_JSON)
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_parses() {
        assert_eq!(super::schema().unwrap().fields.len(), 14);
        assert_eq!(super::name().unwrap().to_string(), "demo.analytics.clicks");
        let routed = super::routed().unwrap();
        assert_eq!(routed[0].to_string(), "demo.analytics.clicks_view");
        let template: crate::route::TableTemplate = super::ROUTED_TEMPLATE.parse().unwrap();
        assert_eq!(template.table_for("view").unwrap(), routed[0]);
    }
}
