//! The three knobs of the micro-batcher and the bounds they are checked
//! against: `BATCH_MAX_ROWS`, `BATCH_MAX_BYTES`, `BATCH_WINDOW_MS`.

use std::time::Duration;

/// AppendRows rejects larger requests with INVALID_ARGUMENT "AppendRows request too
/// large: N limit 10485760" (fact sheet §3; the 20 MB of the newest proto comment is
/// allowlist-only). `BATCH_MAX_BYTES` may not exceed it.
pub const SERVICE_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// Default `BATCH_MAX_BYTES`: the whole encoded request (stream name, offset, trace
/// id, writer schema, envelope, rows) stays 512 KiB under the service limit, so a
/// service that counts its envelope a little differently from us still takes it.
pub const BATCH_MAX_BYTES: usize = SERVICE_MAX_REQUEST_BYTES - 512 * 1024;
const _: () = assert!(BATCH_MAX_BYTES > MIN_BATCH_MAX_BYTES);

/// Row room every request must keep after its fixed overhead: a Kinesis record of
/// ordinary size (most are well under 16 KiB) must fit in a request of its own.
pub const MIN_ROW_ROOM_BYTES: usize = 16 * 1024;

/// Smallest `BATCH_MAX_BYTES` accepted at start, before the table schema is known:
/// [`MIN_ROW_ROOM_BYTES`] for rows plus 48 KiB for the stream name, offset, trace
/// id, envelope and the writer schema of a table of a few hundred columns. The
/// exact check, with the table's own schema, runs once the encoder exists
/// ([`super::RequestBudget::check`]).
pub const MIN_BATCH_MAX_BYTES: usize = MIN_ROW_ROOM_BYTES + 48 * 1024;

/// The service documents no row-count limit per request. A Kinesis event source mapping
/// delivers at most 10,000 records per invocation (BatchSize maximum), so by default
/// plain records are cut by bytes only; KPL-aggregated ones may split by count.
pub const BATCH_MAX_ROWS: usize = 10_000;

/// Default time the oldest row of a request may wait for more rows while the rest of
/// the batch is still being encoded. 20 ms: the first request leaves after 20 ms of
/// encoding instead of after the whole batch, and at the handler's target rate
/// (150,000 records of 1 KiB per second, `benches/handler.rs`) a request still
/// carries about 3 MB, so the request count stays small.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// When a request is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Rows per request (`BATCH_MAX_ROWS`).
    pub max_rows: usize,
    /// Bytes of the whole encoded AppendRowsRequest, as it would go on a new
    /// connection (stream name and writer schema included): `BATCH_MAX_BYTES`.
    pub max_bytes: usize,
    /// How long the oldest row of a request may wait for more (`BATCH_WINDOW_MS`).
    /// Zero: every row goes out as soon as it is encoded.
    pub window: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("BATCH_MAX_ROWS must be at least 1")]
    ZeroRows,
    #[error(
        "BATCH_MAX_BYTES {0} is below {MIN_BATCH_MAX_BYTES}: a request must hold its \
         stream name, writer schema and envelope plus at least one row"
    )]
    TooSmall(usize),
    #[error(
        "BATCH_MAX_BYTES {0} is above the service's AppendRows request limit \
         ({SERVICE_MAX_REQUEST_BYTES})"
    )]
    AboveService(usize),
    #[error(
        "BATCH_MAX_BYTES {max_bytes} leaves {room} bytes for rows after this table's \
         request overhead of {overhead} bytes (stream name, writer schema, envelope); \
         at least {MIN_ROW_ROOM_BYTES} are needed"
    )]
    NoRoomForRows { max_bytes: usize, overhead: usize, room: usize },
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_rows: BATCH_MAX_ROWS, max_bytes: BATCH_MAX_BYTES, window: BATCH_WINDOW }
    }
}

impl BatchLimits {
    /// Checks the limits against the bounds above.
    ///
    /// # Errors
    /// Zero rows, or `max_bytes` outside `MIN_BATCH_MAX_BYTES..=SERVICE_MAX_REQUEST_BYTES`.
    pub fn new(max_rows: usize, max_bytes: usize, window: Duration) -> Result<Self, BatchError> {
        if max_rows == 0 {
            return Err(BatchError::ZeroRows);
        }
        if max_bytes < MIN_BATCH_MAX_BYTES {
            return Err(BatchError::TooSmall(max_bytes));
        }
        if max_bytes > SERVICE_MAX_REQUEST_BYTES {
            return Err(BatchError::AboveService(max_bytes));
        }
        Ok(Self { max_rows, max_bytes, window })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let z = Duration::ZERO;
        assert_eq!(BatchLimits::new(0, BATCH_MAX_BYTES, z), Err(BatchError::ZeroRows));
        assert_eq!(BatchLimits::new(1, 1024, z), Err(BatchError::TooSmall(1024)));
        let above = SERVICE_MAX_REQUEST_BYTES + 1;
        assert_eq!(BatchLimits::new(1, above, z), Err(BatchError::AboveService(above)));
        assert!(BatchLimits::new(1, MIN_BATCH_MAX_BYTES, z).is_ok());
        assert!(BatchLimits::new(1, SERVICE_MAX_REQUEST_BYTES, z).is_ok());
        let msg = BatchError::TooSmall(1024).to_string();
        assert!(msg.contains("BATCH_MAX_BYTES"), "{msg}");
    }
}
