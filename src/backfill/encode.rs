//! The records of a spillover object → rows of AppendRows requests and dead
//! letters, through the Lambda's own encode-and-classify
//! (`delivery::prepare`): a record gets the same row, or the same letter
//! with the same reason, on every path.

use bytes::Bytes;

use super::resolve::Fate;
use crate::batch::BatchLimits;
use crate::delivery::plan::Kind;
use crate::delivery::prepare::{self, Input, Item};
use crate::dlq::DeadLetter;
use crate::rows::Encoder;
use crate::source::SourceRecord;
use crate::table::TableName;

/// The replayable part of one object, encoded.
pub struct Encoded {
    /// Serialized rows, in record order.
    pub rows: Vec<Bytes>,
    /// Records that cannot become rows, as dead letters.
    pub dead: Vec<DeadLetter>,
    /// Records skipped because an in-doubt append already wrote them.
    pub already_in_table: u64,
    /// For each row, the index of its record in the object (to dead-letter
    /// a row BigQuery rejects).
    pub record_of_row: Vec<usize>,
}

impl Encoded {
    /// The object's encoding from the items of the records [`to_encode`]
    /// gave, in order; the letters of `excluded` come first.
    pub(super) fn from_items(
        items: Vec<Item<'_>>,
        fates: &[Fate],
        excluded: &[(usize, DeadLetter)],
    ) -> Self {
        let mut out = Self {
            rows: Vec::with_capacity(items.len()),
            dead: excluded.iter().map(|(_, letter)| letter.clone()).collect(),
            already_in_table: fates.iter().filter(|f| **f == Fate::InTable).count() as u64,
            record_of_row: Vec::with_capacity(items.len()),
        };
        for item in items {
            match (item.kind, item.letter) {
                (Kind::Good, _) => {
                    out.rows.push(item.row);
                    out.record_of_row.push(item.index);
                }
                (_, Some(letter)) => out.dead.push(letter),
                // Every item the encoder refused carries its letter.
                (_, None) => {}
            }
        }
        out
    }
}

/// The records to encode, as inputs indexed by their place in the object:
/// fate [`Fate::Replay`] and not in `excluded` (records BigQuery rejected on
/// an earlier attempt).
pub(super) fn to_encode<'a>(
    records: &'a [SourceRecord],
    fates: &[Fate],
    excluded: &[(usize, DeadLetter)],
) -> Vec<(usize, Input<'a>)> {
    records
        .iter()
        .zip(fates)
        .enumerate()
        .filter(|(index, (_, fate))| {
            **fate == Fate::Replay && !excluded.iter().any(|(i, _)| i == index)
        })
        .map(|(index, (record, _))| (index, Input::Record(record)))
        .collect()
}

/// Encodes every record of [`to_encode`], all before the first request.
pub fn encode(
    encoder: &Encoder,
    table: &TableName,
    limits: &BatchLimits,
    records: &[SourceRecord],
    fates: &[Fate],
    excluded: &[(usize, DeadLetter)],
) -> Encoded {
    let inputs = to_encode(records, fates, excluded);
    let items = prepare::prepare_ordered(inputs, encoder, limits, table);
    Encoded::from_items(items, fates, excluded)
}
