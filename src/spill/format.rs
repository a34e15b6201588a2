//! The spillover object format (documented in `docs/formats.md`):
//! zstd-compressed NDJSON, a header object on the first line and one record
//! per line after it, readable with `zstdcat OBJECT | jq`.
//!
//! Guarantees: `decode(encode(b)) == b`; a truncated or altered object is
//! refused (zstd frame checksum, and the header's `record_count`), never read
//! as a shorter batch.

use std::io::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{SpillError, SpillReason, SpilledBatch, SpilledRecord};
use crate::delivery::WriteMode;
use crate::dlq::table_name;
use crate::source::Position;
use crate::table::TableName;

/// The header's `format` value: tells a spillover object from anything else.
pub const FORMAT: &str = "kinesis-bigquery-spill";
/// Bumped when a field changes meaning; a reader refuses newer versions.
/// Version 2 added `write_mode`; a version-1 object reads with
/// `write_mode: None` (see [`SpilledBatch::write_mode`]).
pub const FORMAT_VERSION: u32 = 2;
/// zstd's default level: fast enough to spill 6 MB within a Lambda deadline
/// margin while shrinking JSON-in-base64 several times.
const ZSTD_LEVEL: i32 = 3;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    #[serde(with = "table_name")]
    table: TableName,
    stream_arn: String,
    shard_id: String,
    reason: SpillReason,
    error: String,
    spilled_at: DateTime<Utc>,
    #[serde(default)]
    write_stream: Option<String>,
    /// The `WRITE_MODE` that spilled the batch (`exactly_once`,
    /// `at_least_once`, `cdc`); absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    write_mode: Option<String>,
    record_count: usize,
    first_position: Position,
    last_position: Position,
}

/// The name `WRITE_MODE` spells `mode` with (and `FromStr` reads back).
pub fn mode_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::ExactlyOnce => "exactly_once",
        WriteMode::AtLeastOnce => "at_least_once",
        WriteMode::Cdc => "cdc",
    }
}

/// Checks what the key and the backfill rely on: at least one record, in
/// strictly ascending position order.
pub(crate) fn validate(batch: &SpilledBatch) -> Result<(), SpillError> {
    if batch.records.is_empty() {
        return Err(SpillError::InvalidBatch("a spilled batch needs at least one record"));
    }
    if batch.records.windows(2).any(|w| matches!(w, [a, b] if a.position >= b.position)) {
        return Err(SpillError::InvalidBatch("records must be in ascending position order"));
    }
    if batch.write_stream.is_none() && batch.records.iter().any(|r| r.offset.is_some()) {
        return Err(SpillError::InvalidBatch("records with offsets need the write_stream"));
    }
    Ok(())
}

/// The object bytes for `batch`.
///
/// # Errors
/// [`SpillError::InvalidBatch`] when `validate` refuses it.
pub fn encode(batch: &SpilledBatch) -> Result<Vec<u8>, SpillError> {
    validate(batch)?;
    let (Some(first), Some(last)) = (batch.first_position(), batch.last_position()) else {
        return Err(SpillError::InvalidBatch("a spilled batch needs at least one record"));
    };
    let header = Header {
        format: FORMAT.to_string(),
        version: FORMAT_VERSION,
        table: batch.table.clone(),
        stream_arn: batch.stream_arn.clone(),
        shard_id: batch.shard_id.clone(),
        reason: batch.reason,
        error: batch.error.clone(),
        spilled_at: batch.spilled_at,
        write_stream: batch.write_stream.clone(),
        write_mode: batch.write_mode.map(|m| mode_name(m).to_string()),
        record_count: batch.records.len(),
        first_position: first.clone(),
        last_position: last.clone(),
    };
    let io = |source| SpillError::Io { location: "zstd encoder".into(), source };
    let mut z = zstd::stream::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(io)?;
    z.include_checksum(true).map_err(io)?;
    serde_json::to_writer(&mut z, &header).map_err(SpillError::Encode)?;
    z.write_all(b"\n").map_err(io)?;
    for record in &batch.records {
        serde_json::to_writer(&mut z, record).map_err(SpillError::Encode)?;
        z.write_all(b"\n").map_err(io)?;
    }
    z.finish().map_err(io)
}

