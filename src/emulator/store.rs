//! The emulator's state: tables, their write streams, and the rows each holds.
//!
//! One `std::sync::Mutex` guards everything; it is held only for short,
//! synchronous critical sections (never across `.await`), and rows are
//! checked before it is taken (and decoded on read, see [`super::stored`]). That makes every append atomic — all rows of a
//! request land or none do — and keeps concurrent writers safe.
//!
//! Visibility follows the stream type (fact sheet §2.1): `_default` and
//! COMMITTED rows are visible once acknowledged; PENDING rows once their
//! stream is committed; BUFFERED rows once flushed past them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prost_types::Timestamp;
use tonic::Code;

use super::cdc;
use super::errors::{EmulatorError, Failure};
use super::schema_versions::SchemaVersions;
use super::stored::StoredRow;
use super::values::{Row, row_to_json};
use crate::pb::storage::storage_error::StorageErrorCode as E;
use crate::pb::storage::table_field_schema::Mode;
use crate::pb::storage::write_stream::Type as StreamType;
use crate::pb::storage::{StorageError, TableFieldSchema, TableSchema, WriteStream};
use crate::table::TableName;

/// Shared handle to the state; cloning is cheap.
#[derive(Clone, Default)]
pub struct Store {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) tables: HashMap<String, Table>,
    next_id: u64,
    /// How long a schema change takes to reach the Storage Write API.
    schema_delay: Duration,
    /// Explicit streams without an append for this long are garbage-collected
    /// (the service does so after about 3 days; see [`super::lifecycle`]).
    pub(super) idle_ttl: Option<std::time::Duration>,
    /// Requests the service took but has not applied yet, oldest first
    /// ([`super::lifecycle`]): they land when released, whoever is listening.
    pub(super) held: Vec<super::lifecycle::HeldAppend>,
}

pub(super) struct Table {
    pub(super) name: TableName,
    /// The REST schema and the one writers see (after the propagation delay);
    /// a visible change shows up once on open connections as `updated_schema`.
    pub(super) schemas: SchemaVersions,
    created: Timestamp,
    modified: Timestamp,
    rows: Vec<StoredRow>,
    pub(super) streams: HashMap<String, Stream>,
    /// `PRIMARY KEY (...) NOT ENFORCED` columns; empty: none.
    primary_key: Vec<String>,
}

pub(super) struct Stream {
    kind: StreamType,
    created: Timestamp,
    commit_time: Option<Timestamp>,
    /// Rows not (yet) visible: PENDING until commit, BUFFERED until flushed.
    held: Vec<StoredRow>,
    /// Offset of the next row: the stream's end.
    end: i64,
    /// BUFFERED: rows below this offset are visible.
    flushed: i64,
    finalized: bool,
    /// The connection that owns this stream (one active connection per stream, §2.1).
    owner: Option<u64>,
    /// Creation or last append: what the idle TTL counts from (tokio's clock,
    /// so a test with a paused clock can age a stream without waiting).
    pub(super) last_active: tokio::time::Instant,
}

/// Where a connection writes: resolved once, on its first request.
#[derive(Debug, Clone)]
pub struct Target {
    pub stream: String,
    pub table: String,
    pub is_default: bool,
}

/// A table as the REST API shows it.
#[derive(Debug, Clone)]
pub struct TableInfo {
    pub name: TableName,
    pub schema: TableSchema,
    pub num_rows: usize,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub version: u64,
    /// Primary key columns (empty: none).
    pub primary_key: Vec<String>,
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn not_found_stream(name: &str) -> Failure {
    Failure::storage(Code::NotFound, E::StreamNotFound, name, "Requested stream not found.")
}

fn not_found_table(name: &str) -> Failure {
    Failure::storage(Code::NotFound, E::TableNotFound, name, "Table not found.")
}

/// Splits a stream name into (table path, stream id); accepts the documented
/// `.../tables/t/streams/id` form and the `.../tables/t/_default` form the
/// Python Arrow sample uses (§2.1).
pub fn split_stream_name(name: &str) -> Option<(String, String)> {
    if let Some((table, id)) = name.rsplit_once("/streams/") {
        let t: TableName = table.parse().ok()?;
        return (!id.is_empty() && !id.contains('/')).then(|| (t.path(), id.to_string()));
    }
    let table = name.strip_suffix("/_default")?;
    let t: TableName = table.parse().ok()?;
    Some((t.path(), "_default".to_string()))
}

impl Store {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of
        // plain data; the emulator keeps serving rather than cascade.
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        super::lifecycle::collect_idle(&mut st);
        st
    }

