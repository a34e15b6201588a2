//! The record → offset mapping: THE pure function of the exactly-once
//! protocol (DESIGN.md, invariant 1), and the state transitions built on it.
//!
//! Given a [`ShardState`] and the records of a batch (sorted by position),
//! which record becomes the row at which offset of the state's write stream
//! is fully determined: records at or before `last_position` were delivered
//! earlier; records the intent excludes, and records whose bytes alone make
//! them bad (not JSON, a corrupt KPL aggregate), get no offset; every other
//! record takes the next offset from `next_offset`, whether or not it encodes
//! today. A record that does not encode today but has an offset is a *new*
//! exclusion: it may only leave the mapping through a persisted intent, at a
//! point where the stream's end is known (see `exactly_once`).
//!
//! Nothing here does I/O, so every retry of an invocation — and every test —
//! computes the same answer.

use super::state::{Exclusion, Intent, ShardState};
use crate::source::Position;

/// What a record is, as far as the mapping cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Encodes into a row.
    Good,
    /// Bad by its bytes alone (not JSON, corrupt KPL): every attempt, under
    /// any schema, agrees, so it never takes an offset and needs no intent.
    PureBad,
    /// Refused under the schema this attempt knows (or too large as a row):
    /// another attempt may have seen it differently.
    SchemaBad,
}

/// Where one record goes under the mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// At or before `last_position`: landed in an earlier invocation.
    Earlier,
    /// No row: excluded by the intent, or [`Kind::PureBad`].
    Excluded,
    /// The row at `offset` of the state's write stream. `sendable` is false
    /// for a [`Kind::SchemaBad`] record the intent does not exclude yet.
    Row { offset: i64, sendable: bool },
}

impl Slot {
    pub fn offset(&self) -> Option<i64> {
        match self {
            Slot::Row { offset, .. } => Some(*offset),
            _ => None,
        }
    }
}

/// Maps `items` (strictly increasing positions, with what each is) under
/// `state`. One slot per item, same order.
pub fn map(state: &ShardState, items: &[(&Position, Kind)]) -> Vec<Slot> {
    let mut next = state.next_offset;
    items
        .iter()
        .map(|(position, kind)| {
            if state.last_position.as_ref().is_some_and(|last| *position <= last) {
                Slot::Earlier
            } else if state.excluded(position).is_some() || *kind == Kind::PureBad {
                Slot::Excluded
            } else {
                let offset = next;
                next += 1;
                Slot::Row { offset, sendable: *kind == Kind::Good }
            }
        })
        .collect()
}

/// The state once the first `landed` items have landed (in the table, the
/// dead-letter queue or the spillover): `last_position` moves to the last of
/// them, `next_offset` past their rows, and the intent keeps only what is
/// still ahead. Items after `landed` keep their mapping, so rows already sent
/// for them stay where a retry expects them.
pub fn advance(
    state: &ShardState,
    positions: &[&Position],
    slots: &[Slot],
    landed: usize,
) -> ShardState {
    let mut next = state.clone();
    let landed = landed.min(slots.len()).min(positions.len());
    let rows = slots.iter().take(landed).filter(|s| s.offset().is_some()).count();
    next.next_offset = state.next_offset.saturating_add(rows as i64);
    if let Some(last) = landed.checked_sub(1).and_then(|i| positions.get(i))
        && state.last_position.as_ref().is_none_or(|p| *last > p)
    {
        next.last_position = Some((*last).clone());
    }
    next.intent = prune(state.intent.as_ref(), next.last_position.as_ref());
    next
}

/// Adds exclusions to the intent (they must all be after `last_position`).
pub fn exclude(state: &ShardState, more: Vec<Exclusion>) -> ShardState {
    let mut next = state.clone();
    let mut all: Vec<Exclusion> =
        state.intent.as_ref().map(|i| i.excluded.clone()).unwrap_or_default();
    all.extend(more);
    all.sort_by(|a, b| a.position.cmp(&b.position));
    all.dedup_by(|a, b| a.position == b.position);
    let merged = Intent { excluded: all };
    next.intent = prune(Some(&merged), next.last_position.as_ref());
    next
}

/// The index of the first item whose row is at or beyond `end`: where the
/// mapping leaves a finalized stream. `slots.len()` when none is.
pub fn rotation_point(slots: &[Slot], end: i64) -> usize {
    slots.iter().position(|s| s.offset().is_some_and(|o| o >= end)).unwrap_or(slots.len())
}

/// The state that continues in `new_stream` after a finalized stream of
/// `end` rows: everything before the rotation point has landed (rows below
/// `end` are in the table; exclusions before it must already be in the
/// dead-letter queue), and the records after it take offsets from 0 in the
/// new stream, minus the intent's exclusions and `more`.
pub fn rotate(
    state: &ShardState,
    positions: &[&Position],
    slots: &[Slot],
    end: i64,
    new_stream: String,
    more: Vec<Exclusion>,
) -> ShardState {
    rotate_at(state, positions, slots, rotation_point(slots, end), new_stream, more)
}

