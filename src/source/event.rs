//! A Lambda Kinesis event → the user records of its Kinesis records.
//!
//! First step of the flow: the handler calls [`records`] on the event Lambda
//! hands it (read as a [`super::Event`], for exact arrival times). Each
//! Kinesis record yields at least one item, in event order: one
//! [`SourceRecord`] for a plain record, one per sub-record for a KPL
//! aggregate, or one [`BadRecord`] for an aggregate that cannot be unpacked.
//! So every record of the event is accounted for — delivered, or dead-lettered
//! — and none can stall the shard.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use bytes::Bytes;

use super::kpl::{self, Unpacked};
use super::position::{Position, SequenceNumber, SequenceNumberError};
use super::record::{BadRecord, SourceRecord};

/// The event itself is malformed: a record lacks what Lambda always sends.
/// Nothing can be said about such a record (not even which sequence number
/// to retry from), so the whole invocation fails and Lambda retries it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("record {index}: eventID {event_id:?} is not SHARD_ID:SEQUENCE_NUMBER")]
    EventId { index: usize, event_id: Option<String> },
    #[error("record {index}: bad kinesis.sequenceNumber")]
    SequenceNumber {
        index: usize,
        #[source]
        source: SequenceNumberError,
    },
    #[error("record {index}: no eventSourceARN")]
    StreamArn { index: usize },
}

/// The user records of `event`, in order: for each Kinesis record, its
/// de-aggregated records (or one [`BadRecord`]), with position, shard, stream,
/// partition key, arrival time and the index of the Kinesis record in the
/// event.
///
/// Each record's decoded data moves out of the event (left empty) into its
/// [`SourceRecord`]: the batch is held once, never copied.
///
/// # Errors
/// [`SourceError`] when a record lacks its shard id (from `eventID`), a valid
/// sequence number or its stream ARN.
#[allow(
    clippy::result_large_err,
    reason = "BadRecord is SourceRecord plus a reason: boxing it would not shrink the \
              Vec's elements, which are as large as a SourceRecord anyway"
)]
pub fn records(
    event: &mut KinesisEvent,
) -> Result<Vec<Result<SourceRecord, BadRecord>>, SourceError> {
    let mut out = Vec::with_capacity(event.records.len());
    // Records of one event nearly always share shard and stream: share the strings.
    let mut shard: Option<Arc<str>> = None;
    let mut stream: Option<Arc<str>> = None;
    for (index, record) in event.records.iter_mut().enumerate() {
        let parent = parent(index, record, &mut shard, &mut stream)?;
        let raw = Bytes::from(std::mem::take(&mut record.kinesis.data.0));
        match kpl::unpack(&raw) {
            Ok(Unpacked::Plain) => out.push(Ok(SourceRecord { data: raw, ..parent })),
            Ok(Unpacked::Aggregate(subs)) => {
                out.extend(subs.into_iter().zip(0u64..).map(|(sub, sub_sequence_number)| {
                    Ok(SourceRecord {
                        position: Position { sub_sequence_number, ..parent.position.clone() },
                        partition_key: sub.partition_key,
                        explicit_hash_key: sub.explicit_hash_key,
                        data: sub.data,
                        ..parent.clone()
                    })
                }))
            }
            Err(reason) => {
                out.push(Err(BadRecord { record: SourceRecord { data: raw, ..parent }, reason }))
            }
        }
    }
    Ok(out)
}

/// The Kinesis record as one `SourceRecord` (sub-sequence number 0), without
/// its data: plain and bad records take the raw bytes, aggregates give each
/// sub-record its own. Reuses `shard`/`stream` when they are unchanged.
fn parent(
    index: usize,
    record: &KinesisEventRecord,
    shard: &mut Option<Arc<str>>,
    stream: &mut Option<Arc<str>>,
) -> Result<SourceRecord, SourceError> {
    let bad_id = || SourceError::EventId { index, event_id: record.event_id.clone() };
    // `shardId-000000000006:4959...`: Lambda's documented eventID shape.
    let (shard_id, _) =
        record.event_id.as_deref().and_then(|id| id.split_once(':')).ok_or_else(bad_id)?;
    if shard_id.is_empty() {
        return Err(bad_id());
    }
    let arn = record.event_source_arn.as_deref().ok_or(SourceError::StreamArn { index })?;
    let sequence_number = SequenceNumber::new(&record.kinesis.sequence_number)
        .map_err(|source| SourceError::SequenceNumber { index, source })?;
    let kinesis = &record.kinesis;
    Ok(SourceRecord {
        shard_id: reuse(shard, shard_id),
        stream_arn: reuse(stream, arn),
        position: Position { sequence_number, sub_sequence_number: 0 },
        event_index: index,
        partition_key: Arc::from(kinesis.partition_key.as_str()),
        explicit_hash_key: None,
        // Exact when the event was read through `source::Event`; the
        // library's own reader gets some fractions wrong (see lambda_event.rs).
        arrival_micros: Some(kinesis.approximate_arrival_timestamp.timestamp_micros()),
        data: Bytes::new(),
    })
}