    pub fn create_table(&self, name: &TableName, schema: TableSchema) -> Result<(), EmulatorError> {
        super::schema_json::validate_schema(&schema).map_err(EmulatorError::InvalidSchema)?;
        let mut st = self.lock();
        if st.tables.contains_key(&name.path()) {
            return Err(EmulatorError::TableExists(name.to_string()));
        }
        let t = now();
        st.tables.insert(
            name.path(),
            Table {
                name: name.clone(),
                schemas: SchemaVersions::new(schema),
                created: t,
                modified: t,
                rows: Vec::new(),
                streams: HashMap::new(),
                primary_key: Vec::new(),
            },
        );
        Ok(())
    }

    pub fn delete_table(&self, name: &TableName) -> Result<(), EmulatorError> {
        self.lock()
            .tables
            .remove(&name.path())
            .map(|_| ())
            .ok_or_else(|| EmulatorError::TableNotFound(name.to_string()))
    }

    pub fn table_info(&self, name: &TableName) -> Result<TableInfo, EmulatorError> {
        let st = self.lock();
        let t = st
            .tables
            .get(&name.path())
            .ok_or_else(|| EmulatorError::TableNotFound(name.to_string()))?;
        let (schema, version) = t.schemas.latest();
        Ok(TableInfo {
            name: t.name.clone(),
            schema: schema.clone(),
            num_rows: t.rows.len(),
            created: t.created,
            modified: t.modified,
            version,
            primary_key: t.primary_key.clone(),
        })
    }

    /// How long a schema change takes to reach writers (0: at once).
    pub fn set_schema_delay(&self, delay: Duration) {
        self.lock().schema_delay = delay;
    }

    /// Replaces the schema with `schema`, which may only add NULLABLE (or
    /// REPEATED) fields at the end of any field list: stored rows stay aligned.
    /// With `if_version`, only when the table's version (its etag) is still
    /// that one ([`EmulatorError::EtagMismatch`] otherwise). REST sees the
    /// change at once, writers after the schema delay.
    pub fn evolve_schema(
        &self,
        name: &TableName,
        schema: TableSchema,
        if_version: Option<u64>,
    ) -> Result<(), EmulatorError> {
        super::schema_json::validate_schema(&schema).map_err(EmulatorError::InvalidSchema)?;
        let mut st = self.lock();
        let delay = st.schema_delay;
        let t = st
            .tables
            .get_mut(&name.path())
            .ok_or_else(|| EmulatorError::TableNotFound(name.to_string()))?;
        let (latest, version) = t.schemas.latest();
        if if_version.is_some_and(|v| v != version) {
            return Err(EmulatorError::EtagMismatch(name.to_string()));
        }
        check_extension(&latest.fields, &schema.fields, "")
            .map_err(EmulatorError::InvalidSchema)?;
        if *latest != schema {
            t.schemas.change(schema, Instant::now(), delay);
            t.modified = now();
        }
        Ok(())
    }

    /// Ends the propagation wait of the table's latest schema change.
    pub fn publish_schema(&self, name: &TableName) -> Result<(), EmulatorError> {
        let mut st = self.lock();
        let t = st
            .tables
            .get_mut(&name.path())
            .ok_or_else(|| EmulatorError::TableNotFound(name.to_string()))?;
        t.schemas.publish();
        Ok(())
    }

    /// Appends NULLABLE top-level columns.
    pub fn add_columns(
        &self,
        name: &TableName,
        fields: Vec<TableFieldSchema>,
    ) -> Result<(), EmulatorError> {
        let mut schema = self.table_info(name)?.schema;
        schema.fields.extend(fields);
        self.evolve_schema(name, schema, None)
    }

    /// Visible rows in canonical JSON (see [`super::values`]).
    pub fn read_rows(&self, name: &TableName) -> Result<Vec<serde_json::Value>, EmulatorError> {
        let st = self.lock();
        let t = st
            .tables
            .get(&name.path())
            .ok_or_else(|| EmulatorError::TableNotFound(name.to_string()))?;
        let fields = &t.schemas.latest().0.fields;
        visible(t)?
            .into_iter()
            .map(|r| Ok(row_to_json(&r.values().map_err(EmulatorError::StoredRow)?, fields)))
            .collect()
    }

