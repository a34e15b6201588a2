//! A table's schema as two readers see it: the REST API (`tables.get`, the
//! `etag`) sees a patch at once; the Storage Write API sees it only after a
//! propagation delay, as the service does (fact sheet §2.6: "after a schema
//! change, AppendRows keeps validating against the old schema for a while,
//! then reports `updated_schema` once").
//!
//! Until the write side catches up, a writer descriptor with the new columns
//! is refused (SCHEMA_MISMATCH_EXTRA_FIELDS, because the columns are checked
//! against [`SchemaVersions::visible`]) and open connections see no
//! `updated_schema`; afterwards both see the new schema.

use std::time::{Duration, Instant};

use crate::pb::storage::TableSchema;

/// The REST schema, the one writers see, and when the former becomes the latter.
#[derive(Debug, Clone)]
pub struct SchemaVersions {
    /// What `tables.get` returns; bumped by every accepted patch.
    latest: TableSchema,
    latest_version: u64,
    /// What AppendRows validates against and reports as `updated_schema`.
    visible: TableSchema,
    visible_version: u64,
    /// When `latest` becomes visible (None: it already is).
    visible_at: Option<Instant>,
}

impl SchemaVersions {
    pub fn new(schema: TableSchema) -> Self {
        Self {
            latest: schema.clone(),
            latest_version: 0,
            visible: schema,
            visible_version: 0,
            visible_at: None,
        }
    }

    /// The schema of the REST API and its version (the etag's source).
    pub fn latest(&self) -> (&TableSchema, u64) {
        (&self.latest, self.latest_version)
    }

    /// Records an accepted change: REST sees it now, writers after `delay`
    /// from `now` (a later patch restarts the wait, as one propagation).
    pub fn change(&mut self, schema: TableSchema, now: Instant, delay: Duration) {
        if schema == self.latest {
            return;
        }
        self.latest = schema;
        self.latest_version += 1;
        self.visible_at = Some(now + delay);
        self.promote(now);
    }

    /// The schema writers see at `now`, and its version.
    pub fn visible(&mut self, now: Instant) -> (&TableSchema, u64) {
        self.promote(now);
        (&self.visible, self.visible_version)
    }

    /// Makes the latest schema visible to writers at once (the emulator's
    /// stand-in for "the propagation finished").
    pub fn publish(&mut self) {
        self.visible_at = Some(Instant::now());
        self.promote(Instant::now());
    }

    fn promote(&mut self, now: Instant) {
        if self.visible_at.is_some_and(|at| now >= at) {
            self.visible = self.latest.clone();
            self.visible_version = self.latest_version;
            self.visible_at = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::storage::table_field_schema::{Mode, Type};
    use crate::rows::test_column;

    fn schema(n: usize) -> TableSchema {
        TableSchema {
            fields: (0..n)
                .map(|i| test_column(&format!("c{i}"), Type::String, Mode::Nullable, vec![]))
                .collect(),
        }
    }

    #[test]
    fn writers_see_a_change_only_after_the_delay() {
        let t0 = Instant::now();
        let mut v = SchemaVersions::new(schema(1));
        v.change(schema(2), t0, Duration::from_secs(10));
        assert_eq!(v.latest(), (&schema(2), 1));
        assert_eq!(v.visible(t0 + Duration::from_secs(9)), (&schema(1), 0));
        assert_eq!(v.visible(t0 + Duration::from_secs(10)), (&schema(2), 1));
    }

    #[test]
    fn no_delay_is_visible_at_once_and_an_identical_patch_changes_nothing() {
        let t0 = Instant::now();
        let mut v = SchemaVersions::new(schema(1));
        v.change(schema(2), t0, Duration::ZERO);
        assert_eq!(v.visible(t0), (&schema(2), 1));
        v.change(schema(2), t0, Duration::ZERO);
        assert_eq!(v.latest().1, 1);
    }

    #[test]
    fn publish_ends_the_wait() {
        let t0 = Instant::now();
        let mut v = SchemaVersions::new(schema(1));
        v.change(schema(3), t0, Duration::from_secs(3600));
        v.publish();
        assert_eq!(v.visible(t0), (&schema(3), 1));
    }
}
