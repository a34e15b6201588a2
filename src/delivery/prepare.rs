//! A shard batch → the items the protocol works on: sorted by position,
//! duplicates folded, every record encoded once and classified for the
//! mapping ([`Kind`]), with the dead letter ready for every bad one.

use std::ops::Range;

use bytes::Bytes;

use super::plan::Kind;
use super::state::{Exclusion, ExclusionReason};
use crate::batch::{BatchLimits, RequestBudget};
use crate::dlq::{Cause, DeadLetter, Reason};
use crate::rows::{Encoder, RecordMeta};
use crate::source::{Position, SourceRecord};
use crate::table::TableName;

/// One record of the batch as the protocol sees it.
pub(crate) struct Item<'a> {
    /// Index into the batch's records.
    pub index: usize,
    pub position: Position,
    /// The record, when it came out of the source whole (not a corrupt KPL
    /// aggregate).
    pub record: Option<&'a SourceRecord>,
    pub kind: Kind,
    /// The encoded row (empty unless `kind` is `Good`): a slice of the
    /// batch's row buffer, shared with the requests that carry it.
    pub row: Bytes,
    /// The dead letter for a bad record (`PureBad`, `SchemaBad`).
    pub letter: Option<DeadLetter>,
    /// `UNKNOWN_FIELDS=add`: a `SchemaBad` record refused only for columns
    /// the writers do not see yet. It leaves the mapping like any refused
    /// record, but its exclusion says so and it is spilled, not
    /// dead-lettered ([`schema_exclusion`]).
    pub waits: bool,
}

/// One input record before encoding.
pub(crate) enum Input<'a> {
    Record(&'a SourceRecord),
    /// The source could not make a record of it; the letter says why.
    Bad {
        position: Position,
        letter: Box<DeadLetter>,
    },
}

/// Room for the metadata columns a row may add beyond its JSON's length.
const ROW_SLACK: usize = 128;

impl Input<'_> {
    pub(crate) fn position(&self) -> &Position {
        match self {
            Input::Record(r) => &r.position,
            Input::Bad { position, .. } => position,
        }
    }
}

/// Inputs in order (batch index, input), and the repeats (batch index, index
/// of the kept input it repeats).
pub(crate) type Ordered<'a> = (Vec<(usize, Input<'a>)>, Vec<(usize, usize)>);

/// The inputs in the order the protocol works on them: ascending by
/// position, one per distinct position. Returns them with the repeats
/// (batch index, index into the ordered inputs of the one it repeats).
pub(crate) fn order(mut inputs: Vec<(usize, Input<'_>)>) -> Ordered<'_> {
    inputs.sort_by(|(ia, a), (ib, b)| a.position().cmp(b.position()).then(ia.cmp(ib)));
    let mut repeats = Vec::new();
    let mut kept: Vec<(usize, Input<'_>)> = Vec::with_capacity(inputs.len());
    for (index, input) in inputs {
        match kept.last() {
            Some((_, prev)) if prev.position() == input.position() => {
                repeats.push((index, kept.len() - 1));
            }
            _ => kept.push((index, input)),
        }
    }
    (kept, repeats)
}

/// Encodes and classifies every input, in [`order`], all before the
/// first request (the encode-first paths: exactly-once when it may not
/// stream, the batching bench's baseline, the backfill's encode-first replay).
pub(crate) fn prepare_ordered<'a>(
    inputs: Vec<(usize, Input<'a>)>,
    encoder: &Encoder,
    limits: &BatchLimits,
    table: &TableName,
) -> Vec<Item<'a>> {
    // All rows go into one buffer sized for the batch up front, and items
    // hold slices of it: no allocation per row, no copy into the requests.
    let estimate = inputs
        .iter()
        .map(|(_, input)| match input {
            Input::Record(r) => r.data.len() + ROW_SLACK,
            Input::Bad { .. } => 0,
        })
        .sum();
    let mut buffer = Vec::with_capacity(estimate);
    let budget = RequestBudget::new(limits, encoder, table);
    let encoded: Vec<(Item<'a>, Range<usize>)> = inputs
        .into_iter()
        .map(|(index, input)| encode_input(index, input, encoder, &budget, table, &mut buffer))
        .collect();
    let buffer = Bytes::from(buffer);
    encoded
        .into_iter()
        .map(|(mut item, range)| {
            if !range.is_empty() {
                item.row = buffer.slice(range);
            }
            item
        })
        .collect()
}

/// Encodes one input at a time (the streaming paths): each row gets its own
/// bytes as soon as it is encoded, so it can leave in a request while later
/// records are still being encoded.
pub(crate) struct ItemEncoder<'e> {
    encoder: &'e Encoder,
    budget: RequestBudget,
    table: &'e TableName,
    scratch: Vec<u8>,
}

impl<'e> ItemEncoder<'e> {
    pub fn new(encoder: &'e Encoder, budget: RequestBudget, table: &'e TableName) -> Self {
        Self { encoder, budget, table, scratch: Vec::new() }
    }

    pub fn item<'a>(&mut self, index: usize, input: Input<'a>) -> Item<'a> {
        self.scratch.clear();
        let (mut item, range) =
            encode_input(index, input, self.encoder, &self.budget, self.table, &mut self.scratch);
        if let Some(row) = self.scratch.get(range).filter(|r| !r.is_empty()) {
            item.row = Bytes::copy_from_slice(row);
        }
        item
    }
}

