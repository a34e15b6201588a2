//! The streaming form of the cut: rows arrive one at a time while the rest of
//! the batch is still being encoded; a request leaves when it is full (rows or
//! bytes) or when its oldest row has waited the window. The clock is passed
//! in, so callers (and tests) own time.

use tokio::time::Instant;

use super::BatchLimits;

/// A row that no request can carry, handed back to the caller.
#[derive(Debug, PartialEq, Eq)]
pub struct Oversized<T> {
    pub row: T,
    pub bytes: usize,
}

/// Buffers rows for the next request. `limits.max_bytes` is the room for
/// rows ([`super::RequestBudget::row_limits`]).
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

    /// Adds a row of `bytes` (what it adds to a request). Returns the buffered
    /// rows this row did not fit with, if any; the row then starts the next batch.
    ///
    /// # Errors
    /// The row alone exceeds the room; it is returned untouched.
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

    /// The buffer is full by rows, or its oldest row has waited the window.
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
    use std::time::Duration;

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

    #[test]
    fn a_zero_window_makes_every_row_due_at_once() {
        let t0 = Instant::now();
        let mut b =
            Batcher::new(BatchLimits { max_rows: 9, max_bytes: 99, window: Duration::ZERO });
        assert_eq!(b.push("a", 1, t0), Ok(None));
        assert!(b.is_due(t0));
    }
}