fn reuse(slot: &mut Option<Arc<str>>, value: &str) -> Arc<str> {
    match slot {
        Some(s) if &**s == value => s.clone(),
        _ => slot.insert(Arc::from(value)).clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::kpl::{AggregatedRecord, Record};
    use serde_json::json;

    fn event(records: serde_json::Value) -> KinesisEvent {
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }

    fn kinesis(seq: &str, pk: &str, data: &[u8]) -> serde_json::Value {
        use base64::Engine;
        json!({
            "eventID": format!("shardId-000000000001:{seq}"),
            "eventSourceARN": "arn:aws:kinesis:eu-west-1:1:stream/s",
            "kinesis": {
                "partitionKey": pk,
                "sequenceNumber": seq,
                "data": base64::engine::general_purpose::STANDARD.encode(data),
                "approximateArrivalTimestamp": 1700000000.123,
            }
        })
    }

    #[test]
    fn every_kinesis_record_yields_at_least_one_item_in_order() {
        let agg = kpl::aggregate(&AggregatedRecord {
            partition_key_table: vec!["k".into()],
            explicit_hash_key_table: vec![],
            records: (0..3)
                .map(|i| Record {
                    partition_key_index: 0,
                    explicit_hash_key_index: None,
                    data: vec![i],
                    tags: vec![],
                })
                .collect(),
        });
        let mut bad = agg.clone();
        bad[5] ^= 0xFF;
        let mut ev = event(json!([
            kinesis("10", "p", b"{}"),
            kinesis("11", "agg", &agg),
            kinesis("12", "bad", &bad),
        ]));
        let got = records(&mut ev).unwrap();
        let summary: Vec<_> = got
            .iter()
            .map(|r| match r {
                Ok(r) => (r.event_index, r.position.to_string(), r.partition_key.to_string()),
                Err(b) => (b.record.event_index, format!("bad {}", b.position()), String::new()),
            })
            .collect();
        let s = |i, p: &str, k: &str| (i, p.to_string(), k.to_string());
        assert_eq!(
            summary,
            [
                s(0, "10/0", "p"),
                s(1, "11/0", "k"),
                s(1, "11/1", "k"),
                s(1, "11/2", "k"),
                s(2, "bad 12/0", "")
            ]
        );
        let first = got[0].as_ref().unwrap();
        assert_eq!(&*first.shard_id, "shardId-000000000001");
        assert_eq!(first.arrival_micros, Some(1_700_000_000_123_000));
        assert!(Arc::ptr_eq(&first.stream_arn, &got[3].as_ref().unwrap().stream_arn));
        let bad_record = got[4].as_ref().unwrap_err();
        assert_eq!(&bad_record.record.data[..], &bad[..], "the raw bytes, for the DLQ");
        assert!(matches!(bad_record.reason, kpl::BadReason::KplChecksum { .. }));
    }

    #[test]
    fn an_empty_event_has_no_records() {
        assert!(records(&mut event(json!([]))).unwrap().is_empty());
    }

    #[test]
    fn a_record_without_shard_or_stream_fails_the_event() {
        let mut no_id = kinesis("1", "p", b"x");
        no_id["eventID"] = json!("shardId-1");
        assert!(matches!(
            records(&mut event(json!([no_id]))),
            Err(SourceError::EventId { index: 0, .. })
        ));
        let mut no_arn = kinesis("1", "p", b"x");
        no_arn.as_object_mut().unwrap().remove("eventSourceARN");
        assert!(matches!(
            records(&mut event(json!([kinesis("1", "p", b""), no_arn]))),
            Err(SourceError::StreamArn { index: 1 })
        ));
        let bad_seq = kinesis("1x", "p", b"x");
        assert!(matches!(
            records(&mut event(json!([bad_seq]))),
            Err(SourceError::SequenceNumber { index: 0, .. })
        ));
    }
}