    /// A page of visible rows with the schema they are read with (for `tabledata.list`).
    pub fn rows_page(
        &self,
        name: &TableName,
        start: usize,
        max: usize,
    ) -> Result<(TableSchema, Vec<Row>, usize), EmulatorError> {
        let st = self.lock();
        let t = st
            .tables
            .get(&name.path())
            .ok_or_else(|| EmulatorError::TableNotFound(name.to_string()))?;
        let shown = visible(t)?;
        let total = shown.len();
        let page = shown.into_iter().skip(start).take(max);
        let page = page
            .map(|r| r.values().map(|v| v.into_owned()).map_err(EmulatorError::StoredRow))
            .collect::<Result<_, _>>()?;
        Ok((t.schemas.latest().0.clone(), page, total))
    }

    /// Declares the table's primary key (`PRIMARY KEY (...) NOT ENFORCED`),
    /// which makes it take CDC rows ([`cdc`]).
    pub fn set_primary_key(&self, name: &TableName, key: Vec<String>) -> Result<(), EmulatorError> {
        let mut st = self.lock();
        let t = st
            .tables
            .get_mut(&name.path())
            .ok_or_else(|| EmulatorError::TableNotFound(name.to_string()))?;
        cdc::check_primary_key(&t.schemas.latest().0.fields, &key)
            .map_err(EmulatorError::InvalidSchema)?;
        t.primary_key = key;
        t.modified = now();
        Ok(())
    }

    /// Whether the table has a primary key (takes CDC rows).
    pub fn has_primary_key(&self, table: &str) -> bool {
        self.lock().tables.get(table).is_some_and(|t| !t.primary_key.is_empty())
    }

    /// The schema writers see now and its version, for a connection checking
    /// a writer schema and deciding on `updated_schema`.
    pub fn schema(&self, table: &str) -> Option<(TableSchema, u64)> {
        let now = Instant::now();
        self.lock().tables.get_mut(table).map(|t| {
            let (s, v) = t.schemas.visible(now);
            (s.clone(), v)
        })
    }

    pub fn create_write_stream(&self, parent: &str, kind: i32) -> Result<WriteStream, Failure> {
        let table: TableName =
            parent.parse().map_err(|_| Failure::invalid(format!("Invalid parent: {parent:?}")))?;
        let kind = match StreamType::try_from(kind) {
            Ok(k @ (StreamType::Committed | StreamType::Pending | StreamType::Buffered)) => k,
            _ => {
                return Err(Failure::invalid(
                    "WriteStream.type must be COMMITTED, PENDING or BUFFERED",
                ));
            }
        };
        let mut st = self.lock();
        st.next_id += 1;
        let id = format!("emu{:08}{}", st.next_id, uuid::Uuid::new_v4().simple());
        let t = st.tables.get_mut(&table.path()).ok_or_else(|| not_found_table(&table.path()))?;
        let name = format!("{}/streams/{id}", table.path());
        let created = now();
        let commit_time = (kind == StreamType::Committed).then_some(created);
        let stream = Stream {
            kind,
            created,
            commit_time,
            held: Vec::new(),
            end: 0,
            flushed: 0,
            finalized: false,
            owner: None,
            last_active: tokio::time::Instant::now(),
        };
        t.streams.insert(name.clone(), stream);
        Ok(WriteStream {
            name,
            r#type: kind as i32,
            create_time: Some(created),
            commit_time,
            table_schema: Some(t.schemas.visible(Instant::now()).0.clone()),
            write_mode: crate::pb::storage::write_stream::WriteMode::Insert as i32,
            location: "US".into(),
        })
    }

    pub fn get_write_stream(&self, name: &str, full: bool) -> Result<WriteStream, Failure> {
        let (table, id) = split_stream_name(name).ok_or_else(|| not_found_stream(name))?;
        let mut st = self.lock();
        let t = st.tables.get_mut(&table).ok_or_else(|| not_found_table(&table))?;
        let schema = full.then(|| t.schemas.visible(Instant::now()).0.clone());
        if id == "_default" {
            return Ok(WriteStream {
                name: format!("{table}/streams/_default"),
                r#type: StreamType::Committed as i32,
                create_time: Some(t.created),
                commit_time: Some(t.created),
                table_schema: schema,
                write_mode: 1,
                location: "US".into(),
            });
        }
        let s = t
            .streams
            .get(&format!("{table}/streams/{id}"))
            .ok_or_else(|| not_found_stream(name))?;
        Ok(WriteStream {
            name: format!("{table}/streams/{id}"),
            r#type: s.kind as i32,
            create_time: Some(s.created),
            commit_time: s.commit_time,
            table_schema: schema,
            write_mode: 1,
            location: "US".into(),
        })
    }

