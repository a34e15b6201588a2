//! One shard batch delivered to the tables its records name: split by table
//! ([`super::plan`]), each table's records through `delivery::deliver` with
//! that table's own write stream and state (exactly-once holds per table),
//! records with no table to the dead-letter queue, and one outcome back in
//! the batch's order for the partial batch response.

use std::time::Duration;

use tokio::time::Instant;

use super::plan::{Item, RoutePlan, plan};
use super::writers::{OpenError, RoutedTables};
use crate::delivery::{self, Landing, OfflineSinks, RecordOutcome, ShardBatch, ShardOutcome};
use crate::dlq::{Cause, DeadLetter, DlqError, Reason};
use crate::source::SourceRecord;

/// Delivers one shard's records, routed by table. Tables are written
/// concurrently; one table's failure leaves the others' landings standing
/// (the response starts at the first record not landed, whatever its
/// table, and each table's state skips what it already holds on the retry).
/// A table whose writer cannot be opened within `budget` (BigQuery out of
/// reach) has its records spilled raw, as a one-table setup does in an
/// outage ([`delivery::deliver_offline`]); the outcome counts them.
pub async fn deliver_routed(
    records: &[Item],
    stream_arn: &str,
    shard_id: &str,
    routes: &RoutedTables,
    budget: Duration,
    deadline: Instant,
) -> RoutedOutcome {
    let mut plan = plan(&routes.router, records, routes.max_tables);
    if plan.tables_over_bound > 0 {
        tracing::warn!(
            tables_over_bound = plan.tables_over_bound,
            records = plan.over_bound.len(),
            max_tables = routes.max_tables,
            "more tables than MAX_TABLES in one batch; the rest goes back to Kinesis"
        );
    }
    let opened =
        futures::future::join_all(plan.tables.iter().map(|b| routes.writer(&b.table, budget)))
            .await;
    let mut writers = Vec::with_capacity(opened.len());
    for (batch, opened) in plan.tables.iter().zip(opened) {
        match opened {
            Ok(w) => writers.push(Writer::Open(w)),
            Err(e) => {
                let reason = match &e {
                    OpenError::NoSuchTable(_) => Reason::NoSuchTable,
                    OpenError::Unusable(_) => Reason::SchemaMismatch,
                    OpenError::Transient(why) => {
                        tracing::warn!(table = %batch.table, error = %why,
                            "BigQuery is out of reach for this table: its records are spilled raw");
                        writers.push(Writer::Offline(why.clone()));
                        continue;
                    }
                };
                tracing::warn!(table = %batch.table, error = %e, ?reason, "routed table not writable");
                let letters = batch.indexes.iter().zip(&batch.records).filter_map(|(&i, r)| {
                    let r: &SourceRecord = r.as_ref().ok()?;
                    Some((
                        i,
                        DeadLetter::of(r, &batch.table, Cause::Decided(reason, &e.to_string())),
                    ))
                });
                plan.letters.extend(letters.collect::<Vec<_>>());
                writers.push(Writer::Letters);
            }
        }
    }
    let tables = futures::future::join_all(plan.tables.iter().zip(&writers).map(
        |(batch, writer)| async move {
            let shard =
                ShardBatch { table: &batch.table, stream_arn, shard_id, records: &batch.records };
            match writer {
                Writer::Open(writer) => delivery::deliver(shard, writer, deadline).await,
                // Their letters' outcomes replace these in the merge.
                Writer::Letters => not_landed(batch.records.len()),
                Writer::Offline(why) => {
                    let offline = OfflineSinks {
                        mode: routes.mode(),
                        spill: routes.spill().as_ref(),
                        dlq: routes.dead_letter().as_ref(),
                    };
                    delivery::deliver_offline(shard, offline, why).await
                }
            }
        },
    ));
    let (tables, letters) = tokio::join!(tables, send_letters(&plan, routes));
    let offline_tables = writers.iter().filter(|w| matches!(w, Writer::Offline(_))).count();
    RoutedOutcome { outcome: plan.merge(tables, &letters), offline_tables }
}

/// One shard's routed delivery.
#[derive(Debug)]
pub struct RoutedOutcome {
    pub outcome: ShardOutcome,
    /// Tables whose records were spilled raw because BigQuery did not open
    /// them in time (outage mode).
    pub offline_tables: usize,
}

/// What a table of the batch is written with.
enum Writer {
    Open(std::sync::Arc<delivery::DeliveryDeps>),
    /// Out of reach: raw spill, for this reason.
    Offline(String),
    /// Its records are dead letters (no such table, unusable schema).
    Letters,
}

fn not_landed(n: usize) -> ShardOutcome {
    ShardOutcome {
        records: vec![RecordOutcome::NotLanded; n],
        gave_back: None,
        stats: delivery::DeliveryStats::default(),
    }
}

/// Sends the letters of records with no table; one outcome per letter.
async fn send_letters(plan: &RoutePlan, routes: &RoutedTables) -> Vec<RecordOutcome> {
    if plan.letters.is_empty() {
        return Vec::new();
    }
    let letters: Vec<DeadLetter> = plan.letters.iter().map(|(_, l)| l.clone()).collect();
    let mut out = vec![RecordOutcome::Landed(Landing::DeadLetter); letters.len()];
    match routes.dead_letter().send(&letters).await {
        Ok(()) => {}
        Err(DlqError::Partial { failed, cause }) => {
            tracing::warn!(failed = failed.len(), error = %cause, "dead letters not accepted");
            for i in failed {
                if let Some(o) = out.get_mut(i) {
                    *o = RecordOutcome::NotLanded;
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "dead letters not sent");
            out.fill(RecordOutcome::NotLanded);
        }
    }
    out
}
