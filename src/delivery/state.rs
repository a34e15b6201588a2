//! The per-shard delivery state: what the exactly-once protocol remembers
//! between invocations, one JSON object per (table, Kinesis stream, shard)
//! in the compare-and-swap [`StateStore`](super::store).
//!
//! Guarantees (DESIGN.md, "Exactly-once: the invariants"):
//! - every record at or before [`ShardState::last_position`] has landed
//!   (table, dead-letter queue or spillover) and is skipped on a retry;
//! - every row in [`ShardState::write_stream`] at an offset at or above
//!   [`ShardState::next_offset`] was written under the mapping this state
//!   describes (records after `last_position`, minus the intent's exclusions,
//!   at consecutive offsets from `next_offset`), so an `ALREADY_EXISTS` or a
//!   finalized `row_count` can be read back as "these records are in".

use crate::source::Position;
use crate::table::TableName;
use serde::{Deserialize, Serialize};

/// Version of the JSON layout below; a reader refuses a newer one rather than
/// guess at fields it does not know. Format 2 added [`Claim`]; a format-1
/// object reads as [`Claim::Unknown`]. Format 3 added [`Claim::Rows`] (every
/// row of the claim by fingerprint); format 2's [`Claim::From`] still reads.
/// Format 4 added [`ShardState::spill_manifest`]: a build that reads only up
/// to format 3 would take the objects it vouches for as orphans, so it must
/// refuse the state instead. Formats 1 to 3 read as they are.
pub const STATE_FORMAT: u32 = 4;

/// What the protocol remembers for one shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardState {
    pub format: u32,
    /// The shard's COMMITTED write stream. Persisted before the first append
    /// to it, so a retry can never write the same records to a second stream.
    pub write_stream: String,
    /// The offset in `write_stream` of the first row after `last_position`.
    pub next_offset: i64,
    /// The last record (in shard order) known to have landed; `None` before
    /// anything has.
    pub last_position: Option<Position>,
    /// Records after `last_position` that get no offset although they may
    /// encode: decided once (schema mismatch, rows BigQuery rejected) and
    /// replayed by every retry (invariant 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
    /// `write_stream` is finalized and holds exactly this many rows: learned
    /// from `FinalizeWriteStream` and kept the first time it is learned
    /// (invariant 6). Rows below it are in the table; the mapping continues in
    /// a new stream from the first record at or beyond it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_end: Option<i64>,
    /// Spillover objects (their exact `SpillKey` paths, content digest
    /// included) whose records this state counts as landed. Only these are genuine: an invocation that spilled
    /// and then died before its commit leaves an orphan object whose records
    /// a retry delivers again, so `backfill` replays an object only when it
    /// is listed here, and removes it from the list (CAS) once replayed.
    /// Bounded by [`SPILL_LIST_CAP`](super::spill_manifest::SPILL_LIST_CAP)
    /// plus one invocation's objects: older paths move into manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spills: Vec<String>,
    /// The newest spill manifest (a key in the state store): it and the
    /// manifests it chains to vouch for their paths exactly like `spills`
    /// (see `spill_manifest.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spill_manifest: Option<String>,
    /// Who may have put rows in `write_stream` at or after `next_offset`
    /// (DESIGN.md, invariant 7): persisted before an invocation's first
    /// append, so a later invocation whose batch starts elsewhere (the event
    /// source mapping discarded a batch) never reads those rows as its own.
    #[serde(default = "Claim::unknown")]
    pub claim: Claim,
}

/// What may be in the write stream at or after `next_offset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Claim {
    /// Nothing, and no writer can still put anything there: every earlier
    /// writer committed with all its rows below `next_offset`, or its stream
    /// was fenced (finalized) and left.
    Clean,
    /// Rows there, if any, are these records, one per offset from
    /// `next_offset` on, and nothing can be at or past `next_offset +
    /// rows.len()`; the invocation that claimed them may have died with
    /// requests still in flight. A row counts as a record's landing only if
    /// the record's own fingerprint is claimed at that offset.
    Rows(ClaimedRows),
    /// Written by format 2: rows there, if any, are the mapping that starts
    /// with this record at `next_offset` (how far it reached is not known).
    From(Position),
    /// Written by a build before claims existed: treated as a claim of the
    /// record right after `last_position` (what that build assumed).
    Unknown,
}

