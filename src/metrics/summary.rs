//! [`InvocationSummary`]: the counts of one invocation.

use serde::Serialize;
use std::time::Duration;

/// What one invocation did. Every user record ends in exactly one of
/// `rows`, `skipped`, `dead_lettered`, `spilled` or `not_landed`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InvocationSummary {
    /// Kinesis records in the event (what the partial batch response names).
    pub records: u64,
    /// User records after KPL de-aggregation.
    pub user_records: u64,
    /// Shards the event held (one, under an event source mapping).
    pub shards: u64,
    /// User records now in the table.
    pub rows: u64,
    /// Records an earlier attempt already landed (a Kinesis retry).
    pub skipped: u64,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Records written to the spillover for `backfill`.
    pub spilled: u64,
    /// Records handed back to Kinesis (the partial batch response).
    pub not_landed: u64,
    /// Rows of batches the event source mapping discarded that were found in
    /// the table (landed by an earlier attempt; Kinesis moved past them).
    pub discarded_landed: u64,
    /// Records spilled in doubt on a lost write stream: the backfill replays
    /// them at least once (some may be in the table already).
    pub at_least_once: u64,
    /// BigQuery was out of reach (connect, credentials or schema read), so
    /// the invocation spilled its records raw (outage mode).
    pub outage: bool,
    /// Raw record bytes (after base64, before de-aggregation).
    pub bytes: u64,
    /// Handler wall time.
    #[serde(rename = "ms", serialize_with = "as_millis")]
    pub duration: Duration,
    /// Age of the oldest record on arrival at the handler, from Kinesis'
    /// approximate arrival time: how far behind the shard this function is.
    #[serde(rename = "max_record_age_ms")]
    pub max_record_age_ms: Option<u64>,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl InvocationSummary {
    /// Logs the one summary line of the invocation.
    pub fn log(&self) {
        tracing::info!(
            records = self.records,
            user_records = self.user_records,
            shards = self.shards,
            rows = self.rows,
            skipped = self.skipped,
            dlq = self.dead_lettered,
            spilled = self.spilled,
            not_landed = self.not_landed,
            discarded_landed = self.discarded_landed,
            at_least_once = self.at_least_once,
            outage = self.outage,
            bytes = self.bytes,
            ms = u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            max_record_age_ms = self.max_record_age_ms,
            "invocation summary"
        );
    }
}
