//! The pure cut: rows, given by the bytes each adds to a request, into
//! consecutive request ranges under a row count and a byte room. Exactly-once
//! cuts with it, so a retry recomputes the same requests (and offsets).

use std::ops::Range;

use super::BatchLimits;

/// One piece of a cut, in row order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Rows `range` make one request.
    Request(Range<usize>),
    /// This row alone exceeds `max_bytes`: no request can carry it.
    TooLarge { index: usize, bytes: usize },
}

/// Splits rows (given by their sizes, in order) into requests under `limits`
/// (`limits.max_bytes` is the room for rows: see [`super::RequestBudget::cut`]).
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;
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
