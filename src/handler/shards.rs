//! Records of an event → one batch per shard, each in event order.
//!
//! An event source mapping sends one shard per event, so the usual case is
//! one group holding every record (moved, not copied). Hand-made events may
//! mix shards; each shard is then delivered on its own.

use crate::source::{BadRecord, SourceRecord};
use std::sync::Arc;

/// One user record as the source produced it.
pub type Item = Result<SourceRecord, BadRecord>;

/// The records of one shard, in event order.
#[derive(Debug)]
pub struct ShardGroup {
    pub shard_id: Arc<str>,
    pub stream_arn: Arc<str>,
    pub records: Vec<Item>,
}

/// The record an item came from (a bad aggregate keeps its parent record).
pub fn record_of(item: &Item) -> &SourceRecord {
    match item {
        Ok(r) => r,
        Err(bad) => &bad.record,
    }
}

impl ShardGroup {
    /// The sequence number the batch starts at (for the shard's log span).
    pub fn first_sequence_number(&self) -> &str {
        self.records.first().map_or("", |i| record_of(i).position.sequence_number.as_str())
    }

    /// The index in the event of the Kinesis record that the `i`-th item of
    /// this group came from.
    pub fn event_index(&self, i: usize) -> Option<usize> {
        self.records.get(i).map(|item| record_of(item).event_index)
    }
}

/// Splits `records` by (stream, shard), keeping event order within each group
/// and the order in which groups first appear.
pub fn group_by_shard(records: Vec<Item>) -> Vec<ShardGroup> {
    let mut groups: Vec<ShardGroup> = Vec::new();
    for item in records {
        let r = record_of(&item);
        let found =
            groups.iter_mut().find(|g| g.shard_id == r.shard_id && g.stream_arn == r.stream_arn);
        match found {
            Some(g) => g.records.push(item),
            None => {
                let (shard_id, stream_arn) = (r.shard_id.clone(), r.stream_arn.clone());
                groups.push(ShardGroup { shard_id, stream_arn, records: vec![item] });
            }
        }
    }
    groups
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // `Item` is the source module's own result type
mod tests {
    use super::*;
    use crate::source::{Position, SequenceNumber};
    use bytes::Bytes;

    fn rec(shard: &str, seq: &str, event_index: usize) -> Item {
        Ok(SourceRecord {
            shard_id: shard.into(),
            stream_arn: "arn".into(),
            position: Position {
                sequence_number: SequenceNumber::new(seq).unwrap(),
                sub_sequence_number: 0,
            },
            event_index,
            partition_key: "pk".into(),
            explicit_hash_key: None,
            arrival_micros: None,
            data: Bytes::new(),
        })
    }

    #[test]
    fn groups_keep_event_order() {
        let groups = group_by_shard(vec![
            rec("a", "1", 0),
            rec("b", "5", 1),
            rec("a", "2", 2),
            rec("b", "6", 3),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(&*groups[0].shard_id, "a");
        assert_eq!(groups[0].first_sequence_number(), "1");
        assert_eq!(groups[0].event_index(1), Some(2));
        assert_eq!(groups[1].event_index(0), Some(1));
        assert_eq!(groups[1].event_index(2), None);
    }

    #[test]
    fn empty_event_has_no_groups() {
        assert!(group_by_shard(Vec::new()).is_empty());
    }
}
