//! What the demo saw, and the check that matters: every good record exactly
//! once in the table (or, in CDC mode, the table equal to the last change of
//! each key), every corrupt one in the dead-letter queue.

use super::cdc::Convergence;
use super::generate::CorruptCounts;
use super::kinesis::EsmStats;
use super::run::DemoMode;
use crate::backfill::Summary;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The demo's outcome.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    pub mode: DemoMode,
    pub format: String,
    pub faults: Vec<&'static str>,
    pub kinesis_records: u64,
    pub user_records: u64,
    /// User records that must reach the table.
    pub good: u64,
    pub corrupt: CorruptCounts,
    pub esm: EsmStats,
    /// Dead letters by reason (one per message in the queue).
    pub dead_letters: BTreeMap<String, u64>,
    /// Distinct records among them: a retried invocation may send a letter
    /// again (the dead-letter queue is at-least-once).
    pub dead_lettered_records: u64,
    /// Spillover before the backfill: objects, records, and records spilled
    /// in doubt (with their write stream and offsets).
    pub spilled_objects: u64,
    pub spilled_records: u64,
    pub in_doubt_records: u64,
    pub backfill: Summary,
    pub rows_in_table: u64,
    /// Good records of batches the event source mapping discarded (the
    /// `discard` fault): in the table once, or never landed — lost by the
    /// mapping (Kinesis does not deliver them again), not by us.
    pub discarded_good: u64,
    pub discarded_landed: u64,
    pub discarded_by_source: u64,
    /// Corrupt records in discarded batches: their dead letter may never
    /// have been sent.
    pub corrupt_discarded: u64,
    /// Good records spilled as in doubt on a lost stream (the `lost-stream`
    /// fault), and the extra copies of them in the table: at least once, as
    /// docs/operations.md states.
    pub lost_stream_records: u64,
    pub at_least_once_copies: u64,
    /// Good records not in the table, in it more than once, and rows that
    /// are no good record — beyond what the faults above allow.
    pub missing: Vec<String>,
    pub duplicated: Vec<String>,
    pub unexpected: Vec<String>,
    /// `--mode cdc`: the table against the last change of each key (the
    /// exactly-once fields above stay empty).
    pub cdc: Option<Convergence>,
    /// `--routing`: rows per routed table.
    pub routed: Vec<(String, u64)>,
    /// `--new-field`: the schema-evolution run.
    pub new_field: Option<super::new_field::NewFieldReport>,
    /// The working directory, when kept (`--keep`).
    pub dir: Option<PathBuf>,
    pub elapsed: Duration,
}

/// What the injected faults allow beyond "every good record exactly once".
#[derive(Clone, Debug, Default)]
pub struct Allowances {
    /// `event_id`s of good records in batches the mapping discarded: in the
    /// table at most once (never landed is the mapping's loss).
    pub discarded: HashSet<String>,
    /// `event_id`s of records spilled as in doubt on a lost stream: in the
    /// table at least once.
    pub lost_stream: HashSet<String>,
}

impl DemoReport {
    /// Compares the table's `event_id`s with the good records: each exactly
    /// once, except as `allow` says; nothing else in the table.
    pub fn check_table(&mut self, good: &[String], in_table: &[String], allow: &Allowances) {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for id in in_table {
            *counts.entry(id.as_str()).or_default() += 1;
        }
        let wanted: HashSet<&str> = good.iter().map(String::as_str).collect();
        self.rows_in_table = in_table.len() as u64;
        let discarded: Vec<&String> =
            good.iter().filter(|id| allow.discarded.contains(id.as_str())).collect();
        self.discarded_good = discarded.len() as u64;
        self.discarded_landed =
            discarded.iter().filter(|id| counts.contains_key(id.as_str())).count() as u64;
        self.discarded_by_source = self.discarded_good - self.discarded_landed;
        self.lost_stream_records =
            good.iter().filter(|id| allow.lost_stream.contains(id.as_str())).count() as u64;
        self.at_least_once_copies = counts
            .iter()
            .filter(|(id, _)| allow.lost_stream.contains(**id))
            .map(|(_, n)| n - 1)
            .sum();
        self.missing = good
            .iter()
            .filter(|id| !counts.contains_key(id.as_str()) && !allow.discarded.contains(*id))
            .cloned()
            .collect();
        self.duplicated = counts
            .iter()
            .filter(|(id, n)| **n > 1 && !allow.lost_stream.contains(**id))
            .map(|(id, _)| (*id).to_string())
            .collect();
        self.unexpected =
            counts.keys().filter(|id| !wanted.contains(*id)).map(|id| (*id).to_string()).collect();
        self.duplicated.sort();
        self.unexpected.sort();
    }

