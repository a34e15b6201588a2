//! The micro-batcher: encoded rows → AppendRows requests.
//!
//! It sits between row encoding ([`crate::rows`]) and the append pipeline
//! ([`crate::bigquery`]). It guarantees that every request it cuts stays
//! within the row and byte limits, that rows keep their order, and that a row
//! too large for any request comes back as an error for that row alone (for
//! the dead-letter queue) instead of blocking the batch behind it forever.
//! [`cut`] is a pure function over row sizes, so the delivery protocol can
//! recompute the same requests (and thus the same offsets) on a retry.

use std::ops::Range;
use std::time::{Duration, Instant};

/// AppendRows rejects larger requests with INVALID_ARGUMENT "AppendRows request too
/// large: N limit 10485760" (fact sheet §3; the 20 MB of the newest proto comment is
/// allowlist-only).
pub const SERVICE_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// Room kept in every request for what is not row data: the stream name, offset, trace
/// id, message framing and — on a connection's first request — the writer schema. A
/// table has at most 10,000 columns; a self-contained descriptor of that many fields
/// stays under ~400 KB.
pub const REQUEST_OVERHEAD_BYTES: usize = 512 * 1024;

/// Default and ceiling for the row bytes of one request: the service limit less the
/// overhead above (the "just under 10 MiB including request overhead").
pub const BATCH_MAX_BYTES: usize = SERVICE_MAX_REQUEST_BYTES - REQUEST_OVERHEAD_BYTES;
const _: () = assert!(BATCH_MAX_BYTES > 0 && BATCH_MAX_BYTES < SERVICE_MAX_REQUEST_BYTES);

/// The service documents no row-count limit per request. A Kinesis event source mapping
/// delivers at most 10,000 records per invocation (BatchSize maximum), so by default
/// plain records are cut by bytes only; KPL-aggregated ones may split by count.
pub const BATCH_MAX_ROWS: usize = 10_000;

/// Default wait for more rows before a partial batch goes out. Zero: a Lambda
/// invocation holds all its records up front, and waiting would only add latency.
pub const BATCH_WINDOW: Duration = Duration::ZERO;

/// When a request is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Rows per request (`BATCH_MAX_ROWS`).
    pub max_rows: usize,
    /// Row bytes per request, as [`proto_row_wire_bytes`] counts them (`BATCH_MAX_BYTES`).
    pub max_bytes: usize,
    /// How long the oldest buffered row may wait in a [`Batcher`] (`BATCH_WINDOW_MS`).
    pub window: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("BATCH_MAX_ROWS must be at least 1")]
    ZeroRows,
    #[error("BATCH_MAX_BYTES must be at least 1")]
    ZeroBytes,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self { max_rows: BATCH_MAX_ROWS, max_bytes: BATCH_MAX_BYTES, window: BATCH_WINDOW }
    }
}

impl BatchLimits {
    /// Checks the limits; `max_bytes` above [`BATCH_MAX_BYTES`] is capped to it, since
    /// the service would refuse such requests anyway.
    pub fn new(max_rows: usize, max_bytes: usize, window: Duration) -> Result<Self, BatchError> {
        if max_rows == 0 {
            return Err(BatchError::ZeroRows);
        }
        if max_bytes == 0 {
            return Err(BatchError::ZeroBytes);
        }
        Ok(Self { max_rows, max_bytes: max_bytes.min(BATCH_MAX_BYTES), window })
    }
}

/// The bytes one serialized row adds to `ProtoRows.serialized_rows`: field tag,
/// length varint, the row itself.
pub fn proto_row_wire_bytes(row_len: usize) -> usize {
    1 + varint_len(row_len) + row_len
}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// One piece of a cut, in row order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Rows `range` make one request.
    Request(Range<usize>),
    /// This row alone exceeds `max_bytes`: no request can carry it.
    TooLarge { index: usize, bytes: usize },
}

/// Splits rows (given by their sizes, in order) into requests under `limits`.
/// Every row is in exactly one piece; pieces are in row order; a too-large row
/// ends the request before it and is its own piece.
pub fn cut(row_bytes: impl IntoIterator<Item = usize>, limits: &BatchLimits) -> Vec<Piece> {
    let max_rows = limits.max_rows.max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut bytes = 0usize;
    let mut index = 0;
    for size in row_bytes {
        if size > limits.max_bytes {
            if start < index {
                pieces.push(Piece::Request(start..index));
            }
            pieces.push(Piece::TooLarge { index, bytes: size });
            start = index + 1;
            bytes = 0;
        } else {
            let rows = index - start;
            if rows > 0 && (rows >= max_rows || bytes + size > limits.max_bytes) {
                pieces.push(Piece::Request(start..index));
                start = index;
                bytes = 0;
            }
            bytes += size;
        }
        index += 1;
    }
    if start < index {
        pieces.push(Piece::Request(start..index));
    }
    pieces
}

/// A row that no request can carry, handed back to the caller.
#[derive(Debug, PartialEq, Eq)]
pub struct Oversized<T> {
    pub row: T,
    pub bytes: usize,
}

/// Streaming form of [`cut`]: rows arrive one at a time, batches leave when
/// full or when the oldest row has waited `window`. The clock is passed in, so
/// the caller (and tests) own time.
#[derive(Debug)]
pub struct Batcher<T> {
    limits: BatchLimits,
    rows: Vec<T>,
    bytes: usize,
    oldest: Option<Instant>,
}

