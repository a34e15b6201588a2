//! Adding columns to a live table that other writers may be changing too:
//! `tables.patch` guarded by the etag of the schema it extends. On 412 the
//! table is read again and the wanted columns merged into what is there
//! now, so two shards adding different columns at once both get theirs and
//! neither overwrites the other. Existing columns are never changed.

use std::time::Duration;

use super::infer::merge;
use crate::bigquery::{TableResource, TablesClient, TablesError};
use crate::pb::storage::{TableFieldSchema, TableSchema};
use crate::table::TableName;

/// Attempts of read–merge–patch before giving up: each lost race means
/// another writer's patch landed, so a handful is plenty.
pub const MAX_PATCH_ATTEMPTS: u32 = 8;

/// Makes the table (as REST shows it) hold every field of `wanted`.
/// `seen` is a resource already read (its etag guards the first patch).
/// Returns the table's schema afterwards.
///
/// # Errors
/// [`TablesError`] other than a stale etag, or the last one after
/// [`MAX_PATCH_ATTEMPTS`].
pub async fn add_columns(
    tables: &TablesClient,
    table: &TableName,
    wanted: &[TableFieldSchema],
    seen: Option<TableResource>,
) -> Result<TableSchema, TablesError> {
    let mut current = match seen {
        Some(r) => r,
        None => tables.get(table).await?,
    };
    let mut attempt = 0;
    loop {
        let merged = TableSchema { fields: merge(&current.schema.fields, wanted) };
        if merged == current.schema {
            return Ok(current.schema);
        }
        attempt += 1;
        match tables.patch_schema(table, &merged, &current.etag).await {
            Ok(done) => {
                tracing::info!(table = %table, columns = merged.fields.len(), "table schema extended");
                return Ok(done.schema);
            }
            Err(e)
                if attempt < MAX_PATCH_ATTEMPTS
                    && (matches!(e, TablesError::Stale(_)) || e.is_transient()) =>
            {
                tracing::debug!(table = %table, attempt, error = %e, "schema patch not applied; re-reading");
                if e.is_transient() {
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
                }
                current = tables.get(table).await?;
            }
            Err(e) => return Err(e),
        }
    }
}
