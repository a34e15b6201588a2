//! `kinesis-bigquery redrive DLQ_URL`: dead letters come back once the table
//! fits them (a column added, a type relaxed), exactly once.
//!
//! The protocol of one run:
//!
//! 1. list what an earlier run parked in the work area (`--work`): those
//!    records are already on their way, their letters only need removing;
//! 2. read the letters (SQS: hidden for `--visibility-secs`; or the NDJSON
//!    file), drop second copies of the same record (same stream, shard,
//!    sequence and sub-sequence number), and encode each against the
//!    table's current schema;
//! 3. park the records that fit as spillover objects in the work area —
//!    from here they are durable outside the queue;
//! 4. remove their letters (and duplicates) from the queue; letters that
//!    still do not fit are replaced by a copy with the reason refreshed;
//! 5. write the parked objects with the backfill's protocol (one PENDING
//!    stream per object, marker, commit, delete — `crate::backfill`).
//!
//! A crash before 3 changes nothing. Between 3 and 4 the letters are still
//! in the queue but step 1 of the rerun recognises them as parked and only
//! removes them. After 4 the records are in the work area, which the
//! backfill writes exactly once (its own crash safety). So a rerun neither
//! loses nor duplicates a record. `--dry-run` stops after 2 and prints, by
//! reason, what would be written and what would stay.

mod cli;
mod letters;
mod run;

pub use cli::RedriveArgs;
pub use letters::{Handle, Identity, Letters, LettersError, Received};
pub use run::{RedriveDeps, RedriveError, RedriveOptions, RedriveSummary, run};