fn encode_input<'a>(
    index: usize,
    input: Input<'a>,
    encoder: &Encoder,
    budget: &RequestBudget,
    table: &TableName,
    buffer: &mut Vec<u8>,
) -> (Item<'a>, Range<usize>) {
    match input {
        Input::Record(record) => encode_one(index, record, encoder, budget, table, buffer),
        Input::Bad { position, letter } => {
            let item = Item {
                index,
                position,
                record: None,
                kind: Kind::PureBad,
                row: Bytes::new(),
                letter: Some(*letter),
                waits: false,
            };
            (item, 0..0)
        }
    }
}

/// Encodes `record` at the end of `buffer`; the range is its row's (empty
/// for a record that gets no row).
fn encode_one<'a>(
    index: usize,
    record: &'a SourceRecord,
    encoder: &Encoder,
    budget: &RequestBudget,
    table: &TableName,
    buffer: &mut Vec<u8>,
) -> (Item<'a>, Range<usize>) {
    let start = buffer.len();
    let result = encoder.encode(&record.data, &RecordMeta::from(record), buffer);
    let len = buffer.len() - start;
    let (kind, letter) = match result {
        Ok(()) if !budget.fits(encoder, len) => {
            let message = format!(
                "encoded row is {len} bytes; one request carries at most {} of rows \
                 (BATCH_MAX_BYTES less {} of request overhead)",
                budget.row_room(),
                budget.overhead()
            );
            buffer.truncate(start);
            (
                Kind::SchemaBad,
                Some(DeadLetter::of(record, table, Cause::RowTooLarge(Some(&message)))),
            )
        }
        Ok(()) => (Kind::Good, None),
        Err(e) => {
            let (kind, letter) = refused(record, table, &e);
            (kind, Some(letter))
        }
    };
    let item = Item {
        index,
        position: record.position.clone(),
        record: Some(record),
        kind,
        row: Bytes::new(),
        letter,
        waits: false,
    };
    (item, start..buffer.len())
}

/// The kind and dead letter of a record the encoder refused with `error`,
/// the same on every path (Lambda, backfill, redrive): `invalid_json` when
/// its bytes alone rule it out under every schema, whatever the encoder
/// stopped at first.
pub(crate) fn refused(
    record: &SourceRecord,
    table: &TableName,
    error: &crate::rows::RowError,
) -> (Kind, DeadLetter) {
    let kind = if bad_by_bytes(&record.data) { Kind::PureBad } else { Kind::SchemaBad };
    let cause = Cause::Encode { error, not_json: kind == Kind::PureBad };
    (kind, DeadLetter::of(record, table, cause))
}

/// Whether the bytes alone rule the record out under every schema: not JSON,
/// or JSON that is not an object. Checked apart from the encoder, which may
/// stop at a schema error before it reaches a syntax error.
pub(crate) fn bad_by_bytes(data: &Bytes) -> bool {
    match serde_json::from_slice::<serde::de::IgnoredAny>(data) {
        Err(_) => true,
        Ok(_) => data.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{'),
    }
}

/// The intent entry for a record that leaves the mapping.
pub(crate) fn exclusion_for(
    item: &Item<'_>,
    reason: ExclusionReason,
    message: String,
) -> Exclusion {
    Exclusion { position: item.position.clone(), reason, message }
}

/// The intent entry for a `SchemaBad` item.
pub(crate) fn schema_exclusion(item: &Item<'_>) -> Exclusion {
    let (reason, message) = match &item.letter {
        Some(l) if item.waits => (ExclusionReason::AwaitingColumns, l.error.clone()),
        Some(l) if l.reason == Reason::RowTooLarge => {
            (ExclusionReason::RowTooLarge, l.error.clone())
        }
        Some(l) if l.reason == Reason::RejectedByBigquery => {
            (ExclusionReason::RejectedByBigquery, l.error.clone())
        }
        Some(l) => (ExclusionReason::SchemaMismatch, l.error.clone()),
        None => (ExclusionReason::SchemaMismatch, String::new()),
    };
    exclusion_for(item, reason, message)
}

/// The dead letter for an item the intent excludes: its own letter if it
/// has one, else one from the intent's recorded reason (it encodes now, but
/// an earlier attempt decided, and the mapping must not change).
pub(crate) fn letter_for_excluded(
    item: &Item<'_>,
    exclusion: Option<&Exclusion>,
    table: &TableName,
) -> Option<DeadLetter> {
    if let Some(l) = &item.letter {
        return Some(l.clone());
    }
    let record = item.record?;
    let (reason, message) = match exclusion {
        Some(e) => (
            match e.reason {
                ExclusionReason::SchemaMismatch => Reason::SchemaMismatch,
                ExclusionReason::RowTooLarge => Reason::RowTooLarge,
                ExclusionReason::RejectedByBigquery => Reason::RejectedByBigquery,
                // Spilled, never lettered (`settle.rs`); named for completeness.
                ExclusionReason::AwaitingColumns => Reason::UnknownField,
            },
            e.message.as_str(),
        ),
        None => (Reason::SchemaMismatch, ""),
    };
    Some(DeadLetter::of(record, table, Cause::Decided(reason, message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_alone_decide_only_syntax_and_shape() {
        for bad in [&b"{"[..], b"not json", b"[1,2]", b"42", b"", b"{\"a\":1} x"] {
            assert!(bad_by_bytes(&Bytes::copy_from_slice(bad)), "{bad:?}");
        }
        for ok in [&b"{}"[..], b" {\"a\": [1, {\"b\": null}]}\n"] {
            assert!(!bad_by_bytes(&Bytes::copy_from_slice(ok)), "{ok:?}");
        }
    }
}