    /// Every good record exactly once in the table, nothing else in it.
    pub fn exactly_once(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.unexpected.is_empty()
    }

    /// Every planted corrupt record reached the dead-letter queue, and
    /// nothing else did.
    /// (A corrupt record of a discarded batch may have no letter: the
    /// mapping dropped it before the attempt got to it.)
    pub fn corrupt_dead_lettered(&self) -> bool {
        let total = self.corrupt.total();
        (total.saturating_sub(self.corrupt_discarded)..=total).contains(&self.dead_lettered_records)
    }

    /// The table holds what it must: every good record once, or (CDC) the
    /// last change of each key.
    pub fn table_holds(&self) -> bool {
        match (self.mode, &self.cdc) {
            (DemoMode::ExactlyOnce, _) => self.exactly_once(),
            (DemoMode::Cdc, Some(c)) => c.converged(),
            (DemoMode::Cdc, None) => false,
        }
    }

    pub fn passed(&self) -> bool {
        self.table_holds()
            && self.corrupt_dead_lettered()
            && self.backfill.failed == 0
            && self.new_field.as_ref().is_none_or(|n| n.passed())
    }
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let faults =
            if self.faults.is_empty() { "none".to_string() } else { self.faults.join(", ") };
        let mode = match self.mode {
            DemoMode::ExactlyOnce => "exactly-once",
            DemoMode::Cdc => "cdc",
        };
        writeln!(
            f,
            "kinesis-bigquery demo — mode {mode}, row format {}, faults: {faults}",
            self.format
        )?;
        let line = |f: &mut fmt::Formatter<'_>, label: &str, value: String| {
            writeln!(f, "  {label:<44}{value:>14}")
        };
        line(f, "Kinesis records in", self.kinesis_records.to_string())?;
        line(f, "user records (after KPL de-aggregation)", self.user_records.to_string())?;
        line(f, "  good", self.good.to_string())?;
        line(f, "  corrupt (planted)", self.corrupt.total().to_string())?;
        let e = &self.esm;
        line(f, "invocations", e.invocations.to_string())?;
        line(f, "  partial batch responses", e.partial_responses.to_string())?;
        line(f, "  killed midway, retried", e.crashes.to_string())?;
        line(f, "  response lost, retried", e.lost_responses.to_string())?;
        line(
            f,
            "  batches discarded by the mapping (records)",
            format!("{} / {}", e.discarded_batches, e.discarded.len()),
        )?;
        line(
            f,
            "write streams lost (between / mid-invocation)",
            format!("{} / {}", e.streams_expired_between, e.streams_expired_midway),
        )?;
        let letters = self.dead_letters.values().sum::<u64>();
        line(
            f,
            "dead-lettered (distinct records / messages)",
            format!("{} / {letters}", self.dead_lettered_records),
        )?;
        for (reason, n) in &self.dead_letters {
            line(f, &format!("  {reason}"), n.to_string())?;
        }
        line(
            f,
            "spilled (objects / records)",
            format!("{} / {}", self.spilled_objects, self.spilled_records),
        )?;
        line(f, "  of which in doubt", self.in_doubt_records.to_string())?;
        let b = &self.backfill;
        line(f, "backfilled rows", b.rows.to_string())?;
        line(f, "  in-doubt records already in the table", b.already_in_table.to_string())?;
        line(f, "  at least once (in doubt on a lost stream)", b.at_least_once.to_string())?;
        line(f, "  orphan objects removed", b.orphaned.to_string())?;
        line(f, "  orphan objects quarantined", b.quarantined.to_string())?;
        if self.routed.is_empty() {
            line(f, "rows in table", self.rows_in_table.to_string())?;
        } else {
            line(f, "rows in the routed tables", self.rows_in_table.to_string())?;
            for (table, rows) in &self.routed {
                line(f, &format!("  {table}"), rows.to_string())?;
            }
        }
        let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
        if let Some(c) = &self.cdc {
            write_convergence(f, c, line)?;
        } else {
            if self.discarded_good > 0 {
                line(
                    f,
                    "discarded good records (landed once / never)",
                    format!("{} / {}", self.discarded_landed, self.discarded_by_source),
                )?;
                writeln!(
                    f,
                    "    never landed: the mapping gave up on them; Kinesis will not \
                     redeliver them (the event source mapping's data loss, not ours)"
                )?;
            }
            if self.lost_stream_records > 0 {
                line(
                    f,
                    "in doubt on a lost stream (records / extra rows)",
                    format!("{} / {}", self.lost_stream_records, self.at_least_once_copies),
                )?;
                writeln!(f, "    at least once by the stated policy (docs/operations.md)")?;
            }
            line(
                f,
                "exactly once (every other good record once)",
                verdict(self.exactly_once()).to_string(),
            )?;
        }
        if self.mode == DemoMode::ExactlyOnce && !self.exactly_once() {
            writeln!(
                f,
                "    missing {}, duplicated {}, unexpected {} (first: {:?} {:?} {:?})",
                self.missing.len(),
                self.duplicated.len(),
                self.unexpected.len(),
                self.missing.first(),
                self.duplicated.first(),
                self.unexpected.first()
            )?;
        }
        line(
            f,
            "every corrupt record dead-lettered",
            verdict(self.corrupt_dead_lettered()).to_string(),
        )?;
        line(f, "time", format!("{:.1} s", self.elapsed.as_secs_f64()))?;
        if let Some(n) = &self.new_field {
            write!(f, "{n}")?;
            line(
                f,
                "new field: every record once, none lettered",
                verdict(n.passed()).to_string(),
            )?;
        }
        if let Some(dir) = &self.dir {
            writeln!(f, "  state, spillover and dead letters kept in {}", dir.display())?;
        }
        Ok(())
    }
}

