//! The marker `backfill` writes beside a spillover object once the object's
//! rows sit in a finalized PENDING stream, before that stream is committed.
//!
//! It is what makes a rerun after a crash safe (DESIGN.md, "Backfill"): a
//! marker names the one stream that may already hold the object's rows, so a
//! rerun asks BigQuery whether that stream was committed instead of writing
//! the rows a second time.

use serde::{Deserialize, Serialize};

/// Format version of [`Marker`]; a reader refuses versions it does not know.
pub const MARKER_VERSION: u32 = 1;

/// Written after `FinalizeWriteStream`, read on every later run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub version: u32,
    /// The finalized PENDING stream holding every row of the object that was
    /// not already in the table.
    pub write_stream: String,
    /// `FinalizeWriteStream`'s row count: what a commit makes visible.
    pub row_count: i64,
    /// Records of the object that went to the dead-letter queue (they were
    /// sent before this marker was written).
    pub dead_lettered: u64,
    /// Records skipped because an earlier in-doubt append is in the table.
    pub already_in_table: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("backfill marker is not valid JSON")]
    Json(#[from] serde_json::Error),
    #[error("backfill marker has version {0}; this binary reads version {MARKER_VERSION}")]
    Version(u32),
}

impl Marker {
    pub fn new(
        write_stream: String,
        row_count: i64,
        dead_lettered: u64,
        already_in_table: u64,
    ) -> Self {
        Self { version: MARKER_VERSION, write_stream, row_count, dead_lettered, already_in_table }
    }

    pub fn to_value(&self) -> serde_json::Value {
        // A struct of strings and integers always serializes.
        serde_json::to_value(self).unwrap_or_default()
    }

    /// # Errors
    /// [`MarkerError`] when the value is not a marker this binary can read.
    pub fn from_value(value: serde_json::Value) -> Result<Self, MarkerError> {
        let marker: Self = serde_json::from_value(value)?;
        if marker.version != MARKER_VERSION {
            return Err(MarkerError::Version(marker.version));
        }
        Ok(marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let m = Marker::new("projects/p/datasets/d/tables/t/streams/s1".into(), 42, 1, 3);
        assert_eq!(Marker::from_value(m.to_value()).unwrap(), m);
    }

    #[test]
    fn refuses_unknown_version() {
        let value = serde_json::json!({"version": 9, "write_stream": "s", "row_count": 1,
            "dead_lettered": 0, "already_in_table": 0});
        assert!(matches!(Marker::from_value(value), Err(MarkerError::Version(9))));
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(Marker::from_value("nope".into()), Err(MarkerError::Json(_))));
    }
}
