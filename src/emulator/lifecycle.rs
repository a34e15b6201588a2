//! How streams end in the service without the client asking, so tests and
//! the demo can meet what a deployment meets (issue "exactly-once under the
//! failures a deployment meets"):
//! - **garbage collection**: BigQuery drops a COMMITTED stream after about 3
//!   days without appends; [`Store::expire_stream`] drops one now, and an idle
//!   TTL ([`Store::set_idle_ttl`]) drops every explicit stream idle that long
//!   (counted on tokio's clock, so a paused test clock ages streams);
//! - **table delete + re-create** (`CREATE OR REPLACE TABLE`): the table
//!   comes back empty, with the same schema and none of its streams;
//! - **late appends**: a request the service took whose connection died
//!   before it was applied, applied later whoever is still listening
//!   ([`Store::hold`], [`Store::release_held`]).
//!
//! Every stream operation on a dropped stream answers NOT_FOUND
//! (`STREAM_NOT_FOUND`), as the service does. All of it is reachable from the
//! fault endpoint ([`super::FaultSpec`]).

use std::time::Duration;

use super::errors::EmulatorError;
use super::faults::{FaultSpec, Faults};
use super::store::{State, Store, Target};
use super::stored::StoredRow;
use crate::table::TableName;

/// One request taken but not applied: its rows, checked, and where they go.
pub(crate) struct HeldAppend {
    target: Target,
    offset: Option<i64>,
    rows: Vec<StoredRow>,
}

/// Applies one rule of the fault endpoint: stream and table lifecycle rules
/// act on the store at once, the rest become [`Faults`] rules.
///
/// # Errors
/// The stream or table a lifecycle rule names does not exist.
pub fn apply(spec: FaultSpec, store: &Store, faults: &Faults) -> Result<(), EmulatorError> {
    match spec {
        FaultSpec::ExpireStream { name } => store.expire_stream(&name),
        FaultSpec::RecreateTable { table } => store.recreate_table(&table.parse()?),
        FaultSpec::DropTable { table } => store.delete_table(&table.parse()?),
        FaultSpec::StreamIdleTtl { secs } => {
            store.set_idle_ttl(secs.map(Duration::from_secs));
            Ok(())
        }
        FaultSpec::ReleaseHeld => {
            store.release_held();
            Ok(())
        }
        other => {
            faults.add(other);
            Ok(())
        }
    }
}

/// Drops explicit streams idle longer than the TTL (called under the lock by
/// every store operation, so expiry needs no background task).
pub(super) fn collect_idle(st: &mut State) {
    let Some(ttl) = st.idle_ttl else { return };
    let now = tokio::time::Instant::now();
    for table in st.tables.values_mut() {
        table.streams.retain(|_, s| now.saturating_duration_since(s.last_active) <= ttl);
    }
}

impl Store {
    /// Garbage-collects `name` now, as the service does after days idle.
    ///
    /// # Errors
    /// [`EmulatorError::StreamNotFound`] when no such stream exists.
    pub fn expire_stream(&self, name: &str) -> Result<(), EmulatorError> {
        let (table, id) = super::store::split_stream_name(name)
            .ok_or_else(|| EmulatorError::StreamNotFound(name.to_string()))?;
        let full = format!("{table}/streams/{id}");
        let mut st = self.lock();
        st.tables
            .get_mut(&table)
            .and_then(|t| t.streams.remove(&full))
            .map(|_| ())
            .ok_or_else(|| EmulatorError::StreamNotFound(name.to_string()))
    }

    /// Sets (or with `None` clears) the idle TTL of explicit streams.
    pub fn set_idle_ttl(&self, ttl: Option<Duration>) {
        self.lock().idle_ttl = ttl;
    }

    /// `CREATE OR REPLACE TABLE` with the same schema: no rows, no streams.
    ///
    /// # Errors
    /// [`EmulatorError::TableNotFound`].
    pub fn recreate_table(&self, name: &TableName) -> Result<(), EmulatorError> {
        let schema = self.table_info(name)?.schema;
        self.delete_table(name)?;
        self.create_table(name, schema)
    }

    /// Takes a request without applying it: it lands at [`Self::release_held`].
    pub(crate) fn hold(&self, target: Target, offset: Option<i64>, rows: Vec<StoredRow>) {
        self.lock().held.push(HeldAppend { target, offset, rows });
    }

    /// Applies every held request in the order taken, with the checks of any
    /// append (an offset now written answers ALREADY_EXISTS and writes
    /// nothing). Returns how many landed.
    pub fn release_held(&self) -> usize {
        let held = std::mem::take(&mut self.lock().held);
        held.into_iter()
            .filter(|h| self.append(&h.target, h.offset, h.rows.clone()).is_ok())
            .count()
    }

    /// How many requests are held.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::storage::table_field_schema::{Mode, Type};
    use crate::pb::storage::write_stream::Type as StreamType;
    use crate::rows::test_column;

    fn setup() -> (Store, TableName, String) {
        let store = Store::default();
        let t: TableName = "p.d.t".parse().unwrap();
        let schema = crate::pb::storage::TableSchema {
            fields: vec![test_column("a", Type::String, Mode::Nullable, vec![])],
        };
        store.create_table(&t, schema).unwrap();
        let s = store.create_write_stream(&t.path(), StreamType::Committed as i32).unwrap();
        (store, t, s.name)
    }

    #[test]
    fn streams_expire_now_after_an_idle_ttl_and_with_their_table() {
        let (store, t, name) = setup();
        store.expire_stream(&name).unwrap();
        assert_eq!(store.get_write_stream(&name, false).unwrap_err().code, tonic::Code::NotFound);
        assert!(store.expire_stream(&name).is_err());

        let s = store.create_write_stream(&t.path(), StreamType::Committed as i32).unwrap().name;
        store.set_idle_ttl(Some(Duration::from_secs(3600)));
        assert!(store.get_write_stream(&s, false).is_ok());
        // Two hours without an append.
        for table in store.lock().tables.values_mut() {
            for stream in table.streams.values_mut() {
                if let Some(earlier) = stream.last_active.checked_sub(Duration::from_secs(7200)) {
                    stream.last_active = earlier;
                }
            }
        }
        assert_eq!(store.finalize(&s).unwrap_err().code, tonic::Code::NotFound);

        store.set_idle_ttl(None);
        let s = store.create_write_stream(&t.path(), StreamType::Committed as i32).unwrap().name;
        store.recreate_table(&t).unwrap();
        assert_eq!(store.finalize(&s).unwrap_err().code, tonic::Code::NotFound);
        assert!(store.table_info(&t).is_ok());
    }
}
