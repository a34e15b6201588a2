//! The exactly-once delivery protocol (DESIGN.md, "Exactly-once: the
//! invariants") and its per-shard state store.
//!
//! (Work in progress: the drivers are declared once the client, rows and
//! sinks branches they build on are merged.)

pub mod crash;
pub mod outcome;
pub mod plan;
pub mod state;

pub use crash::{Boundary, Crash, CrashPoints};
pub use outcome::{DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
pub use state::{ShardState, state_key};

pub mod store;

use std::str::FromStr;

/// `WRITE_MODE`: how rows are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// One COMMITTED stream per shard with offsets and persisted state.
    #[default]
    ExactlyOnce,
    /// The `_default` stream, no state; a retry may duplicate rows.
    AtLeastOnce,
}

impl FromStr for WriteMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "exactly_once" => Ok(Self::ExactlyOnce),
            "at_least_once" => Ok(Self::AtLeastOnce),
            _ => Err(format!("{s:?} is not one of: exactly_once, at_least_once")),
        }
    }
}
