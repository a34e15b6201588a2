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
//! replays exactly once. The partial batch response tells Kinesis only what
//! landed. [`emulator`] is a local BigQuery Storage Write API for tests and
//! development.

pub mod backfill;
pub mod batch;
pub mod bigquery;
pub mod check;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod dlq;
pub mod emulator;
pub mod handler;
pub mod metrics;
pub mod pb;
pub mod rows;
pub mod sink_url;
pub mod source;
pub mod spill;
pub mod table;
