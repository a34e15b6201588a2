//! One shard batch split by table, and the tables' outcomes put back in the
//! batch's order. Pure: no I/O, unit-tested here.
//!
//! Tables are taken in the order their first record appears, up to
//! `MAX_TABLES`. Records of later tables are given back to Kinesis (not
//! landed): the partial batch response then starts at the first of them,
//! so the next invocation's batch starts with that table's record, which is
//! within the bound there. Every invocation moves the checkpoint forward and
//! none writes to more than `MAX_TABLES` tables.

use super::extract::{Router, Unroutable};
use crate::delivery::{DeliveryStats, Landing, RecordOutcome, ShardOutcome};
use crate::dlq::{Cause, DeadLetter};
use crate::source::{BadRecord, SourceRecord};
use crate::table::TableName;

/// One user record as the source produced it.
pub type Item = Result<SourceRecord, BadRecord>;

/// The records of one shard batch bound for one table, in batch order.
#[derive(Debug)]
pub struct TableBatch {
    pub table: TableName,
    /// Where each record sits in the shard batch.
    pub indexes: Vec<usize>,
    pub records: Vec<Item>,
}

/// A shard batch split by table.
#[derive(Debug)]
pub struct RoutePlan {
    /// At most `max_tables`, in order of first appearance.
    pub tables: Vec<TableBatch>,
    /// Records with no table (no route, not JSON, bad KPL aggregate), each
    /// with its letter.
    pub letters: Vec<(usize, DeadLetter)>,
    /// Records of tables past the bound: given back to Kinesis.
    pub over_bound: Vec<usize>,
    /// Tables past the bound (for the log line).
    pub tables_over_bound: usize,
    /// Records in the batch.
    pub len: usize,
}

/// Splits `records` (one shard, batch order) by the table each one names.
pub fn plan(router: &Router, records: &[Item], max_tables: usize) -> RoutePlan {
    let mut plan = RoutePlan {
        tables: Vec::new(),
        letters: Vec::new(),
        over_bound: Vec::new(),
        tables_over_bound: 0,
        len: records.len(),
    };
    let mut past_bound: Vec<TableName> = Vec::new();
    let unrouted = router.template().unrouted();
    for (i, item) in records.iter().enumerate() {
        let record = match item {
            Ok(record) => record,
            Err(bad) => {
                plan.letters.push((i, bad_letter(bad, unrouted)));
                continue;
            }
        };
        let table = match router.route(&record.data) {
            Ok(table) => table,
            Err(Unroutable { reason, error }) => {
                plan.letters
                    .push((i, DeadLetter::of(record, unrouted, Cause::Decided(reason, &error))));
                continue;
            }
        };
        if let Some(batch) = plan.tables.iter_mut().find(|b| b.table == table) {
            batch.indexes.push(i);
            batch.records.push(Ok(record.clone()));
        } else if plan.tables.len() < max_tables {
            plan.tables.push(TableBatch {
                table,
                indexes: vec![i],
                records: vec![Ok(record.clone())],
            });
        } else {
            if !past_bound.contains(&table) {
                past_bound.push(table);
            }
            plan.over_bound.push(i);
        }
    }
    plan.tables_over_bound = past_bound.len();
    plan
}

/// The letter of a KPL aggregate that cannot be de-aggregated, as the
/// one-table path writes it, under the template's name.
fn bad_letter(bad: &BadRecord, table: &TableName) -> DeadLetter {
    DeadLetter::of(&bad.record, table, Cause::Kpl(&bad.reason))
}

impl RoutePlan {
    /// The shard's outcome: each table's outcomes at its records' places,
    /// the letters' at theirs, records past the bound not landed. A table
    /// outcome that does not cover its records one-to-one is not trusted:
    /// its records count as not landed.
    pub fn merge(&self, tables: Vec<ShardOutcome>, letters: &[RecordOutcome]) -> ShardOutcome {
        let mut records = vec![RecordOutcome::NotLanded; self.len];
        let mut stats = DeliveryStats::default();
        let mut gave_back = None;
        for (batch, outcome) in self.tables.iter().zip(tables) {
            if outcome.records.len() == batch.indexes.len() {
                for (&i, &o) in batch.indexes.iter().zip(&outcome.records) {
                    records[i] = o;
                }
            } else {
                tracing::error!(
                    table = %batch.table,
                    records = batch.indexes.len(),
                    outcomes = outcome.records.len(),
                    "table outcome does not match its records; handing them back"
                );
            }
            add(&mut stats, &outcome.stats);
            gave_back = gave_back.or(outcome.gave_back);
        }
        for ((i, _), &o) in self.letters.iter().zip(letters) {
            records[*i] = o;
            if o == RecordOutcome::Landed(Landing::DeadLetter) {
                stats.dead_lettered += 1;
            }
        }
        ShardOutcome { records, gave_back, stats }
    }
}