impl<T> Batcher<T> {
    pub fn new(limits: BatchLimits) -> Self {
        Self { limits, rows: Vec::new(), bytes: 0, oldest: None }
    }

    /// Adds a row of `bytes` (wire size). Returns the batch this row did not fit
    /// into, if any; the row then starts the next one.
    ///
    /// # Errors
    /// The row alone exceeds `max_bytes`; it is returned untouched.
    pub fn push(
        &mut self,
        row: T,
        bytes: usize,
        now: Instant,
    ) -> Result<Option<Vec<T>>, Oversized<T>> {
        if bytes > self.limits.max_bytes {
            return Err(Oversized { row, bytes });
        }
        let full = !self.rows.is_empty()
            && (self.rows.len() >= self.limits.max_rows
                || self.bytes + bytes > self.limits.max_bytes);
        let flushed = if full { Some(self.take()) } else { None };
        self.rows.push(row);
        self.bytes += bytes;
        self.oldest.get_or_insert(now);
        Ok(flushed)
    }

    /// When the buffered rows must go out at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.limits.window)
    }

    /// The buffer is full or its oldest row has waited long enough.
    pub fn is_due(&self, now: Instant) -> bool {
        self.rows.len() >= self.limits.max_rows || self.deadline().is_some_and(|d| now >= d)
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Empties the buffer.
    pub fn take(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.oldest = None;
        std::mem::take(&mut self.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use test_case::test_case;

    fn limits(max_rows: usize, max_bytes: usize) -> BatchLimits {
        BatchLimits { max_rows, max_bytes, window: Duration::ZERO }
    }

    use Piece::{Request as R, TooLarge as Big};

    #[test_case(&[], 3, 10 => Vec::<Piece>::new(); "empty")]
    #[test_case(&[1, 1, 1, 1], 3, 100 => vec![R(0..3), R(3..4)]; "by rows")]
    #[test_case(&[4, 4, 4], 10, 8 => vec![R(0..2), R(2..3)]; "by bytes")]
    #[test_case(&[8, 8], 10, 8 => vec![R(0..1), R(1..2)]; "exactly full")]
    #[test_case(&[1, 9, 1], 10, 8 => vec![R(0..1), Big { index: 1, bytes: 9 }, R(2..3)]; "too large in the middle")]
    #[test_case(&[9, 9], 10, 8 => vec![Big { index: 0, bytes: 9 }, Big { index: 1, bytes: 9 }]; "only too large")]
    #[test_case(&[0, 0, 0], 2, 8 => vec![R(0..2), R(2..3)]; "empty rows count")]
    fn cuts(sizes: &[usize], max_rows: usize, max_bytes: usize) -> Vec<Piece> {
        cut(sizes.iter().copied(), &limits(max_rows, max_bytes))
    }

    #[test]
    fn limits_are_checked_and_capped() {
        assert_eq!(BatchLimits::new(0, 1, Duration::ZERO), Err(BatchError::ZeroRows));
        assert_eq!(BatchLimits::new(1, 0, Duration::ZERO), Err(BatchError::ZeroBytes));
        let l = BatchLimits::new(5, 50 * 1024 * 1024, Duration::ZERO).unwrap();
        assert_eq!(l.max_bytes, BATCH_MAX_BYTES);
    }

    #[test]
    fn wire_bytes_match_prost() {
        use prost::Message;
        for len in [0, 1, 127, 128, 16_383, 16_384, 3_000_000] {
            let rows = crate::pb::storage::ProtoRows { serialized_rows: vec![vec![7; len].into()] };
            assert_eq!(rows.encoded_len(), proto_row_wire_bytes(len), "{len}");
        }
    }

    #[test]
    fn batcher_flushes_on_rows_bytes_and_window() {
        let t0 = Instant::now();
        let mut b = Batcher::new(BatchLimits {
            max_rows: 2,
            max_bytes: 10,
            window: Duration::from_millis(5),
        });
        assert_eq!(b.push("a", 4, t0), Ok(None));
        assert!(!b.is_due(t0));
        assert!(b.is_due(t0 + Duration::from_millis(5)));
        assert_eq!(b.push("b", 4, t0), Ok(None));
        assert!(b.is_due(t0), "full by rows");
        assert_eq!(b.push("c", 4, t0), Ok(Some(vec!["a", "b"])));
        assert_eq!(b.push("d", 7, t0), Ok(Some(vec!["c"])), "by bytes");
        assert_eq!(b.push("e", 11, t0), Err(Oversized { row: "e", bytes: 11 }));
        assert_eq!(b.take(), vec!["d"]);
        assert!(b.is_empty() && b.deadline().is_none());
    }

    proptest! {
        #[test]
        fn cut_covers_every_row_once_within_limits(
            sizes in prop::collection::vec(0usize..40, 0..200),
            max_rows in 1usize..20,
            max_bytes in 1usize..60,
        ) {
            let l = limits(max_rows, max_bytes);
            let mut expected = 0;
            for piece in cut(sizes.iter().copied(), &l) {
                match piece {
                    Piece::Request(r) => {
                        prop_assert_eq!(r.start, expected);
                        prop_assert!(!r.is_empty() && r.len() <= max_rows);
                        prop_assert!(sizes[r.clone()].iter().sum::<usize>() <= max_bytes);
                        expected = r.end;
                    }
                    Piece::TooLarge { index, bytes } => {
                        prop_assert_eq!(index, expected);
                        prop_assert!(bytes > max_bytes);
                        expected += 1;
                    }
                }
            }
            prop_assert_eq!(expected, sizes.len());
        }
    }
}
