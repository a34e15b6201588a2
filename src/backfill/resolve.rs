//! In-doubt records: which of them an earlier append already put in the
//! table (DESIGN.md, invariant 6).
//!
//! The Lambda spills a record whose append was sent without an answer
//! together with the write stream and offset it was sent at. Appends are
//! atomic and offsets only grow, so once that stream is finalized its
//! `row_count` is the exact end: a record at an offset below it is in the
//! table, one at or above it is not. Nothing here guesses; a stream whose
//! end is not known leaves its records unresolved and the object behind.

use std::collections::{BTreeSet, HashMap};

/// Where an in-doubt record was sent: a COMMITTED stream and the row offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentAt<'a> {
    pub write_stream: &'a str,
    pub offset: i64,
}

/// What to do with one record of a spillover object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not in BigQuery: encode and append it.
    Replay,
    /// An earlier in-doubt append wrote it: skip it.
    InTable,
}

/// The streams whose end must be learned before `decide` can run.
pub fn streams_to_resolve<'a>(
    sent: impl IntoIterator<Item = Option<SentAt<'a>>>,
) -> BTreeSet<&'a str> {
    sent.into_iter().flatten().map(|s| s.write_stream).collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the end of write stream {0} is not known")]
pub struct Unresolved(pub String);

/// The fate of each record, in order. `ends` maps a stream to its finalized
/// row count.
///
/// # Errors
/// [`Unresolved`] when a record names a stream missing from `ends`.
pub fn decide<'a>(
    sent: impl IntoIterator<Item = Option<SentAt<'a>>>,
    ends: &HashMap<String, i64>,
) -> Result<Vec<Fate>, Unresolved> {
    sent.into_iter()
        .map(|s| match s {
            None => Ok(Fate::Replay),
            Some(SentAt { write_stream, offset }) => match ends.get(write_stream) {
                Some(&end) if offset < end => Ok(Fate::InTable),
                Some(_) => Ok(Fate::Replay),
                None => Err(Unresolved(write_stream.to_string())),
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(write_stream: &str, offset: i64) -> Option<SentAt<'_>> {
        Some(SentAt { write_stream, offset })
    }

    #[test]
    fn below_the_end_is_in_the_table() {
        let ends = HashMap::from([("w".to_string(), 12)]);
        let fates =
            decide([at("w", 10), at("w", 11), at("w", 12), at("w", 13), None], &ends).unwrap();
        assert_eq!(fates, [Fate::InTable, Fate::InTable, Fate::Replay, Fate::Replay, Fate::Replay]);
    }

    #[test]
    fn streams_are_resolved_independently() {
        let ends = HashMap::from([("a".to_string(), 0), ("b".to_string(), 100)]);
        let fates = decide([at("a", 0), at("b", 5)], &ends).unwrap();
        assert_eq!(fates, [Fate::Replay, Fate::InTable]);
    }

    #[test]
    fn unknown_stream_is_an_error_not_a_guess() {
        let err = decide([None, at("x", 1)], &HashMap::new()).unwrap_err();
        assert_eq!(err, Unresolved("x".into()));
    }

    #[test]
    fn lists_each_stream_once() {
        let streams = streams_to_resolve([at("b", 1), None, at("a", 2), at("b", 3)]);
        assert_eq!(streams.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    }
}
