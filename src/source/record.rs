//! The two things a Kinesis record can become: user records ready for
//! encoding, or a bad record bound for the dead-letter queue.

use std::sync::Arc;

use bytes::Bytes;

use super::kpl::BadReason;
use super::position::Position;

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

/// A Kinesis record that carries the KPL magic but cannot be de-aggregated
/// (bad checksum, bad protobuf, a key index out of range, no sub-records).
///
/// It is never dropped and never retried: the handler sends it to the
/// dead-letter queue, whose envelope it can fill from [`BadRecord::record`],
/// and tells Kinesis it is done once the letter is accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct BadRecord {
    /// The Kinesis record as received: its shard, stream, position
    /// (sub-sequence number 0), event index, partition key, arrival time,
    /// and as `data` the raw bytes of the whole record.
    pub record: SourceRecord,
    pub reason: BadReason,
}

impl BadRecord {
    pub fn position(&self) -> &Position {
        &self.record.position
    }
}