fn add(total: &mut DeliveryStats, s: &DeliveryStats) {
    total.rows_appended += s.rows_appended;
    total.requests += s.requests;
    total.dead_lettered += s.dead_lettered;
    total.spilled += s.spilled;
    total.state_writes += s.state_writes;
    total.rotations += s.rotations;
    total.finalizes += s.finalizes;
    total.claims += s.claims;
    total.discarded_landed += s.discarded_landed;
    total.lost_in_doubt += s.lost_in_doubt;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::Reason;
    use crate::source::{Position, SequenceNumber};

    fn rec(i: usize, data: &str) -> Item {
        Ok(SourceRecord {
            shard_id: "s".into(),
            stream_arn: "a".into(),
            position: Position {
                sequence_number: SequenceNumber::new(&(100 + i).to_string()).unwrap(),
                sub_sequence_number: 0,
            },
            event_index: i,
            partition_key: "k".into(),
            explicit_hash_key: None,
            arrival_micros: None,
            data: data.to_string().into(),
        })
    }

    fn typed(i: usize, t: &str) -> Item {
        rec(i, &format!(r#"{{"n":{i},"type":"{t}"}}"#))
    }

    fn router() -> Router {
        Router::new("p.d.ev_{type}".parse().unwrap())
    }

    #[test]
    fn records_split_by_table_in_order_of_first_appearance() {
        let records =
            vec![typed(0, "b"), typed(1, "a"), rec(2, r#"{"n":2}"#), typed(3, "b"), rec(4, "{")];
        let p = plan(&router(), &records, 16);
        let tables: Vec<(&str, &[usize])> =
            p.tables.iter().map(|b| (b.table.table(), b.indexes.as_slice())).collect();
        assert_eq!(tables, [("ev_b", &[0, 3][..]), ("ev_a", &[1][..])]);
        let letters: Vec<(usize, Reason)> = p.letters.iter().map(|(i, l)| (*i, l.reason)).collect();
        assert_eq!(letters, [(2, Reason::NoRoute), (4, Reason::InvalidJson)]);
        assert_eq!(p.letters[0].1.table.to_string(), "p.d.ev_{type}");
        assert!(p.over_bound.is_empty());
    }

    #[test]
    fn tables_past_the_bound_are_given_back_and_the_next_batch_admits_them() {
        let records =
            vec![typed(0, "a"), typed(1, "b"), typed(2, "c"), typed(3, "a"), typed(4, "c")];
        let p = plan(&router(), &records, 2);
        assert_eq!(p.tables.len(), 2);
        assert_eq!((p.over_bound.as_slice(), p.tables_over_bound), (&[2, 4][..], 1));
        // Everything admitted landed: the response starts at record 2.
        let landed = |n| ShardOutcome {
            records: vec![RecordOutcome::Landed(Landing::Table); n],
            gave_back: None,
            stats: DeliveryStats { rows_appended: n, ..DeliveryStats::default() },
        };
        let merged = p.merge(vec![landed(2), landed(1)], &[]);
        assert_eq!(merged.first_not_landed(), Some(2));
        assert_eq!(merged.stats.rows_appended, 3);
        // Kinesis resends from record 2: table c is first there.
        let retry = plan(&router(), &records[2..], 2);
        assert_eq!(retry.tables[0].table.table(), "ev_c");
        assert!(retry.over_bound.is_empty());
    }

    #[test]
    fn outcomes_go_back_to_their_records() {
        let records = vec![typed(0, "a"), typed(1, "b"), rec(2, "x"), typed(3, "a")];
        let p = plan(&router(), &records, 16);
        let a = ShardOutcome {
            records: vec![RecordOutcome::Landed(Landing::Table), RecordOutcome::NotLanded],
            gave_back: None,
            stats: DeliveryStats::default(),
        };
        let b = ShardOutcome {
            records: vec![RecordOutcome::Landed(Landing::Spill)],
            gave_back: None,
            stats: DeliveryStats::default(),
        };
        let merged = p.merge(vec![a, b], &[RecordOutcome::Landed(Landing::DeadLetter)]);
        assert_eq!(
            merged.records,
            [
                RecordOutcome::Landed(Landing::Table),
                RecordOutcome::Landed(Landing::Spill),
                RecordOutcome::Landed(Landing::DeadLetter),
                RecordOutcome::NotLanded,
            ]
        );
        assert_eq!(merged.stats.dead_lettered, 1);
        // An outcome of the wrong length leaves its table's records not landed.
        let short =
            ShardOutcome { records: vec![], gave_back: None, stats: DeliveryStats::default() };
        let b = ShardOutcome {
            records: vec![RecordOutcome::Landed(Landing::Table)],
            gave_back: None,
            stats: DeliveryStats::default(),
        };
        let merged = p.merge(vec![short, b], &[RecordOutcome::Landed(Landing::DeadLetter)]);
        assert_eq!(merged.first_not_landed(), Some(0));
    }
}
