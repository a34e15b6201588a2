//! kinesis-bigquery moves Kinesis Data Streams records into BigQuery through
//! the Storage Write API, exactly once.
//!
//! A Kinesis event source mapping hands the Lambda a batch of records. The
//! [`handler`] de-aggregates them ([`source`]), encodes each JSON record into
//! a row against the live table schema ([`rows`]), cuts rows into AppendRows
//! requests ([`batch`]) and writes them over one pipelined gRPC stream
//! ([`bigquery`]) under the exactly-once protocol of [`delivery`]. Records that
//! can never become rows go to the dead-letter queue ([`dlq`]); batches
//! BigQuery will not take go to the spillover ([`spill`]), which [`backfill`]
//! replays exactly once; [`redrive`] brings dead letters back once the table
//! fits them. The partial batch response tells Kinesis only what landed.
//! With `UNKNOWN_FIELDS=add`, [`evolve`] adds the columns new fields call
//! for before a batch is mapped. `emulator` is a local BigQuery Storage Write
//! API for tests and development, and `demo` runs the whole pipeline on it;
//! both are behind the `local` cargo feature (on by default, off in the
//! Lambda package).

pub mod backfill;
pub mod batch;
pub mod bigquery;
pub mod cdc;
pub mod check;
pub mod config;
pub mod delivery;
#[cfg(feature = "local")]
pub mod demo;
pub mod dlq;
#[cfg(feature = "local")]
pub mod emulator;
pub mod evolve;
pub mod handler;
mod json_key;
pub mod metrics;
pub mod pb;
pub mod redrive;
pub mod retry;
pub mod route;
pub mod rows;
pub mod schema_json;
pub mod sink_url;
pub mod source;
pub mod spill;
pub mod table;
