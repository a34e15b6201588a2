//! The exactly-once delivery protocol (DESIGN.md, "Exactly-once: the
//! invariants") and its per-shard state store: one shard's records → rows in
//! BigQuery, dead letters, or spillover, each record landed exactly once, and
//! an outcome per record that tells the handler what Kinesis may forget.
//!
//! - [`plan`]: the pure record → offset mapping and its state transitions;
//! - [`state`]: what is persisted per (table, Kinesis stream, shard);
//! - `exactly_once` / `at_least_once`: the drivers for the two `WRITE_MODE`s;
//! - `streaming` / `send`: the append round of every path (the Lambda's
//!   modes and the backfill), streamed while records encode or pre-cut from
//!   rows already encoded; `send` also judges exactly-once's answers;
//! - `prepare`: records → classified items and their letters, for every path;
//! - `outage`: raw spill while BigQuery is out of reach (no schema);
//! - `sinks`: the one dead-letter send and spill write of every driver;
//! - [`outcome`]: per-record results; [`crash`]: the crash-point test hook.

mod at_least_once;
pub mod crash;
mod deps;
mod exactly_once;
mod outage;
pub mod outcome;
pub mod plan;
pub(crate) mod prepare;
pub(crate) mod send;
mod sinks;
pub mod spill_manifest;
pub mod state;
pub mod store;
pub(crate) mod streaming;

pub use crash::{Boundary, Crash, CrashPoints};
pub use deps::{DeliveryDeps, DeliveryMode, EncoderCell, SPILL_RESERVE};
pub use outage::{OfflineSinks, deliver_offline, deliver_offline_with};
pub use outcome::{DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
pub use state::{ShardState, state_key};

use std::str::FromStr;

use tokio::time::Instant;

use crate::dlq::{Cause, DeadLetter};
use crate::source::{BadRecord, SourceRecord};
use crate::table::TableName;
use prepare::Input;

/// `WRITE_MODE`: how rows are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WriteMode {
    /// One COMMITTED stream per shard with offsets and persisted state.
    #[default]
    ExactlyOnce,
    /// The `_default` stream, no state; a retry may duplicate rows.
    AtLeastOnce,
    /// Change data capture: the `_default` stream, each row an `UPSERT` or
    /// `DELETE` of its primary key with a sequence number derived from the
    /// record ([`crate::cdc`]); a retry writes the same change again, which
    /// leaves the table as it was.
    Cdc,
}

impl FromStr for WriteMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "exactly_once" => Ok(Self::ExactlyOnce),
            "at_least_once" => Ok(Self::AtLeastOnce),
            "cdc" => Ok(Self::Cdc),
            _ => Err(format!("{s:?} is not one of: exactly_once, at_least_once, cdc")),
        }
    }
}

/// The records of one shard in one invocation, in the event's order.
pub struct ShardBatch<'a> {
    pub table: &'a TableName,
    pub stream_arn: &'a str,
    pub shard_id: &'a str,
    pub records: &'a [Result<SourceRecord, BadRecord>],
}

/// Delivers one shard's batch under `deps.mode`. Never fails as a whole: the
/// outcome says, per record, whether it landed; the handler reports the first
/// record that did not. Every client it calls shares one retry budget
/// (`RETRY_BUDGET_MS`, from the first failure; [`crate::retry`]).
pub async fn deliver(
    batch: ShardBatch<'_>,
    deps: &DeliveryDeps,
    deadline: Instant,
) -> ShardOutcome {
    use tracing::Instrument;
    let span =
        tracing::info_span!("shard", shard_id = batch.shard_id, records = batch.records.len());
    crate::retry::within_invocation(deps.appender.retry.budget, async {
        // Batch indexes of records that wait for columns not visible in time.
        let mut awaiting = Vec::new();
        if let Some(evolver) = &deps.evolve {
            let gave_back = match evolver.prepare(&batch, deps, deadline).await {
                Ok(report) => {
                    awaiting = report.awaiting;
                    // Only exactly-once can take them out of the mapping and
                    // spill them (`exactly_once/settle.rs`).
                    let stateless = !matches!(deps.mode, DeliveryMode::ExactlyOnce { .. });
                    (stateless && !awaiting.is_empty()).then(|| {
                        GaveBack::SchemaPending(crate::evolve::EvolveError::NotVisible.to_string())
                    })
                }
                Err(crate::evolve::EvolveError::Crashed(c)) => Some(GaveBack::Crashed(c)),
                Err(other) => Some(GaveBack::SchemaPending(other.to_string())),
            };
            if let Some(why) = gave_back {
                tracing::warn!(reason = ?why, "schema step failed; the batch goes back to Kinesis");
                return ShardOutcome {
                    records: vec![RecordOutcome::NotLanded; batch.records.len()],
                    gave_back: Some(why),
                    stats: DeliveryStats::default(),
                };
            }
        }
        match &deps.mode {
            DeliveryMode::ExactlyOnce { state } => {
                exactly_once::deliver(&batch, deps, state.as_ref(), deadline, &awaiting).await
            }
            // CDC rows differ only in their encoder (it adds the change
            // pseudo-columns); they travel the at-least-once `_default` path.
            DeliveryMode::AtLeastOnce | DeliveryMode::Cdc => {
                at_least_once::deliver(&batch, deps, deadline).await
            }
        }
    })
    .instrument(span)
    .await
}

fn inputs<'a>(batch: &ShardBatch<'a>) -> Vec<(usize, Input<'a>)> {
    batch
        .records
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(record) => (i, Input::Record(record)),
            Err(bad) => {
                let letter = DeadLetter::of(&bad.record, batch.table, Cause::Kpl(&bad.reason));
                (i, Input::Bad { position: bad.position().clone(), letter: Box::new(letter) })
            }
        })
        .collect()
}