/// The CDC lines: changes by kind, keys, and the convergence verdict.
fn write_convergence(
    f: &mut fmt::Formatter<'_>,
    c: &Convergence,
    line: impl Fn(&mut fmt::Formatter<'_>, &str, String) -> fmt::Result,
) -> fmt::Result {
    line(f, "changes (upserts / deletes)", format!("{} / {}", c.upserts, c.deletes))?;
    line(f, "keys whose last change is an upsert", c.keys_expected.to_string())?;
    let verdict = if c.converged() { "PASS" } else { "FAIL" };
    line(f, "table = last change of each key", verdict.to_string())?;
    if !c.converged() {
        writeln!(
            f,
            "    missing {}, stale {}, duplicated {}, not deleted {}, unreadable {} \
             (first: {:?} {:?} {:?} {:?})",
            c.missing.len(),
            c.stale.len(),
            c.duplicated.len(),
            c.not_deleted.len(),
            c.unreadable,
            c.missing.first(),
            c.stale.first(),
            c.duplicated.first(),
            c.not_deleted.first()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_missing_duplicated_unexpected() {
        let mut r = DemoReport::default();
        let good = vec!["a".to_string(), "b".into(), "c".into()];
        let none = Allowances::default();
        r.check_table(&good, &["a".into(), "b".into(), "c".into()], &none);
        assert!(r.exactly_once());
        r.check_table(&good, &["a".into(), "a".into(), "x".into()], &none);
        assert_eq!(r.missing, ["b", "c"]);
        assert_eq!(r.duplicated, ["a"]);
        assert_eq!(r.unexpected, ["x"]);
        assert!(!r.exactly_once());
    }

    #[test]
    fn discarded_may_be_missing_and_lost_stream_records_repeated_nothing_else() {
        let mut r = DemoReport::default();
        let good = vec!["a".to_string(), "b".into(), "c".into(), "d".into()];
        let allow = Allowances {
            discarded: ["b".to_string(), "c".into()].into(),
            lost_stream: ["d".to_string()].into(),
        };
        r.check_table(&good, &["a".into(), "c".into(), "d".into(), "d".into()], &allow);
        assert!(r.exactly_once(), "{r:?}");
        assert_eq!((r.discarded_good, r.discarded_landed, r.discarded_by_source), (2, 1, 1));
        assert_eq!((r.lost_stream_records, r.at_least_once_copies), (1, 1));
        // A discarded record twice, or any other record missing, still fails.
        r.check_table(&good, &["a".into(), "c".into(), "c".into(), "d".into()], &allow);
        assert_eq!(r.duplicated, ["c"]);
        r.check_table(&good, &["c".into(), "d".into()], &allow);
        assert_eq!(r.missing, ["a"]);
        assert!(!r.exactly_once());
    }

    #[test]
    fn corrupt_records_of_a_discarded_batch_may_lack_a_letter() {
        let mut r = DemoReport::default();
        r.corrupt.invalid_json = 3;
        r.dead_lettered_records = 2;
        assert!(!r.corrupt_dead_lettered());
        r.corrupt_discarded = 1;
        assert!(r.corrupt_dead_lettered());
        r.dead_lettered_records = 4;
        assert!(!r.corrupt_dead_lettered());
    }
}