impl Claim {
    fn unknown() -> Self {
        Self::Unknown
    }

    /// A claim of `rows`, or clean when there are none.
    pub fn of_rows(rows: ClaimedRows) -> Self {
        if rows.is_empty() { Self::Clean } else { Self::Rows(rows) }
    }
}

/// A record's identity in a claim: the first 8 bytes of the MD5 of its
/// position (`sequence/sub-sequence`). Two records of one shard's tail share
/// one with odds of about n²/2⁶⁵, and a claim spans one batch.
pub type Fingerprint = [u8; 8];

/// The fingerprint of the record at `position`.
pub fn fingerprint(position: &Position) -> Fingerprint {
    use md5::{Digest, Md5};
    let digest = Md5::digest(position.to_string().as_bytes());
    let mut fp = [0u8; 8];
    fp.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    fp
}

/// The records of a claim in offset order, stored as one base64 string of
/// 8-byte fingerprints (about 10.7 bytes of JSON per row).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClaimedRows(Vec<Fingerprint>);

impl ClaimedRows {
    pub fn new(rows: Vec<Fingerprint>) -> Self {
        Self(rows)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The record claimed `i` rows after the claim's first offset.
    pub fn get(&self, i: usize) -> Option<&Fingerprint> {
        self.0.get(i)
    }

    /// How many rows after the claim's first offset `fp` is claimed.
    pub fn find(&self, fp: &Fingerprint) -> Option<usize> {
        self.0.iter().position(|r| r == fp)
    }

    /// The rows from `skip` on, at most `keep` of them.
    pub fn slice(&self, skip: usize, keep: usize) -> Self {
        Self(self.0.iter().skip(skip).take(keep).copied().collect())
    }
}

impl Serialize for ClaimedRows {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        let bytes: Vec<u8> = self.0.iter().flatten().copied().collect();
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

impl<'de> Deserialize<'de> for ClaimedRows {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)?;
        if bytes.len() % 8 != 0 {
            return Err(serde::de::Error::custom("claimed rows are not 8-byte fingerprints"));
        }
        let rows = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut fp = [0u8; 8];
                fp.copy_from_slice(c);
                fp
            })
            .collect();
        Ok(Self(rows))
    }
}

/// Exclusions that change the record → offset mapping, persisted before any
/// row placed by that mapping is sent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// Sorted by position, no duplicates, all after `last_position`.
    pub excluded: Vec<Exclusion>,
}

/// One record that gets no row, and why (the dead-letter message says it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub position: Position,
    pub reason: ExclusionReason,
    pub message: String,
}

