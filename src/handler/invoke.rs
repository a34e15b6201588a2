//! [`handle`]: one invocation, read top to bottom as the data flow.

use super::deadline::working_deadline;
use super::deps::Deps;
use super::error::HandlerError;
use super::lazy_writer::connect_budget;
use super::response::partial_batch_response;
use super::shards::{ShardGroup, group_by_shard};
use crate::check::error_chain;
use crate::delivery::{self, DeliveryDeps, Landing, OfflineSinks, ShardBatch, ShardOutcome};
use crate::metrics::{InvocationSummary, emf_line};
use crate::source;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::{Context, LambdaEvent};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;
use tracing::Instrument as _;

/// Handles one Kinesis event, read as [`source::Event`] (exact arrival
/// times) by every entry point — the Lambda runtime, `invoke`, the tests:
/// records → per shard `delivery::deliver` (rows,
/// dead letters, spillover) → the partial batch response naming, per shard,
/// the first Kinesis record not landed, and nothing else.
///
/// Shards are delivered concurrently: they share nothing but the clients.
/// (An event source mapping sends one shard per event; several appear only
/// in hand-made events.)
///
/// The BigQuery side is connected first if no invocation has yet, within
/// [`connect_budget`]; when that fails the invocation runs in outage mode
/// ([`delivery::deliver_offline`]: raw spill, no schema) and the next one
/// tries again.
///
/// # Errors
/// [`HandlerError`] only when no truthful partial response exists — the
/// event cannot be read, or a record to name has no sequence number. Lambda
/// then retries the whole batch, which is correct in both cases.
pub async fn handle(
    event: LambdaEvent<source::Event>,
    deps: &Deps,
) -> Result<KinesisEventResponse, HandlerError> {
    let started = Instant::now();
    let (event, context) = event.into_parts();
    let mut event = KinesisEvent::from(event);
    let deadline = working_deadline(
        context.deadline,
        deps.config.deadline_margin,
        deps.local_timeout,
        started,
        SystemTime::now(),
    );
    let span = tracing::info_span!(
        "invocation",
        request_id = %context.request_id,
        records = event.records.len(),
    );
    async move {
        let data_bytes = event.records.iter().map(|r| r.kinesis.data.0.len() as u64).sum();
        // Moves each record's data out of the event: the batch is held once.
        let records = source::records(&mut event)?;
        let user_records = records.len();
        let shards = group_by_shard(records);
        let budget = connect_budget(deadline.saturating_duration_since(Instant::now()));
        let writer = if shards.is_empty() {
            Ok(None)
        } else {
            deps.writer.get_or_connect(&deps.config, budget).await.map(Some)
        };
        let outage = writer.as_ref().err().map(|e| error_chain(e));
        if let Some(error) = &outage {
            tracing::warn!(error = %error, "BigQuery is out of reach: the records are spilled raw (outage mode)");
        }
        let delivery = writer.ok().flatten();
        let outcomes = futures::future::join_all(
            shards.iter().map(|shard| deliver_shard(shard, deps, delivery, outage.as_deref(), deadline)),
        )
        .await;
        let first_not_landed =
            shards.iter().zip(&outcomes).map(|(shard, o)| first_not_landed(shard, o));
        let response = partial_batch_response(&event, first_not_landed)?;

        let mut summary = summarize(&event, &outcomes, data_bytes, started.elapsed());
        summary.user_records = user_records as u64;
        summary.outage = outage.is_some();
        summary.log();
        deps.output.write_line(&emf_line(
            &summary,
            &deps.config.table.to_string(),
            &context.env_config.function_name,
            now_millis(),
        ));
        Ok(response)
    }
    .instrument(span)
    .await
    .inspect_err(|e: &HandlerError| tracing::error!(error = %e, "invocation failed as a whole"))
}

/// The event index of the shard's first Kinesis record not landed. Outcome
/// indexes are batch positions; the response names event records. An
/// outcome that does not cover the batch one-to-one cannot be trusted, so
/// the whole shard is handed back rather than claiming what is unknown.
fn first_not_landed(shard: &ShardGroup, outcome: &ShardOutcome) -> Option<usize> {
    if outcome.records.len() != shard.records.len() {
        tracing::error!(
            records = shard.records.len(),
            outcomes = outcome.records.len(),
            "delivery outcome does not match the batch; handing the shard back"
        );
        return shard.event_index(0);
    }
    outcome.first_not_landed().map(|i| shard.event_index(i).or(shard.event_index(0)).unwrap_or(0))
}

/// Delivers one shard through `delivery` when BigQuery is connected, or
/// raw to the sinks when it is out of reach (`outage` says why).
async fn deliver_shard(
    shard: &ShardGroup,
    deps: &Deps,
    delivery: Option<&DeliveryDeps>,
    outage: Option<&str>,
    deadline: Instant,
) -> ShardOutcome {
    let span = tracing::info_span!("batch", first_seq = %shard.first_sequence_number());
    let batch = ShardBatch {
        table: &deps.config.table,
        stream_arn: &shard.stream_arn,
        shard_id: &shard.shard_id,
        records: &shard.records,
    };
    let outcome = match delivery {
        Some(delivery) => delivery::deliver(batch, delivery, deadline).instrument(span).await,
        None => {
            let sinks = deps.writer.sinks();
            let offline = OfflineSinks {
                mode: &sinks.mode,
                spill: sinks.spill.as_ref(),
                dlq: sinks.dead_letter.as_ref(),
            };
            let error = outage.unwrap_or("BigQuery out of reach");
            delivery::deliver_offline(batch, offline, error).instrument(span).await
        }
    };
    tracing::debug!(
        shard_id = %shard.shard_id,
        records = shard.records.len(),
        first_not_landed = outcome.first_not_landed(),
        stats = ?outcome.stats,
        "shard delivered"
    );
    outcome
}

