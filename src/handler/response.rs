//! The partial batch response (`ReportBatchItemFailures`): how the handler
//! tells Kinesis what landed.
//!
//! Lambda checkpoints at the lowest sequence number listed and resends every
//! record from there on; an empty list means the whole batch is done
//! (Lambda "Implementing partial batch responses", fact sheet §B). So for
//! each shard we name only the FIRST Kinesis record, in event order, that did
//! not land in full — naming later ones too would add nothing, and naming a
//! record that landed would only cost a retry.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};

/// A record the response must name has no sequence number, so it cannot be
/// named: the only truthful answer left is failing the whole invocation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("event record {event_index} was not landed and has no sequence number to report")]
pub struct UnnamedRecord {
    pub event_index: usize,
}

/// Builds the response from, per shard, the event index of the first Kinesis
/// record not landed (`None` when the whole shard landed).
///
/// # Errors
/// [`UnnamedRecord`] when such a record has an empty sequence number (or the
/// index is outside the event — a bug upstream, reported the same way).
pub fn partial_batch_response(
    event: &KinesisEvent,
    first_not_landed: impl IntoIterator<Item = Option<usize>>,
) -> Result<KinesisEventResponse, UnnamedRecord> {
    let mut response = KinesisEventResponse::default();
    let mut indexes: Vec<usize> = first_not_landed.into_iter().flatten().collect();
    indexes.sort_unstable();
    for event_index in indexes {
        let sequence = event
            .records
            .get(event_index)
            .map(|r| r.kinesis.sequence_number.trim())
            .filter(|s| !s.is_empty())
            .ok_or(UnnamedRecord { event_index })?;
        let mut failure = KinesisBatchItemFailure::default();
        failure.item_identifier = Some(sequence.to_string());
        response.batch_item_failures.push(failure);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEventRecord;

    fn event(seqs: &[&str]) -> KinesisEvent {
        let mut e = KinesisEvent::default();
        for s in seqs {
            let mut r = KinesisEventRecord::default();
            r.kinesis.sequence_number = s.to_string();
            e.records.push(r);
        }
        e
    }

    fn ids(r: &KinesisEventResponse) -> Vec<&str> {
        r.batch_item_failures.iter().filter_map(|f| f.item_identifier.as_deref()).collect()
    }

    #[test]
    fn all_landed_is_an_empty_list() {
        let r = partial_batch_response(&event(&["1", "2"]), [None]).unwrap();
        assert!(r.batch_item_failures.is_empty());
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json, serde_json::json!({"batchItemFailures": []}));
    }

    #[test]
    fn names_the_first_not_landed_per_shard_in_event_order() {
        let e = event(&["10", "20", "30", "5"]);
        let r = partial_batch_response(&e, [Some(2), None, Some(1)]).unwrap();
        assert_eq!(ids(&r), vec!["20", "30"]);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["batchItemFailures"][0]["itemIdentifier"], "20");
    }

    #[test]
    fn an_unnamed_record_fails_the_invocation() {
        let e = event(&["10", " "]);
        assert_eq!(partial_batch_response(&e, [Some(1)]), Err(UnnamedRecord { event_index: 1 }));
        assert_eq!(partial_batch_response(&e, [Some(7)]), Err(UnnamedRecord { event_index: 7 }));
    }
}