/// Why a record was excluded after being mapped to an offset once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExclusionReason {
    /// The encoder refused it against the table schema it knew.
    SchemaMismatch,
    /// The encoded row alone exceeds the AppendRows request limit.
    RowTooLarge,
    /// BigQuery answered `row_errors` for it.
    RejectedByBigquery,
    /// `UNKNOWN_FIELDS=add`: it needs columns the writers did not see before
    /// the invocation's wait ended. It is spilled, not dead-lettered, and the
    /// backfill writes it once they are visible (`src/evolve/step.rs`). A
    /// build without this reason refuses such a state as unreadable rather
    /// than guess.
    AwaitingColumns,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state object is not valid JSON for format {STATE_FORMAT}")]
    Decode(#[source] serde_json::Error),
    #[error("state object has format {found}, this build reads up to {STATE_FORMAT}")]
    NewerFormat { found: u32 },
    #[error("state object is inconsistent: {0}")]
    Invalid(&'static str),
}

impl ShardState {
    /// The state of a shard that has never delivered anything and has no
    /// stream yet: an empty, "finalized" placeholder of 0 rows, so the first
    /// record to be written takes the ordinary rotation path (create a stream,
    /// persist its name, then append).
    pub fn initial() -> Self {
        Self { stream_end: Some(0), ..Self::new(String::new()) }
    }

    /// A state at the start of `write_stream`.
    pub fn new(write_stream: String) -> Self {
        Self {
            format: STATE_FORMAT,
            write_stream,
            next_offset: 0,
            last_position: None,
            intent: None,
            stream_end: None,
            spills: Vec::new(),
            spill_manifest: None,
            claim: Claim::Clean,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a stored state.
    ///
    /// # Errors
    /// Not JSON of this shape, a newer format, or values that break the
    /// invariants (negative offsets, exclusions at or before `last_position`).
    pub fn from_json(bytes: &[u8]) -> Result<Self, StateError> {
        #[derive(Deserialize)]
        struct Probe {
            format: u32,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(StateError::Decode)?;
        if probe.format > STATE_FORMAT {
            return Err(StateError::NewerFormat { found: probe.format });
        }
        let mut state: Self = serde_json::from_slice(bytes).map_err(StateError::Decode)?;
        state.check()?;
        // Written back in this build's layout.
        state.format = STATE_FORMAT;
        Ok(state)
    }

    fn check(&self) -> Result<(), StateError> {
        if self.next_offset < 0 || self.stream_end.is_some_and(|e| e < 0) {
            return Err(StateError::Invalid("negative offset"));
        }
        if self.write_stream.is_empty() && self.stream_end != Some(0) {
            return Err(StateError::Invalid("empty write stream name"));
        }
        if let Some(intent) = &self.intent {
            let sorted = intent.excluded.windows(2).all(|w| match w {
                [a, b] => a.position < b.position,
                _ => true,
            });
            if !sorted {
                return Err(StateError::Invalid("intent exclusions not sorted"));
            }
            if let (Some(last), Some(first)) = (&self.last_position, intent.excluded.first())
                && first.position <= *last
            {
                return Err(StateError::Invalid("intent excludes a landed record"));
            }
        }
        Ok(())
    }

    /// The exclusion recorded for `position`, if the intent has one.
    pub fn excluded(&self, position: &Position) -> Option<&Exclusion> {
        let intent = self.intent.as_ref()?;
        intent
            .excluded
            .binary_search_by(|e| e.position.cmp(position))
            .ok()
            .and_then(|i| intent.excluded.get(i))
    }
}

/// The state object's key: one per (table, Kinesis stream, shard).
///
/// The ARN's `:` and `/` become `_` (stream names are `[a-zA-Z0-9_.-]`, so
/// distinct ARNs keep distinct keys) and the result is safe as an S3 key or a
/// file name.
pub fn state_key(table: &TableName, stream_arn: &str, shard_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
            .collect()
    };
    format!(
        "{}/{}/{}/{}/{}.json",
        clean(table.project()),
        clean(table.dataset()),
        clean(table.table()),
        clean(stream_arn),
        clean(shard_id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SequenceNumber;

    fn pos(seq: &str, sub: u64) -> Position {
        Position { sequence_number: SequenceNumber::new(seq).unwrap(), sub_sequence_number: sub }
    }

    #[test]
    fn an_exclusion_awaiting_columns_is_stored_by_its_stable_name() {
        let mut s = ShardState::new("w".into());
        let waiting = Exclusion {
            position: pos("101", 0),
            reason: ExclusionReason::AwaitingColumns,
            message: "plan: the table has no such column".into(),
        };
        s.intent = Some(Intent { excluded: vec![waiting] });
        let json: serde_json::Value = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(json["intent"]["excluded"][0]["reason"], "awaiting_columns");
        assert_eq!(ShardState::from_json(&s.to_json()).unwrap(), s);
    }

    #[test]
    fn round_trips_json() {
        let mut s = ShardState::new("projects/p/datasets/d/tables/t/streams/s1".into());
        s.next_offset = 7;
        s.last_position = Some(pos("100", 2));
        s.intent = Some(Intent {
            excluded: vec![Exclusion {
                position: pos("101", 0),
                reason: ExclusionReason::RejectedByBigquery,
                message: "bad".into(),
            }],
        });
        s.stream_end = Some(9);
        s.spills = vec!["t/s/shard/1_0-2_0.ndjson.zst".into()];
        s.spill_manifest = Some("p/d/t/s/shard.spills/0123.json".into());
        s.claim = Claim::From(pos("101", 0));
        let back = ShardState::from_json(&s.to_json()).unwrap();
        assert_eq!(back, s);
        s.claim = Claim::Rows(ClaimedRows::new(vec![
            fingerprint(&pos("101", 0)),
            fingerprint(&pos("101", 1)),
        ]));
        let json = s.to_json();
        assert_eq!(ShardState::from_json(&json).unwrap(), s);
        assert!(String::from_utf8_lossy(&json).contains(r#""claim":{"rows":""#));
        // A format-2 object's claim reads as it was written.
        let old = br#"{"format":2,"write_stream":"s","next_offset":3,"last_position":null,"claim":{"from":{"sequence_number":"7","sub_sequence_number":0}}}"#;
        assert_eq!(ShardState::from_json(old).unwrap().claim, Claim::From(pos("7", 0)));
        // A format-3 object lists its spills inline and names no manifest.
        let old = br#"{"format":3,"write_stream":"s","next_offset":3,"last_position":null,"spills":["a"],"claim":"clean"}"#;
        let read = ShardState::from_json(old).unwrap();
        assert_eq!(
            (read.spills, read.spill_manifest, read.format),
            (vec!["a".to_string()], None, 4)
        );
        // A format-1 object knows no claim.
        let old = br#"{"format":1,"write_stream":"s","next_offset":3,"last_position":null}"#;
        assert_eq!(ShardState::from_json(old).unwrap().claim, Claim::Unknown);
        assert_eq!(back.excluded(&pos("101", 0)).unwrap().message, "bad");
        assert!(back.excluded(&pos("101", 1)).is_none());
    }

    #[test]
    fn fingerprints_are_stable_across_builds() {
        // Persisted in claims: the same position must give the same bytes
        // in every build (MD5 of "sequence/sub-sequence", first 8 bytes).
        let p = pos("49590338271490256608559692538361571095921575989136588898", 3);
        assert_eq!(fingerprint(&p), [62, 226, 19, 41, 212, 198, 95, 43]);
        let rows = ClaimedRows::new(vec![fingerprint(&pos("1", 0)), fingerprint(&p)]);
        assert_eq!(rows.find(&fingerprint(&p)), Some(1));
        assert_eq!(rows.slice(1, 5), ClaimedRows::new(vec![fingerprint(&p)]));
        assert_eq!(Claim::of_rows(rows.slice(2, 5)), Claim::Clean);
    }

    #[test]
    fn refuses_newer_format_and_bad_values() {
        let newer = br#"{"format":5,"write_stream":"s","next_offset":0,"last_position":null}"#;
        assert!(matches!(ShardState::from_json(newer), Err(StateError::NewerFormat { found: 5 })));
        let ragged = br#"{"format":3,"write_stream":"s","next_offset":0,"last_position":null,"claim":{"rows":"AAAA"}}"#;
        assert!(matches!(ShardState::from_json(ragged), Err(StateError::Decode(_))));
        let negative = br#"{"format":1,"write_stream":"s","next_offset":-1,"last_position":null}"#;
        assert!(matches!(ShardState::from_json(negative), Err(StateError::Invalid(_))));
        assert!(matches!(ShardState::from_json(b"nope"), Err(StateError::Decode(_))));
        let mut s = ShardState::new("s".into());
        s.last_position = Some(pos("5", 0));
        s.intent = Some(Intent {
            excluded: vec![Exclusion {
                position: pos("5", 0),
                reason: ExclusionReason::SchemaMismatch,
                message: String::new(),
            }],
        });
        assert!(matches!(ShardState::from_json(&s.to_json()), Err(StateError::Invalid(_))));
    }

    #[test]
    fn keys_are_path_safe() {
        let t: TableName = "p.d.t".parse().unwrap();
        let k =
            state_key(&t, "arn:aws:kinesis:us-east-1:123456789012:stream/my-stream", "shardId-000");
        assert_eq!(
            k,
            "p/d/t/arn_aws_kinesis_us-east-1_123456789012_stream_my-stream/shardId-000.json"
        );
    }
}