fn summarize(
    event: &KinesisEvent,
    outcomes: &[ShardOutcome],
    bytes: u64,
    duration: Duration,
) -> InvocationSummary {
    let mut s = InvocationSummary {
        records: event.records.len() as u64,
        shards: outcomes.len() as u64,
        bytes,
        duration,
        ..InvocationSummary::default()
    };
    for o in outcomes {
        s.rows += o.count(Landing::Table) as u64;
        s.skipped += o.count(Landing::Earlier) as u64;
        s.dead_lettered += o.count(Landing::DeadLetter) as u64;
        s.spilled += o.count(Landing::Spill) as u64;
        s.not_landed += o.records.iter().filter(|r| !r.is_landed()).count() as u64;
        s.discarded_landed += o.stats.discarded_landed as u64;
        s.at_least_once += o.stats.lost_in_doubt as u64;
        if let Some(reason) = &o.gave_back {
            tracing::warn!(?reason, "shard batch given back to Kinesis");
        }
    }
    let now = i64::try_from(now_millis()).unwrap_or(i64::MAX);
    s.max_record_age_ms = event
        .records
        .iter()
        .map(|r| r.kinesis.approximate_arrival_timestamp.0.timestamp_millis())
        .min()
        .map(|oldest| u64::try_from(now.saturating_sub(oldest)).unwrap_or(0));
    s
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A Lambda event with no Lambda behind it (`invoke`, tests, benchmarks):
/// a context whose deadline is `timeout` from now, as a function timeout.
pub fn local_event(
    event: impl Into<source::Event>,
    timeout: Duration,
) -> LambdaEvent<source::Event> {
    let event = event.into();
    let mut context = Context::default();
    context.request_id = format!("local-{}", uuid::Uuid::new_v4());
    context.deadline = now_millis().saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(0));
    LambdaEvent::new(event, context)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // `Item` is the source module's own result type
mod tests {
    use super::*;
    use crate::delivery::{DeliveryStats, RecordOutcome};
    use crate::source::{Position, SequenceNumber, SourceRecord};

    fn group(event_indexes: &[usize]) -> ShardGroup {
        let records = event_indexes
            .iter()
            .map(|&event_index| {
                Ok(SourceRecord {
                    shard_id: "s".into(),
                    stream_arn: "a".into(),
                    position: Position {
                        sequence_number: SequenceNumber::new("1").unwrap(),
                        sub_sequence_number: 0,
                    },
                    event_index,
                    partition_key: "k".into(),
                    explicit_hash_key: None,
                    arrival_micros: None,
                    data: bytes::Bytes::new(),
                })
            })
            .collect();
        ShardGroup { shard_id: "s".into(), stream_arn: "a".into(), records }
    }

    fn outcome(landed: &[bool]) -> ShardOutcome {
        ShardOutcome {
            records: landed
                .iter()
                .map(|&l| {
                    if l { RecordOutcome::Landed(Landing::Table) } else { RecordOutcome::NotLanded }
                })
                .collect(),
            gave_back: None,
            stats: DeliveryStats::default(),
        }
    }

    #[test]
    fn maps_batch_positions_to_event_records() {
        // Sub-records 1..3 of an aggregate at event index 4.
        let shard = group(&[3, 4, 4, 4, 5]);
        assert_eq!(first_not_landed(&shard, &outcome(&[true; 5])), None);
        assert_eq!(first_not_landed(&shard, &outcome(&[true, true, false, true, false])), Some(4));
        assert_eq!(first_not_landed(&shard, &outcome(&[true, true, true, true, false])), Some(5));
    }

    /// What operators alarm on besides the landings: rows of discarded
    /// batches found in the table, and records replayed at least once.
    #[test]
    fn the_summary_counts_discarded_rows_and_at_least_once_records() {
        let mut a = outcome(&[true, true]);
        a.stats.discarded_landed = 3;
        a.stats.lost_in_doubt = 1;
        let mut b = outcome(&[true]);
        b.stats.lost_in_doubt = 2;
        let event = KinesisEvent::default();
        let s = summarize(&event, &[a, b], 0, Duration::ZERO);
        assert_eq!((s.rows, s.discarded_landed, s.at_least_once), (3, 3, 3));
    }

    #[test]
    fn an_outcome_that_does_not_cover_the_batch_hands_the_shard_back() {
        let shard = group(&[3, 4, 5]);
        assert_eq!(first_not_landed(&shard, &outcome(&[true, true])), Some(3));
        assert_eq!(first_not_landed(&shard, &outcome(&[true; 4])), Some(3));
    }
}
