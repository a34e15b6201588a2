//! Spillover object keys:
//! `{table}/{stream}/{shard}/{first}-{last}-{digest}.ndjson.zst` under the
//! sink's prefix, a position written `{sequence}_{sub-sequence}`, the digest
//! the content's ([`content_digest`]).
//!
//! The key is a pure function of what the object replays: the same records
//! spilled again (a retry) find their own object instead of adding a copy,
//! and the same records with a different content (other in-doubt offsets,
//! another write stream or mode) get a key of their own, so a killed
//! attempt's object never blocks the retry that must replace it in the
//! shard state. The stream name is part of the key because two streams
//! feeding one table have the same shard ids.
//!
//! Keys written before the digest (`{first}-{last}.ndjson.zst`) still parse
//! and replay; their `digest` is `None`.

use std::fmt;

use super::digest::{DIGEST_HEX_LEN, content_digest};
use super::{SpillError, SpilledBatch};
use crate::sink_url::{segment, stream_name};
use crate::source::{Position, SequenceNumber};
use crate::table::TableName;

/// Suffix of spillover objects; markers and archives never carry it.
pub const OBJECT_SUFFIX: &str = ".ndjson.zst";
/// Suffix of the marker beside an object (see [`SpillKey::marker_path`]).
pub const MARKER_SUFFIX: &str = ".marker.json";

/// Names one spillover object, relative to the sink's root. Ordered by
/// table, stream, shard, then first position: the order to replay in
/// (objects of the same records differ only by digest; the shard state
/// decides which of them is genuine).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpillKey {
    pub table: String,
    pub stream: String,
    pub shard: String,
    pub first: Position,
    pub last: Position,
    /// The content digest, lowercase hex; `None` for keys written before
    /// keys carried it.
    pub digest: Option<String>,
}

impl SpillKey {
    /// The key `batch` is stored under.
    ///
    /// # Errors
    /// [`SpillError::InvalidBatch`] for a batch without records.
    pub fn of(batch: &SpilledBatch) -> Result<Self, SpillError> {
        let (Some(first), Some(last)) = (batch.first_position(), batch.last_position()) else {
            return Err(SpillError::InvalidBatch("a spilled batch needs at least one record"));
        };
        Ok(Self {
            table: segment(&batch.table.to_string()),
            stream: segment(stream_name(&batch.stream_arn)),
            shard: segment(&batch.shard_id),
            first: first.clone(),
            last: last.clone(),
            digest: Some(content_digest(batch)),
        })
    }

    /// `table/stream/shard/first-last-digest.ndjson.zst`.
    pub fn path(&self) -> String {
        let base = self.base();
        format!("{base}{OBJECT_SUFFIX}")
    }

    /// Where the backfill keeps its note about this object (the PENDING
    /// stream it used): beside it, `...first-last-digest.marker.json`.
    pub fn marker_path(&self) -> String {
        let base = self.base();
        format!("{base}{MARKER_SUFFIX}")
    }

    fn base(&self) -> String {
        let pos = |p: &Position| format!("{}_{}", p.sequence_number, p.sub_sequence_number);
        let digest = self.digest.as_ref().map(|d| format!("-{d}")).unwrap_or_default();
        format!(
            "{}/{}/{}/{}-{}{digest}",
            self.table,
            self.stream,
            self.shard,
            pos(&self.first),
            pos(&self.last)
        )
    }

