//! What a backfill run did, object by object and in total.

use serde::Serialize;
use std::fmt;

/// How one spillover object ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectStatus {
    /// Its rows were committed by this run, then the object was removed.
    Replayed,
    /// A marker showed an earlier run had committed it; only the removal
    /// was left to do.
    AlreadyCommitted,
    /// Not listed in the shard state although the state is past it: its
    /// records landed through a retry. Removed without replaying
    /// (`--delete-orphans`).
    Orphaned,
    /// An orphan moved under `quarantine/` (the default): not replayed, not
    /// deleted, for a person to look at.
    Quarantined,
    /// Written by another `WRITE_MODE` than this run's: left alone, and the
    /// run exits non-zero so the switch is noticed.
    OtherMode,
    /// `--dry-run`: read and encoded, nothing written.
    Counted,
    /// Left behind; a rerun retries it.
    Failed,
}

/// One object's line in the progress output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectReport {
    pub key: String,
    pub status: ObjectStatus,
    /// User records in the object.
    pub records: u64,
    /// Rows this run committed (or would, in a dry run).
    pub rows: u64,
    /// In-doubt records an earlier append had already written.
    pub already_in_table: u64,
    /// In-doubt records whose stream end a dry run did not learn.
    pub in_doubt: u64,
    /// In-doubt records of a write stream the service lost: replayed without
    /// knowing whether an earlier append wrote them (at least once).
    #[serde(default)]
    pub at_least_once: u64,
    /// Records sent to the dead-letter queue (or that would be).
    pub dead_lettered: u64,
    /// Why the object was left behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ObjectReport {
    pub fn failed(key: &str, error: String) -> Self {
        Self {
            key: key.to_string(),
            status: ObjectStatus::Failed,
            records: 0,
            rows: 0,
            already_in_table: 0,
            in_doubt: 0,
            at_least_once: 0,
            dead_lettered: 0,
            error: Some(error),
        }
    }
}

/// Totals of a run; printed at the end.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub dry_run: bool,
    /// Objects that matched the filters.
    pub objects: u64,
    pub replayed: u64,
    pub already_committed: u64,
    pub counted: u64,
    pub orphaned: u64,
    pub quarantined: u64,
    pub other_mode: u64,
    pub failed: u64,
    pub records: u64,
    pub rows: u64,
    pub already_in_table: u64,
    pub in_doubt: u64,
    pub at_least_once: u64,
    pub dead_lettered: u64,
    /// Keys of the objects left behind, with the reason.
    pub failures: Vec<(String, String)>,
}

impl Summary {
    pub fn add(&mut self, report: &ObjectReport) {
        self.objects += 1;
        match report.status {
            ObjectStatus::Replayed => self.replayed += 1,
            ObjectStatus::AlreadyCommitted => self.already_committed += 1,
            ObjectStatus::Counted => self.counted += 1,
            ObjectStatus::Orphaned => self.orphaned += 1,
            ObjectStatus::Quarantined => self.quarantined += 1,
            ObjectStatus::OtherMode => {
                self.other_mode += 1;
                self.failures.push((report.key.clone(), report.error.clone().unwrap_or_default()));
            }
            ObjectStatus::Failed => {
                self.failed += 1;
                self.failures.push((report.key.clone(), report.error.clone().unwrap_or_default()));
            }
        }
        self.records += report.records;
        self.rows += report.rows;
        self.already_in_table += report.already_in_table;
        self.in_doubt += report.in_doubt;
        self.at_least_once += report.at_least_once;
        self.dead_lettered += report.dead_lettered;
    }

    /// True when a spillover object is still there because of a failure or
    /// because another `WRITE_MODE` wrote it: the command then exits non-zero.
    pub fn left_behind(&self) -> bool {
        self.failed > 0 || self.other_mode > 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let title = if self.dry_run { "backfill (dry run)" } else { "backfill" };
        writeln!(f, "{title}")?;
        let rows: [(&str, u64); 14] = [
            ("objects", self.objects),
            ("  replayed", self.replayed),
            ("  already committed", self.already_committed),
            ("  counted (dry run)", self.counted),
            ("  orphans removed", self.orphaned),
            ("  orphans quarantined", self.quarantined),
            ("  other write mode", self.other_mode),
            ("  left behind", self.failed),
            ("records", self.records),
            ("  rows committed", self.rows),
            ("  already in table", self.already_in_table),
            ("  in doubt (dry run)", self.in_doubt),
            ("  at least once (lost)", self.at_least_once),
            ("  dead-lettered", self.dead_lettered),
        ];
        for (label, value) in rows {
            writeln!(f, "  {label:<24}{value:>12}")?;
        }
        for (key, why) in &self.failures {
            writeln!(f, "  left behind: {key}: {why}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: ObjectStatus, records: u64) -> ObjectReport {
        ObjectReport {
            key: "k".into(),
            status,
            records,
            rows: records,
            already_in_table: 0,
            in_doubt: 0,
            at_least_once: 0,
            dead_lettered: 0,
            error: None,
        }
    }

    #[test]
    fn failure_means_left_behind() {
        let mut s = Summary::default();
        s.add(&report(ObjectStatus::Replayed, 3));
        assert!(!s.left_behind());
        s.add(&ObjectReport::failed("spill/x", "boom".into()));
        assert!(s.left_behind());
        assert_eq!((s.objects, s.replayed, s.failed, s.records), (2, 1, 1, 3));
        assert!(s.to_string().contains("left behind: spill/x: boom"));
        let mut other = Summary::default();
        other.add(&ObjectReport {
            status: ObjectStatus::OtherMode,
            error: Some("written by at_least_once".into()),
            ..report(ObjectStatus::Replayed, 2)
        });
        assert!(other.left_behind());
        assert_eq!((other.objects, other.other_mode, other.failed), (1, 1, 0));
    }
}
