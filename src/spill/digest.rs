//! The content digest a spillover key carries: a short hash of what the
//! backfill would replay — the same fields [`SpilledBatch::replays_as`]
//! compares (table, stream, shard, write stream, write mode, and every
//! record's position, partition key, hash key, arrival time, in-doubt offset
//! and bytes, and whether the reason is `stream_lost`: the backfill replays
//! those at least once and counts them so), never `error`, any other
//! `reason` or `spilled_at`.
//!
//! Why: objects are create-only, so a key that named only the first and
//! last positions let a killed attempt's object (say, in doubt at other
//! offsets) block every retry that must spill the same records differently,
//! and the shard stalled. With the digest, a retry of the same content
//! finds its own object, and different content gets a key of its own; the
//! shard state lists the exact key written, so the killed attempt's object
//! stays an unlisted orphan.
//!
//! The encoding below is fixed (length-prefixed, tagged options) rather
//! than derived from the object format, so the digest of a batch does not
//! change when the format gains a field or serde changes its output.

use sha2::{Digest as _, Sha256};

use super::{SpillReason, SpilledBatch};
use crate::delivery::WriteMode;

/// Hex characters of the digest in a key: 128 bits of SHA-256, so two
/// contents of the same records never share a key by accident.
pub const DIGEST_HEX_LEN: usize = 32;

/// Bumped if the encoding below ever changes.
const DOMAIN: &[u8] = b"kinesis-bigquery spill key v1\0";

/// The digest of `batch`'s replayed content, `DIGEST_HEX_LEN` lowercase hex.
pub fn content_digest(batch: &SpilledBatch) -> String {
    let mut h = ContentHasher(Sha256::new());
    h.0.update(DOMAIN);
    h.text(&batch.table.to_string());
    h.text(&batch.stream_arn);
    h.text(&batch.shard_id);
    h.optional(batch.write_stream.as_deref().map(str::as_bytes));
    h.optional(batch.write_mode.map(|m| mode_name(m).as_bytes()));
    h.number(batch.records.len() as u64);
    for r in &batch.records {
        h.text(r.position.sequence_number.as_str());
        h.number(r.position.sub_sequence_number);
        h.text(&r.partition_key);
        h.optional(r.explicit_hash_key.as_deref().map(str::as_bytes));
        h.optional(
            r.arrival_time.map(|t| t.timestamp_micros().to_le_bytes()).as_ref().map(|b| &b[..]),
        );
        h.optional(r.offset.map(i64::to_le_bytes).as_ref().map(|b| &b[..]));
        h.bytes(&r.data);
    }
    // Appended only for stream_lost, so every other object keeps the digest
    // it had before this field counted (keys already in buckets still match).
    if batch.reason == SpillReason::StreamLost {
        h.text("stream_lost");
    }
    let full = h.0.finalize();
    full.iter().take(DIGEST_HEX_LEN / 2).map(|b| format!("{b:02x}")).collect()
}

/// Stable names, independent of serde and of `Debug`.
fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::ExactlyOnce => "exactly_once",
        WriteMode::AtLeastOnce => "at_least_once",
        WriteMode::Cdc => "cdc",
    }
}

/// Feeds fields so that no two different field sequences hash the same
/// bytes: every value is length-prefixed, every option tagged.
struct ContentHasher(Sha256);

impl ContentHasher {
    fn number(&mut self, n: u64) {
        self.0.update(n.to_le_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.number(b.len() as u64);
        self.0.update(b);
    }

    fn text(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn optional(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.0.update([0u8]),
            Some(b) => {
                self.0.update([1u8]);
                self.bytes(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spill::format::tests::sample;

    #[test]
    fn digest_covers_what_replays_and_nothing_else() {
        let batch = sample(3);
        let digest = content_digest(&batch);
        assert_eq!(digest.len(), DIGEST_HEX_LEN);
        assert!(digest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

        let mut informative = batch.clone();
        informative.error = "another error".into();
        informative.reason = crate::spill::SpillReason::DeadlineNear;
        informative.spilled_at += chrono::Duration::hours(1);
        assert_eq!(content_digest(&informative), digest);

        let changes: [fn(&mut SpilledBatch); 8] = [
            // The backfill replays a stream_lost object at least once and
            // counts it so: an object of the same records spilled for
            // another reason must not stand in for it.
            |b| b.reason = crate::spill::SpillReason::StreamLost,
            |b| b.write_stream = Some("projects/p/datasets/d/tables/t/streams/s-2".into()),
            |b| b.write_mode = Some(WriteMode::AtLeastOnce),
            |b| b.records[0].offset = Some(7),
            |b| b.records[1].data = bytes::Bytes::from_static(b"{}"),
            |b| b.records[1].partition_key.push('x'),
            |b| b.records[2].explicit_hash_key = Some("1".into()),
            |b| b.stream_arn.push('2'),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut other = batch.clone();
            change(&mut other);
            assert!(!other.replays_as(&batch), "change {i}");
            assert_ne!(content_digest(&other), digest, "change {i}");
        }
    }

    /// A retry after a deploy must compute the key the killed attempt did
    /// (or the same content lands twice as two objects): a change of the
    /// encoding fails here, and then `DOMAIN` must change with it.
    #[test]
    fn the_encoding_is_pinned() {
        assert_eq!(content_digest(&sample(3)), "d53cb285f2053fb01ff731dded4eb659");
    }
}
