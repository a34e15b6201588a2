//! Kinesis metadata for the optional `_kinesis_*` columns.
//!
//! When the table has any of these top-level columns, every row gets them
//! from the record it came from, not from the JSON: a JSON field of the same
//! name is ignored (the record still lands; the metadata is the truth about
//! where the row came from, and lets users deduplicate at-least-once writes).

use crate::source::SourceRecord;

/// Per-record Kinesis metadata for the `_kinesis_*` columns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordMeta<'a> {
    pub sequence_number: &'a str,
    /// The KPL sub-record index (0 for a plain record).
    pub sub_sequence_number: u64,
    pub partition_key: &'a str,
    pub shard_id: &'a str,
    /// Approximate arrival time, microseconds since the Unix epoch.
    pub arrival_micros: Option<i64>,
}

impl<'a> From<&'a SourceRecord> for RecordMeta<'a> {
    fn from(r: &'a SourceRecord) -> Self {
        Self {
            sequence_number: r.position.sequence_number.as_str(),
            sub_sequence_number: r.position.sub_sequence_number,
            partition_key: &r.partition_key,
            shard_id: &r.shard_id,
            arrival_micros: r.arrival_micros,
        }
    }
}

/// Which metadata a `_kinesis_*` column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MetaColumn {
    SequenceNumber,
    SubSequenceNumber,
    PartitionKey,
    ShardId,
    ApproximateArrival,
}

impl MetaColumn {
    /// Recognises a top-level column name (case-insensitively, as BigQuery
    /// matches names).
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        const NAMES: [(&str, MetaColumn); 5] = [
            ("_kinesis_sequence_number", MetaColumn::SequenceNumber),
            ("_kinesis_sub_sequence_number", MetaColumn::SubSequenceNumber),
            ("_kinesis_partition_key", MetaColumn::PartitionKey),
            ("_kinesis_shard_id", MetaColumn::ShardId),
            ("_kinesis_approximate_arrival", MetaColumn::ApproximateArrival),
        ];
        NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|&(_, m)| m)
    }
}
