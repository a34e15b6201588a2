//! [`SpilledBatch`]: what the spillover keeps of a batch BigQuery did not
//! take — the raw records with their positions, and, for appends in doubt,
//! the write stream and offsets that resolve them (DESIGN.md, invariant 6).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::delivery::WriteMode;
use crate::dlq::base64_bytes;
use crate::source::{Position, SourceRecord};
use crate::table::TableName;

/// Why a batch was spilled. Stable snake_case names (they appear in objects).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpillReason {
    /// Transient errors outlasted the retry budget (`RETRY_BUDGET_MS`).
    RetriesExhausted,
    /// Retrying would run past the invocation deadline minus `DEADLINE_MARGIN_MS`.
    DeadlineNear,
    /// BigQuery refused the batch with a permanent error (table missing,
    /// permission denied) that no retry in this invocation can fix.
    Rejected,
    /// Appends were sent without an answer and the stream's end could not be
    /// learned: the records carry `write_stream` and offsets so the backfill
    /// can tell which already landed.
    InDoubt,
    /// Appends were in doubt on a write stream the service no longer knows
    /// (garbage-collected after days idle, or its table re-created): nothing
    /// can tell which landed, so the backfill replays them all — at least
    /// once for these records only, counted and logged (docs/operations.md).
    StreamLost,
    /// `UNKNOWN_FIELDS=add`: the records need columns the table gained but
    /// the Storage Write API did not show before the invocation's wait
    /// ended. The backfill writes them once the columns are visible and
    /// leaves the object in place until then.
    AwaitingColumns,
}

/// One spilled batch: the records of one shard bound for one table, in
/// position order.
#[derive(Clone, Debug, PartialEq)]
pub struct SpilledBatch {
    pub table: TableName,
    pub stream_arn: String,
    pub shard_id: String,
    pub reason: SpillReason,
    /// The last error seen, for people reading the object.
    pub error: String,
    pub spilled_at: DateTime<Utc>,
    /// The COMMITTED write stream the in-doubt records were appended to; set
    /// whenever any record has an `offset`.
    pub write_stream: Option<String>,
    /// The `WRITE_MODE` of the writer: a backfill in another mode leaves the
    /// object alone (an exactly-once object replayed without its shard state
    /// could duplicate an orphan's records; an at-least-once object has no
    /// state to list it). `None` for objects of format version 1, written
    /// before the mode was recorded: every backfill mode takes them, as it
    /// did then. Writers set it after [`SpilledBatch::new`].
    pub write_mode: Option<WriteMode>,
    /// At least one, ascending by position.
    pub records: Vec<SpilledRecord>,
}

/// One record of a [`SpilledBatch`]: its raw bytes and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpilledRecord {
    #[serde(flatten)]
    pub position: Position,
    pub partition_key: String,
    #[serde(default)]
    pub explicit_hash_key: Option<String>,
    #[serde(default)]
    pub arrival_time: Option<DateTime<Utc>>,
    /// The row offset this record was appended at in `write_stream`, when the
    /// append is in doubt. The backfill skips it when the stream's final
    /// `row_count` is above this offset (the row is in the table).
    #[serde(default)]
    pub offset: Option<i64>,
    #[serde(rename = "data_base64", with = "base64_bytes")]
    pub data: Bytes,
}

impl SpilledRecord {
    /// `offset`: where the record was appended if that append is in doubt.
    pub fn from_source(record: &SourceRecord, offset: Option<i64>) -> Self {
        Self {
            position: record.position.clone(),
            partition_key: record.partition_key.to_string(),
            explicit_hash_key: record.explicit_hash_key.as_deref().map(str::to_string),
            arrival_time: record.arrival_micros.and_then(DateTime::from_timestamp_micros),
            offset,
            data: record.data.clone(),
        }
    }
}

impl SpilledBatch {
    /// A batch of `records` (all from one shard, ascending) stamped now, with
    /// stream and shard taken from the first record. Set `write_stream` and
    /// the records' offsets afterwards for in-doubt appends.
    pub fn new(
        table: TableName,
        reason: SpillReason,
        error: impl Into<String>,
        records: &[SourceRecord],
    ) -> Self {
        let (stream_arn, shard_id) = records
            .first()
            .map(|r| (r.stream_arn.to_string(), r.shard_id.to_string()))
            .unwrap_or_default();
        Self {
            table,
            stream_arn,
            shard_id,
            reason,
            error: error.into(),
            spilled_at: Utc::now(),
            write_stream: None,
            write_mode: None,
            records: records.iter().map(|r| SpilledRecord::from_source(r, None)).collect(),
        }
    }

    /// Whether `other` replays the same way: same records (bytes, positions,
    /// in-doubt offsets), write stream and mode, and whether it is
    /// `stream_lost` (replayed at least once and counted so). The header's
    /// `error`, other reasons and `spilled_at` only inform people, so a retry that spills
    /// the same records again counts as the same object. The key's digest
    /// (src/spill/digest.rs) covers exactly these fields: keep them in step.
    pub fn replays_as(&self, other: &SpilledBatch) -> bool {
        self.table == other.table
            && self.stream_arn == other.stream_arn
            && self.shard_id == other.shard_id
            && self.write_stream == other.write_stream
            && self.write_mode == other.write_mode
            && (self.reason == SpillReason::StreamLost) == (other.reason == SpillReason::StreamLost)
            && self.records == other.records
    }

    pub fn first_position(&self) -> Option<&Position> {
        self.records.first().map(|r| &r.position)
    }

    pub fn last_position(&self) -> Option<&Position> {
        self.records.last().map(|r| &r.position)
    }

    /// The records as the pipeline sees them, for the backfill to encode
    /// again. `event_index` is the index within this batch.
    pub fn source_records(&self) -> Vec<SourceRecord> {
        let shard_id: Arc<str> = Arc::from(self.shard_id.as_str());
        let stream_arn: Arc<str> = Arc::from(self.stream_arn.as_str());
        self.records
            .iter()
            .enumerate()
            .map(|(event_index, r)| SourceRecord {
                shard_id: Arc::clone(&shard_id),
                stream_arn: Arc::clone(&stream_arn),
                position: r.position.clone(),
                event_index,
                partition_key: Arc::from(r.partition_key.as_str()),
                explicit_hash_key: r.explicit_hash_key.as_deref().map(Arc::from),
                arrival_micros: r.arrival_time.map(|t| t.timestamp_micros()),
                data: r.data.clone(),
            })
            .collect()
    }
}