/// [`rotate`] at a rotation point found otherwise (a claim of rows can end
/// the landed prefix before the stream's end: another record's row there).
pub fn rotate_at(
    state: &ShardState,
    positions: &[&Position],
    slots: &[Slot],
    point: usize,
    new_stream: String,
    more: Vec<Exclusion>,
) -> ShardState {
    let advanced = advance(state, positions, slots, point);
    let mut next = exclude(&advanced, more);
    next.write_stream = new_stream;
    next.next_offset = 0;
    next.stream_end = None;
    next
}

fn prune(intent: Option<&Intent>, last: Option<&Position>) -> Option<Intent> {
    let excluded: Vec<Exclusion> =
        intent?.excluded.iter().filter(|e| last.is_none_or(|l| e.position > *l)).cloned().collect();
    (!excluded.is_empty()).then_some(Intent { excluded })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::state::ExclusionReason;
    use crate::source::SequenceNumber;

    fn pos(seq: u64) -> Position {
        Position {
            sequence_number: SequenceNumber::new(&seq.to_string()).unwrap(),
            sub_sequence_number: 0,
        }
    }

    fn excl(seq: u64) -> Exclusion {
        Exclusion {
            position: pos(seq),
            reason: ExclusionReason::RejectedByBigquery,
            message: "x".into(),
        }
    }

    fn run(state: &ShardState, kinds: &[(u64, Kind)]) -> Vec<Slot> {
        let ps: Vec<Position> = kinds.iter().map(|(s, _)| pos(*s)).collect();
        let items: Vec<(&Position, Kind)> =
            ps.iter().zip(kinds).map(|(p, (_, k))| (p, *k)).collect();
        map(state, &items)
    }

    #[test]
    fn maps_consecutive_offsets_after_last_position() {
        let mut s = ShardState::new("s".into());
        s.last_position = Some(pos(2));
        s.next_offset = 10;
        let slots = run(&s, &[(1, Kind::Good), (2, Kind::Good), (3, Kind::Good), (4, Kind::Good)]);
        assert_eq!(
            slots,
            vec![
                Slot::Earlier,
                Slot::Earlier,
                Slot::Row { offset: 10, sendable: true },
                Slot::Row { offset: 11, sendable: true },
            ]
        );
    }

    #[test]
    fn pure_bad_and_intent_take_no_offset_schema_bad_does() {
        let mut s = ShardState::new("s".into());
        s = exclude(&s, vec![excl(3)]);
        let slots =
            run(&s, &[(1, Kind::PureBad), (2, Kind::SchemaBad), (3, Kind::Good), (4, Kind::Good)]);
        assert_eq!(
            slots,
            vec![
                Slot::Excluded,
                Slot::Row { offset: 0, sendable: false },
                Slot::Excluded,
                Slot::Row { offset: 1, sendable: true },
            ]
        );
    }

    #[test]
    fn advance_moves_past_landed_and_keeps_the_rest_of_the_mapping() {
        let s = exclude(&ShardState::new("s".into()), vec![excl(2), excl(5)]);
        let ps: Vec<Position> = (1..=6).map(pos).collect();
        let refs: Vec<&Position> = ps.iter().collect();
        let items: Vec<(&Position, Kind)> = ps.iter().map(|p| (p, Kind::Good)).collect();
        let slots = map(&s, &items);
        let next = advance(&s, &refs, &slots, 3);
        assert_eq!(next.last_position, Some(pos(3)));
        assert_eq!(next.next_offset, 2);
        assert_eq!(next.intent.as_ref().unwrap().excluded, vec![excl(5)]);
        // The records after the landed prefix keep their offsets.
        let again = map(&next, &items);
        assert_eq!(&again[3..], &slots[3..]);
        // Landing nothing changes nothing.
        assert_eq!(advance(&s, &refs, &slots, 0), s);
    }

    #[test]
    fn rotation_continues_in_a_new_stream_from_the_end() {
        let mut s = ShardState::new("old".into());
        s.next_offset = 4;
        let ps: Vec<Position> = (1..=5).map(pos).collect();
        let refs: Vec<&Position> = ps.iter().collect();
        let items: Vec<(&Position, Kind)> = ps
            .iter()
            .enumerate()
            .map(|(i, p)| (p, if i == 3 { Kind::SchemaBad } else { Kind::Good }))
            .collect();
        let slots = map(&s, &items); // offsets 4..9
        assert_eq!(rotation_point(&slots, 6), 2);
        let mut bad = excl(4);
        bad.reason = ExclusionReason::SchemaMismatch;
        let next = rotate(&s, &refs, &slots, 6, "new".into(), vec![bad.clone()]);
        assert_eq!(next.write_stream, "new");
        assert_eq!(next.last_position, Some(pos(2)));
        assert_eq!(next.next_offset, 0);
        let after = map(&next, &items);
        assert_eq!(
            after,
            vec![
                Slot::Earlier,
                Slot::Earlier,
                Slot::Row { offset: 0, sendable: true },
                Slot::Excluded,
                Slot::Row { offset: 1, sendable: true },
            ]
        );
        // An end beyond the batch: nothing to rotate yet.
        assert_eq!(rotation_point(&slots, 100), 5);
    }
}
