//! A local BigQuery: the Storage Write gRPC service (`BigQueryWrite`, all six
//! RPCs), a REST subset of BigQuery v2 (tables and `tabledata.list`), and
//! deterministic fault injection — for tests, and for users through
//! `kinesis-bigquery emulator`.
//!
//! It behaves like the service on every path the client uses (fact sheet
//! `storage-write-api.md` §1–§5): stream types and visibility, offsets,
//! writer-schema checks, BigQuery's value checks with per-row errors,
//! the request size limit, finalize/commit/flush, `updated_schema` and the
//! idle timeout. State is in memory.
//!
//! In-process: [`start`] with [`EmulatorConfig::default`] (ports picked by the
//! OS), then [`Emulator::grpc_endpoint`], [`Emulator::read_rows`] (canonical
//! JSON, see [`values`]), [`Emulator::faults`] and [`Emulator::activity`]
//! (counters to wait on instead of sleeping). As a process:
//! `kinesis-bigquery emulator --grpc 127.0.0.1:9060 --rest 127.0.0.1:9050
//! [--table P.D.T=schema.json]... [--primary-key P.D.T=COL[,COL]]...`
//! ([`cli`]).
//!
//! Faults over REST (`POST /emulator/v1/faults`, one rule per body; `DELETE`
//! clears every rule; `GET` lists them), see [`FaultSpec`]:
//! `{"kind":"fail","method":"AppendRows","times":2,"code":"UNAVAILABLE"}`,
//! `{"kind":"delay","method":"*","ms":100}`,
//! `{"kind":"drop_after","responses":3}`, `{"kind":"write_then_drop"}`,
//! `{"kind":"random","method":"*","probability":0.2,"seed":7,"code":14}`,
//! `{"kind":"down"}` / `{"kind":"up"}` (every RPC fails UNAVAILABLE: an
//! outage); stream lifecycle ([`lifecycle`]):
//! `{"kind":"expire_stream","name":"projects/.../streams/s"}`,
//! `{"kind":"stream_idle_ttl","secs":259200}`,
//! `{"kind":"recreate_table","table":"p.d.t"}`, `{"kind":"drop_table","table":"p.d.t"}`,
//! `{"kind":"hold","times":1}` then `{"kind":"release_held"}` (a request
//! applied after its client is gone).

mod activity;
mod append;
mod arrow_rows;
mod cdc;
pub mod cli;
mod defaults;
mod errors;
mod faults;
mod grpc;
pub mod lifecycle;
mod proto_rows;
mod proto_schema;
mod proto_wire;
mod rest;
mod row_build;
/// Table schemas in REST JSON, both ways (shared with the REST tables client).
pub use crate::schema_json;
mod schema_versions;
mod server;
mod store;
mod stored;
pub mod values;

pub use activity::{Activity, ReceivedAppend};
pub use errors::{
    EmulatorError, Failure, STORAGE_ERROR_TYPE_URL, storage_error_in, storage_error_of,
};
pub use faults::{FaultSpec, Faults, code_from_name};
pub use grpc::ROUTING_HEADER;
pub use schema_json::{SchemaJsonError, parse_bq_schema, to_bq_schema_json};
pub use server::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_REQUEST_BYTES, Emulator, EmulatorConfig, start,
};
