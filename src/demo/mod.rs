//! `kinesis-bigquery demo` (the README's "run it" command): generated
//! Kinesis events — plain JSON, KPL aggregates, a few corrupt records — go
//! through the real handler into the in-process emulator while faults are
//! injected (retries, a BigQuery outage that forces spillover, crashes and
//! lost responses, appends in doubt), then the backfill replays the
//! spillover, and a summary shows that every good record is in the table
//! exactly once. `--mode cdc` does the same with change data capture:
//! creates, updates and deletes by primary key, and a check that the table
//! equals the last change of each key. `--new-field` adds a run where a
//! field the table lacks appears mid-stream (`UNKNOWN_FIELDS=add`).

mod cdc;
mod faults;
pub mod generate;
mod kinesis;
pub mod new_field;
mod report;
mod run;
mod table;

pub use cdc::Convergence;
pub use faults::{Fault, FaultSet};
pub use kinesis::EsmStats;
pub use report::DemoReport;
pub use run::{DemoArgs, DemoError, DemoMode, run};
