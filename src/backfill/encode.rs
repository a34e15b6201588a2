//! The records of a spillover object → rows of AppendRows requests, with the
//! same encoder the Lambda uses, and dead letters for those that cannot be.

use bytes::Bytes;

use super::resolve::Fate;
use crate::dlq::{Cause, DeadLetter};
use crate::rows::{Encoder, RecordMeta, RowError};
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
    /// Nothing encoded yet: the dead letters of `excluded` and the count of
    /// records already in the table.
    pub(super) fn start(
        records: &[SourceRecord],
        fates: &[Fate],
        excluded: &[(usize, DeadLetter)],
    ) -> Self {
        Self {
            rows: Vec::with_capacity(records.len()),
            dead: excluded.iter().map(|(_, letter)| letter.clone()).collect(),
            already_in_table: fates.iter().filter(|f| **f == Fate::InTable).count() as u64,
            record_of_row: Vec::with_capacity(records.len()),
        }
    }
}

/// The records to encode, with their index in the object: fate
/// [`Fate::Replay`] and not in `excluded` (records BigQuery rejected on an
/// earlier attempt).
pub(super) fn to_encode<'a>(
    records: &'a [SourceRecord],
    fates: &'a [Fate],
    excluded: &'a [(usize, DeadLetter)],
) -> impl Iterator<Item = (usize, &'a SourceRecord)> {
    records.iter().zip(fates).enumerate().filter_map(move |(index, (record, fate))| {
        let replay = *fate == Fate::Replay && !excluded.iter().any(|(i, _)| *i == index);
        replay.then_some((index, record))
    })
}

/// Encodes every record of [`to_encode`].
pub fn encode(
    encoder: &Encoder,
    table: &TableName,
    records: &[SourceRecord],
    fates: &[Fate],
    excluded: &[(usize, DeadLetter)],
) -> Encoded {
    let mut out = Encoded::start(records, fates, excluded);
    for (index, record) in to_encode(records, fates, excluded) {
        let mut row = Vec::new();
        match encoder.encode(&record.data, &RecordMeta::from(record), &mut row) {
            Ok(()) => {
                out.rows.push(Bytes::from(row));
                out.record_of_row.push(index);
            }
            Err(err) => out.dead.push(dead_letter(record, table, &err)),
        }
    }
    out
}

/// The dead letter of a record the encoder refused.
pub fn dead_letter(record: &SourceRecord, table: &TableName, err: &RowError) -> DeadLetter {
    DeadLetter::of(record, table, Cause::Encode { error: err, not_json: false })
}
