//! Kinesis event → [`SourceRecord`]s: base64 data, KPL de-aggregation, positions.
//!
//! A position is (sequence number, sub-sequence number): KPL sub-records share
//! their parent's sequence number, so the pair is what makes every user record
//! addressable exactly once (DESIGN.md, invariant 1).

mod position;

pub use position::{Position, SequenceNumber};

use bytes::Bytes;
use std::sync::Arc;

/// One user record, after de-aggregation: what becomes one row (or one
/// dead-letter message).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceRecord {
    /// `shardId-000000000006`, from the event's `eventID`.
    pub shard_id: Arc<str>,
    pub stream_arn: Arc<str>,
    pub position: Position,
    /// Index of the Kinesis record this came from in the event: KPL
    /// sub-records share it. The partial batch response can only name a
    /// Kinesis record, never a sub-record.
    pub event_index: usize,
    pub partition_key: Arc<str>,
    pub explicit_hash_key: Option<Arc<str>>,
    /// Approximate arrival time in microseconds since the Unix epoch.
    pub arrival_micros: Option<i64>,
    pub data: Bytes,
}