/// The batch stored in `bytes`; `location` names the object in errors.
///
/// # Errors
/// [`SpillError::Corrupt`] for anything that is not a complete spillover
/// object of a version this build reads.
pub fn decode(bytes: &[u8], location: &str) -> Result<SpilledBatch, SpillError> {
    let corrupt = |why: String| SpillError::Corrupt { location: location.to_string(), why };
    let text = zstd::stream::decode_all(bytes).map_err(|e| corrupt(format!("zstd: {e}")))?;
    let mut lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let head = lines.next().ok_or_else(|| corrupt("empty object".into()))?;
    let header: Header =
        serde_json::from_slice(head).map_err(|e| corrupt(format!("header: {e}")))?;
    if header.format != FORMAT {
        return Err(corrupt(format!("format is {:?}, not {FORMAT:?}", header.format)));
    }
    if header.version > FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is newer than this build reads ({FORMAT_VERSION})",
            header.version
        )));
    }
    let write_mode = match &header.write_mode {
        None => None,
        Some(name) => {
            Some(name.parse::<WriteMode>().map_err(|e| corrupt(format!("write_mode: {e}")))?)
        }
    };
    let records = lines
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice::<SpilledRecord>(line)
                .map_err(|e| corrupt(format!("record {}: {e}", i + 1)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if records.len() != header.record_count {
        return Err(corrupt(format!(
            "header says {} records, object holds {}",
            header.record_count,
            records.len()
        )));
    }
    let batch = SpilledBatch {
        table: header.table,
        stream_arn: header.stream_arn,
        shard_id: header.shard_id,
        reason: header.reason,
        error: header.error,
        spilled_at: header.spilled_at,
        write_stream: header.write_stream,
        write_mode,
        records,
    };
    validate(&batch).map_err(|e| corrupt(e.to_string()))?;
    Ok(batch)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::source::{SequenceNumber, SourceRecord};
    use bytes::Bytes;
    use std::sync::Arc;

    pub(crate) fn sample(n: u64) -> SpilledBatch {
        let records: Vec<SourceRecord> = (0..n)
            .map(|i| SourceRecord {
                shard_id: Arc::from("shardId-000000000001"),
                stream_arn: Arc::from("arn:aws:kinesis:us-east-1:123456789012:stream/events"),
                position: Position {
                    sequence_number: SequenceNumber::new(&(1000 + i / 2).to_string()).unwrap(),
                    sub_sequence_number: i % 2,
                },
                event_index: i as usize,
                partition_key: Arc::from(format!("pk-{i}").as_str()),
                explicit_hash_key: (i == 1).then(|| Arc::from("12345")),
                arrival_micros: Some(1_700_000_000_000_000 + i as i64),
                data: Bytes::from(format!("{{\"n\":{i}}}")),
            })
            .collect();
        let table: TableName = "proj.ds.events".parse().unwrap();
        SpilledBatch::new(table, SpillReason::RetriesExhausted, "UNAVAILABLE", &records)
    }

    #[test]
    fn round_trips_and_reads_as_ndjson() {
        let mut batch = sample(5);
        batch.write_stream = Some("projects/p/datasets/d/tables/t/streams/s1".into());
        batch.records[0].offset = Some(40);
        let bytes = encode(&batch).unwrap();
        assert_eq!(decode(&bytes, "x").unwrap(), batch);
        let text = String::from_utf8(zstd::stream::decode_all(&bytes[..]).unwrap()).unwrap();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0]["format"], FORMAT);
        assert_eq!(lines[0]["record_count"], 5);
        assert_eq!(lines[0]["reason"], "retries_exhausted");
        assert_eq!(lines[0]["first_position"]["sequence_number"], "1000");
        assert_eq!(lines[1]["sequence_number"], "1000");
        assert_eq!(lines[1]["offset"], 40);
        assert_eq!(lines[1]["data_base64"], "eyJuIjowfQ==");
        assert_eq!(batch.source_records()[1].explicit_hash_key.as_deref(), Some("12345"));
    }

    #[test]
    fn refuses_damaged_objects() {
        let bytes = encode(&sample(3)).unwrap();
        assert!(matches!(decode(&bytes[..bytes.len() - 3], "x"), Err(SpillError::Corrupt { .. })));
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0xff;
        assert!(decode(&flipped, "x").is_err());
        // A well-formed frame whose header promises more records than it has.
        let text = String::from_utf8(zstd::stream::decode_all(&bytes[..]).unwrap()).unwrap();
        let short: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        let z = zstd::stream::encode_all(short.as_bytes(), 3).unwrap();
        let err = decode(&z, "x").unwrap_err().to_string();
        assert!(err.contains("header says 3 records"), "{err}");
    }

    #[test]
    fn records_the_write_mode_and_reads_version_1_as_unknown() {
        let mut batch = sample(2);
        batch.write_mode = Some(WriteMode::AtLeastOnce);
        let bytes = encode(&batch).unwrap();
        assert_eq!(decode(&bytes, "x").unwrap().write_mode, Some(WriteMode::AtLeastOnce));
        let text = String::from_utf8(zstd::stream::decode_all(&bytes[..]).unwrap()).unwrap();
        let mut header: serde_json::Value =
            serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(
            (header["version"].as_u64(), header["write_mode"].as_str()),
            (Some(2), Some("at_least_once"))
        );
        // What a build before version 2 wrote: no write_mode.
        header["version"] = 1.into();
        header.as_object_mut().unwrap().remove("write_mode");
        let rest: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
        let old = zstd::stream::encode_all(format!("{header}\n{rest}").as_bytes(), 3).unwrap();
        let read = decode(&old, "x").unwrap();
        assert_eq!(read.write_mode, None);
        assert_eq!(read.records, batch.records);
        // An unknown mode is refused, not guessed.
        header["version"] = 2.into();
        header["write_mode"] = "sometimes".into();
        let bad = zstd::stream::encode_all(format!("{header}\n{rest}").as_bytes(), 3).unwrap();
        assert!(matches!(decode(&bad, "x"), Err(SpillError::Corrupt { .. })));
    }

    #[test]
    fn refuses_bad_batches() {
        let mut empty = sample(1);
        empty.records.clear();
        assert!(matches!(encode(&empty), Err(SpillError::InvalidBatch(_))));
        let mut unordered = sample(3);
        unordered.records.swap(0, 2);
        assert!(matches!(encode(&unordered), Err(SpillError::InvalidBatch(_))));
        let mut no_stream = sample(2);
        no_stream.records[1].offset = Some(3);
        assert!(matches!(encode(&no_stream), Err(SpillError::InvalidBatch(_))));
    }
}