    /// Claims `name` for connection `conn` (explicit streams allow one active connection).
    pub fn attach(&self, name: &str, conn: u64) -> Result<Target, Failure> {
        let (table, id) = split_stream_name(name).ok_or_else(|| not_found_stream(name))?;
        let mut st = self.lock();
        let t = st.tables.get_mut(&table).ok_or_else(|| not_found_table(&table))?;
        if id == "_default" {
            return Ok(Target {
                stream: format!("{table}/streams/_default"),
                table,
                is_default: true,
            });
        }
        let full = format!("{table}/streams/{id}");
        let s = t.streams.get_mut(&full).ok_or_else(|| not_found_stream(name))?;
        match s.owner {
            Some(o) if o != conn => Err(Failure::storage(
                Code::FailedPrecondition,
                E::InvalidStreamState,
                &full,
                "The stream already has an active AppendRows connection.",
            )),
            _ => {
                s.owner = Some(conn);
                Ok(Target { stream: full, table, is_default: false })
            }
        }
    }

    /// Releases a stream claimed by `conn` (when its connection ends).
    pub fn detach(&self, target: &Target, conn: u64) {
        let mut st = self.lock();
        if let Some(s) =
            st.tables.get_mut(&target.table).and_then(|t| t.streams.get_mut(&target.stream))
            && s.owner == Some(conn)
        {
            s.owner = None;
        }
    }

    /// Checks the offset and state, then lands all `rows` atomically.
    /// Returns the offset they landed at (explicit streams only).
    pub fn append(
        &self,
        target: &Target,
        offset: Option<i64>,
        rows: Vec<StoredRow>,
    ) -> Result<Option<i64>, Failure> {
        let mut st = self.lock();
        let t = st.tables.get_mut(&target.table).ok_or_else(|| not_found_table(&target.table))?;
        if target.is_default {
            if offset.is_some() {
                return Err(Failure::invalid(format!(
                    "Offset is not supported on the default stream. Entity: {}",
                    target.stream
                )));
            }
            t.rows.extend(rows);
            return Ok(None);
        }
        let s =
            t.streams.get_mut(&target.stream).ok_or_else(|| not_found_stream(&target.stream))?;
        if s.finalized {
            return Err(Failure::storage(
                Code::InvalidArgument,
                E::StreamFinalized,
                &target.stream,
                "Stream is finalized.",
            ));
        }
        let start = s.end;
        match offset {
            Some(o) if o < start => {
                return Err(Failure::storage(
                    Code::AlreadyExists,
                    E::OffsetAlreadyExists,
                    &target.stream,
                    format!("The offset is within stream, expected offset {start}, received {o}"),
                ));
            }
            Some(o) if o > start => {
                return Err(Failure::storage(
                    Code::OutOfRange,
                    E::OffsetOutOfRange,
                    &target.stream,
                    format!("The offset is beyond stream, expected offset {start}, received {o}"),
                ));
            }
            _ => {}
        }
        s.end += rows.len() as i64;
        s.last_active = tokio::time::Instant::now();
        match s.kind {
            StreamType::Committed => t.rows.extend(rows),
            _ => s.held.extend(rows),
        }
        Ok(Some(start))
    }

    pub fn finalize(&self, name: &str) -> Result<i64, Failure> {
        let (table, id) = split_stream_name(name).ok_or_else(|| not_found_stream(name))?;
        let mut st = self.lock();
        let t = st.tables.get_mut(&table).ok_or_else(|| not_found_table(&table))?;
        if id == "_default" {
            return Err(Failure::storage(
                Code::InvalidArgument,
                E::InvalidStreamType,
                name,
                "FinalizeWriteStream is not supported on the default stream.",
            ));
        }
        let s = t
            .streams
            .get_mut(&format!("{table}/streams/{id}"))
            .ok_or_else(|| not_found_stream(name))?;
        s.finalized = true;
        Ok(s.end)
    }