    /// Parses a relative path written by [`SpillKey::path`]; anything else
    /// (markers, archives, foreign objects) is `None`.
    pub fn parse(path: &str) -> Option<Self> {
        let mut parts = path.split('/');
        let (Some(table), Some(stream), Some(shard), Some(file), None) =
            (parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let range = file.strip_suffix(OBJECT_SUFFIX)?;
        let mut fields = range.split('-');
        let (Some(first), Some(last), digest, None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if digest.is_some_and(|d| d.len() != DIGEST_HEX_LEN || !d.bytes().all(hex)) {
            return None;
        }
        let pos = |s: &str| {
            let (seq, sub) = s.split_once('_')?;
            Some(Position {
                sequence_number: SequenceNumber::new(seq).ok()?,
                sub_sequence_number: sub.parse().ok()?,
            })
        };
        let key = Self {
            table: table.to_string(),
            stream: stream.to_string(),
            shard: shard.to_string(),
            first: pos(first)?,
            last: pos(last)?,
            digest: digest.map(str::to_string),
        };
        // Only canonical spellings: the key must name exactly one object.
        (key.path() == path).then_some(key)
    }
}

impl fmt::Display for SpillKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Which spillover objects `list` returns; empty fields match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpillFilter {
    pub table: Option<TableName>,
    /// A stream name or ARN.
    pub stream: Option<String>,
    pub shard: Option<String>,
}

impl SpillFilter {
    /// The longest relative prefix all matching keys share, to list less.
    pub(crate) fn prefix(&self) -> String {
        let Some(table) = &self.table else { return String::new() };
        let mut prefix = format!("{}/", segment(&table.to_string()));
        if let Some(stream) = &self.stream {
            prefix.push_str(&format!("{}/", segment(stream_name(stream))));
            if let Some(shard) = &self.shard {
                prefix.push_str(&format!("{}/", segment(shard)));
            }
        }
        prefix
    }

    pub fn matches(&self, key: &SpillKey) -> bool {
        self.table.as_ref().is_none_or(|t| segment(&t.to_string()) == key.table)
            && self.stream.as_ref().is_none_or(|s| segment(stream_name(s)) == key.stream)
            && self.shard.as_ref().is_none_or(|s| segment(s) == key.shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spill::format::tests::sample;

    const DIGEST: &str = "d53cb285f2053fb01ff731dded4eb659";

    #[test]
    fn key_is_a_function_of_the_replayed_content() {
        let batch = sample(3);
        let key = SpillKey::of(&batch).unwrap();
        let base = "proj.ds.events/events/shardId-000000000001/1000_0-1001_0";
        assert_eq!(key.path(), format!("{base}-{DIGEST}.ndjson.zst"));
        assert_eq!(key.marker_path(), format!("{base}-{DIGEST}.marker.json"));
        let mut again = sample(3);
        again.spilled_at = chrono::Utc::now() + chrono::Duration::hours(1);
        again.error = "another error".into();
        again.reason = crate::spill::SpillReason::InDoubt;
        assert_eq!(SpillKey::of(&again).unwrap(), key);
        assert_eq!(SpillKey::parse(&key.path()), Some(key.clone()));

        // The same records with another content: another key, same range.
        let mut other = sample(3);
        other.write_stream = Some("projects/p/datasets/d/tables/t/streams/s1".into());
        other.records[0].offset = Some(10);
        let other_key = SpillKey::of(&other).unwrap();
        assert_ne!(other_key.path(), key.path());
        assert_eq!((&other_key.first, &other_key.last), (&key.first, &key.last));
    }

    #[test]
    fn keys_without_a_digest_still_parse() {
        let legacy = "proj.ds.events/events/shardId-000000000001/1000_0-1001_0.ndjson.zst";
        let key = SpillKey::parse(legacy).expect("a key written before the digest");
        assert_eq!(key.digest, None);
        assert_eq!(key.path(), legacy);
        assert_eq!(
            key.marker_path(),
            "proj.ds.events/events/shardId-000000000001/1000_0-1001_0.marker.json"
        );
        // Same range: the legacy key sorts first, then by digest.
        let new = SpillKey::of(&sample(3)).unwrap();
        assert!(key < new);
    }

    #[test]
    fn parses_only_object_keys() {
        for other in [
            "proj.ds.events/events/shardId-1/1000_0-1001_0.marker.json",
            "archive/proj.ds.events/events/shardId-1/1000_0-1001_0.ndjson.zst",
            "proj.ds.events/events/shardId-1/1000-1001.ndjson.zst",
            "proj.ds.events/events/shardId-1/01000_0-1001_0.ndjson.zst",
            "proj.ds.events/events/shardId-1/1000_0-1001_0-.ndjson.zst",
            "proj.ds.events/events/shardId-1/1000_0-1001_0-d53cb285.ndjson.zst",
            "proj.ds.events/events/shardId-1/1000_0-1001_0-D53CB285F2053FB01FF731DDED4EB659.ndjson.zst",
            "proj.ds.events/events/shardId-1/1000_0-1001_0-d53cb285f2053fb01ff731dded4eb659-d53cb285f2053fb01ff731dded4eb659.ndjson.zst",
            "x.ndjson.zst",
        ] {
            assert_eq!(SpillKey::parse(other), None, "{other}");
        }
    }

    #[test]
    fn filters_by_prefix_and_fields() {
        let key = SpillKey::of(&sample(2)).unwrap();
        let table: TableName = "proj.ds.events".parse().unwrap();
        let all = SpillFilter::default();
        assert_eq!(all.prefix(), "");
        assert!(all.matches(&key));
        let by_shard = SpillFilter {
            table: Some(table.clone()),
            stream: Some("arn:aws:kinesis:us-east-1:1:stream/events".into()),
            shard: Some("shardId-000000000001".into()),
        };
        assert_eq!(by_shard.prefix(), "proj.ds.events/events/shardId-000000000001/");
        assert!(by_shard.matches(&key));
        let shard_only = SpillFilter { shard: Some("shardId-000000000002".into()), ..all };
        assert_eq!(shard_only.prefix(), "");
        assert!(!shard_only.matches(&key));
    }
}
