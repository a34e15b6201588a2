//! Kinesis event → [`SourceRecord`]s: base64 data, KPL de-aggregation, positions.
//!
//! The first step of the flow. [`records`] turns the event Lambda hands the
//! handler into user records, each with the position that makes it
//! addressable exactly once: (sequence number, sub-sequence number), since
//! KPL sub-records share their parent's sequence number (DESIGN.md,
//! invariant 1). An aggregate that cannot be unpacked becomes a
//! [`BadRecord`] for the dead-letter queue, so no record is ever dropped and
//! none can stall the shard.

mod event;
pub mod kpl;
mod lambda_event;
mod position;
mod record;

pub use event::{SourceError, records};
pub use kpl::BadReason;
pub use lambda_event::Event;
pub use position::{Position, SequenceNumber, SequenceNumberError};
pub use record::{BadRecord, SourceRecord};