    /// Commits PENDING streams of one table atomically: any stream error and nothing is committed.
    pub fn batch_commit(
        &self,
        parent: &str,
        names: &[String],
    ) -> Result<Option<Timestamp>, Vec<StorageError>> {
        let Ok(table) = parent.parse::<TableName>() else {
            return Err(vec![storage_err(E::TableNotFound, parent, "Invalid parent table.")]);
        };
        let mut st = self.lock();
        let Some(t) = st.tables.get_mut(&table.path()) else {
            return Err(vec![storage_err(E::TableNotFound, parent, "Table not found.")]);
        };
        let mut errors = Vec::new();
        let mut keys = Vec::new();
        for name in names {
            let key = split_stream_name(name)
                .filter(|(tbl, _)| *tbl == table.path())
                .map(|(tbl, id)| format!("{tbl}/streams/{id}"));
            let Some(s) = key.as_ref().and_then(|k| t.streams.get(k)) else {
                errors.push(storage_err(
                    E::StreamNotFound,
                    name,
                    "Stream not found in the parent table.",
                ));
                continue;
            };
            if s.kind != StreamType::Pending {
                errors.push(storage_err(
                    E::InvalidStreamType,
                    name,
                    "Only PENDING streams can be committed.",
                ));
            } else if s.commit_time.is_some() {
                errors.push(storage_err(
                    E::StreamAlreadyCommitted,
                    name,
                    "Stream is already committed.",
                ));
            } else if !s.finalized {
                errors.push(storage_err(E::InvalidStreamState, name, "Stream is not finalized."));
            } else if let Some(k) = key {
                keys.push(k);
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let time = now();
        keys.dedup();
        for k in keys {
            if let Some(s) = t.streams.get_mut(&k) {
                s.commit_time = Some(time);
                t.rows.append(&mut s.held);
            }
        }
        Ok(Some(time))
    }

    /// Makes BUFFERED rows up to and including `offset` visible.
    pub fn flush(&self, name: &str, offset: i64) -> Result<i64, Failure> {
        let (table, id) = split_stream_name(name).ok_or_else(|| not_found_stream(name))?;
        let mut st = self.lock();
        let t = st.tables.get_mut(&table).ok_or_else(|| not_found_table(&table))?;
        let full = format!("{table}/streams/{id}");
        let s = match t.streams.get_mut(&full) {
            Some(s) if s.kind == StreamType::Buffered => s,
            Some(_) => {
                return Err(Failure::storage(
                    Code::InvalidArgument,
                    E::InvalidStreamType,
                    name,
                    "FlushRows needs a BUFFERED stream.",
                ));
            }
            None if id == "_default" => {
                return Err(Failure::storage(
                    Code::InvalidArgument,
                    E::InvalidStreamType,
                    name,
                    "FlushRows is not supported on the default stream.",
                ));
            }
            None => return Err(not_found_stream(name)),
        };
        if offset < 0 || offset >= s.end {
            return Err(Failure::storage(
                Code::OutOfRange,
                E::OffsetOutOfRange,
                name,
                format!("Flush offset {offset} is beyond the stream end {}", s.end),
            ));
        }
        let upto = offset + 1;
        if upto > s.flushed {
            let from = usize::try_from(s.flushed).unwrap_or(0);
            let to = usize::try_from(upto).unwrap_or(0);
            t.rows.extend(s.held.get(from..to).unwrap_or_default().iter().cloned());
            s.flushed = upto;
        }
        Ok(offset)
    }
}

/// The rows a read shows: all of them, or the merged view of a CDC table.
fn visible(t: &Table) -> Result<Vec<&StoredRow>, EmulatorError> {
    if t.primary_key.is_empty() {
        return Ok(t.rows.iter().collect());
    }
    let shown = cdc::merged(&t.rows, &t.schemas.latest().0.fields, &t.primary_key)
        .map_err(EmulatorError::StoredRow)?;
    Ok(shown.into_iter().filter_map(|i| t.rows.get(i)).collect())
}

fn storage_err(code: E, entity: &str, msg: &str) -> StorageError {
    StorageError { code: code as i32, entity: entity.to_string(), error_message: msg.to_string() }
}

/// `new` may only append fields (NULLABLE or REPEATED) to `old`'s lists, at any depth.
fn check_extension(
    old: &[TableFieldSchema],
    new: &[TableFieldSchema],
    path: &str,
) -> Result<(), String> {
    if new.len() < old.len() {
        return Err(format!("fields of {path:?} cannot be removed"));
    }
    for (o, n) in old.iter().zip(new) {
        if !o.name.eq_ignore_ascii_case(&n.name) || o.r#type != n.r#type {
            return Err(format!("field {path}{} cannot be renamed, retyped or reordered", o.name));
        }
        let relaxed = o.mode == Mode::Required as i32 && n.mode != Mode::Repeated as i32;
        if o.mode != n.mode && !relaxed {
            return Err(format!("mode of {path}{} cannot change that way", o.name));
        }
        check_extension(&o.fields, &n.fields, &format!("{path}{}.", o.name))?;
    }
    for n in new.get(old.len()..).unwrap_or_default() {
        if n.mode == Mode::Required as i32 {
            return Err(format!("new field {path}{} must be NULLABLE", n.name));
        }
    }
    Ok(())
}
