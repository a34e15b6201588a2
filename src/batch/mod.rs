//! The micro-batcher: encoded rows → AppendRows requests.
//!
//! It sits between row encoding ([`crate::rows`]) and the append pipeline
//! ([`crate::bigquery`]). Every request it builds stays within
//! `BATCH_MAX_BYTES` counted as the whole encoded request ([`RequestBudget`]),
//! rows keep their order, and a row too large for any request comes back as an
//! error for that row alone (for the dead-letter queue) instead of blocking the
//! batch behind it. [`cut`] is a pure function over row sizes (the rounds
//! after an invocation's first); [`Batcher`] cuts as rows stream in, by size
//! or by `BATCH_WINDOW_MS` (every first round, exactly-once's included: its
//! offsets come from the mapping, not from the cut).

mod batcher;
mod cut;
mod limits;
mod request;

pub use batcher::{Batcher, Oversized};
pub use cut::{Piece, cut};
pub use limits::{
    BATCH_MAX_BYTES, BATCH_MAX_ROWS, BATCH_WINDOW, BatchError, BatchLimits, MIN_BATCH_MAX_BYTES,
    MIN_ROW_ROOM_BYTES, SERVICE_MAX_REQUEST_BYTES,
};
pub use request::{RequestBudget, build_request, writer_schema};
