//! Backfill: spillover objects → BigQuery, exactly once.
//!
//! `kinesis-bigquery backfill SPILL_URL` replays what the Lambda spilled when
//! BigQuery would not take it. Each object goes through its own PENDING
//! stream (create, append, finalize, record the stream beside the object,
//! commit, delete), so a rerun after a crash at any point neither loses nor
//! duplicates a record; in-doubt records the Lambda spilled with their write
//! stream and offsets are skipped when that stream's row count shows they
//! are already in the table (DESIGN.md, invariant 6). The protocol, and why
//! each crash point is safe, is described in `replay.rs`.

mod cdc_default;
mod cli;
mod encode;
mod error;
mod gate;
mod lease;
mod marker;
mod options;
mod progress;
mod replay;
mod resolve;
mod run;
mod stream;
mod summary;
mod write_args;

pub use cli::{BackfillArgs, SetupError};
pub use error::BackfillError;
pub use gate::Gate;
pub use lease::{DEFAULT_LEASE, Lease, LeaseRecord, holder_id, lease_key};
pub use marker::{MARKER_VERSION, Marker, MarkerError};
pub use options::{BackfillOptions, CrashPoint, Filter, QUARANTINE_PREFIX};
pub use progress::Progress;
pub use resolve::{Fate, SentAt, Unresolved, decide, streams_to_resolve};
pub use run::{BackfillDeps, run};
pub use summary::{ObjectReport, ObjectStatus, Summary};
pub use write_args::WriteArgs;
