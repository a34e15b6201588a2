//! What a backfill run replays and how: filters, concurrency, the crash hook.

use chrono::{DateTime, Utc};

/// `kinesis-bigquery backfill` flags, parsed.
#[derive(Clone, Debug, Default)]
pub struct BackfillOptions {
    /// Read, resolve and encode, count, write nothing.
    pub dry_run: bool,
    /// Objects replayed at once (each on its own PENDING stream). At least 1.
    pub concurrency: usize,
    pub filter: Filter,
    /// Copy each replayed object here instead of only deleting it.
    pub archive_to: Option<String>,
    /// Delete orphans (objects the shard state does not list and has moved
    /// past) instead of moving them under [`QUARANTINE_PREFIX`].
    pub delete_orphans: bool,
    /// How long the run's lease holds without renewal; `None`:
    /// [`super::lease::DEFAULT_LEASE`].
    pub lease: Option<std::time::Duration>,
    /// Tests only: stop with `BackfillError::Crash`
    /// at this step, as a killed process would, leaving everything written
    /// so far in place.
    pub crash_at: Option<CrashPoint>,
}

/// Where orphans go unless `--delete-orphans` (relative to the spill root).
pub const QUARANTINE_PREFIX: &str = "quarantine";

/// Which spillover objects to replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only objects of these shards (`shardId-000000000001`); empty = all.
    pub shards: Vec<String>,
    /// Only objects spilled at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only objects spilled before this time.
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    /// Whether an object spilled from `shard` at `spilled_at` is selected.
    pub fn matches(&self, shard: &str, spilled_at: Option<DateTime<Utc>>) -> bool {
        let shard_ok = self.shards.is_empty() || self.shards.iter().any(|s| s == shard);
        let since_ok = match (self.since, spilled_at) {
            (Some(since), Some(t)) => t >= since,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let until_ok = match (self.until, spilled_at) {
            (Some(until), Some(t)) => t < until,
            (Some(_), None) => false,
            (None, _) => true,
        };
        shard_ok && since_ok && until_ok
    }
}

/// The step boundaries of one object's replay, in order. A crash at any of
/// them, followed by a rerun, must neither lose nor duplicate a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// The PENDING stream exists, nothing appended.
    AfterCreate,
    /// Rows appended, stream not finalized.
    AfterAppend,
    /// Stream finalized, marker not written.
    AfterFinalize,
    /// Marker written, stream not committed.
    AfterMarker,
    /// Stream committed, object still listed in the shard state.
    AfterCommit,
    /// Object unlisted from the shard state, not removed.
    AfterUnlist,
    /// Object removed (or archived), marker not removed.
    AfterDelete,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 7] = [
        Self::AfterCreate,
        Self::AfterAppend,
        Self::AfterFinalize,
        Self::AfterMarker,
        Self::AfterCommit,
        Self::AfterUnlist,
        Self::AfterDelete,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<DateTime<Utc>> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn empty_filter_takes_everything() {
        assert!(Filter::default().matches("shardId-1", None));
    }

    #[test]
    fn shard_and_time_window() {
        let f = Filter {
            shards: vec!["shardId-1".into()],
            since: t("2026-01-01T00:00:00Z"),
            until: t("2026-01-02T00:00:00Z"),
        };
        assert!(f.matches("shardId-1", t("2026-01-01T00:00:00Z")));
        assert!(!f.matches("shardId-2", t("2026-01-01T10:00:00Z")));
        assert!(!f.matches("shardId-1", t("2026-01-02T00:00:00Z")));
        assert!(!f.matches("shardId-1", t("2025-12-31T23:59:59Z")));
        assert!(!f.matches("shardId-1", None));
    }
}
