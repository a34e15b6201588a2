//! Backfill: spillover objects → BigQuery, exactly once.
//!
//! `kinesis-bigquery backfill SPILL_URL` replays what the Lambda spilled when
//! BigQuery would not take it. Each object goes through its own PENDING
//! stream (create, append, finalize, record the stream beside the object,
//! commit, delete), so a rerun after a crash at any point neither loses nor
//! duplicates a record; in-doubt records the Lambda spilled with their write
//! stream and offsets are skipped when that stream's row count shows they
//! are already in the table (DESIGN.md, invariant 6).
//!
//! (Work in progress: the replay itself lands with the client, rows and
//! sinks branches.)

mod marker;
mod options;
mod progress;
mod resolve;
mod summary;

pub use marker::{MARKER_VERSION, Marker, MarkerError};
pub use options::{BackfillOptions, CrashPoint, Filter};
pub use progress::Progress;
pub use resolve::{Fate, SentAt, Unresolved, decide, streams_to_resolve};
pub use summary::{ObjectReport, ObjectStatus, Summary};
