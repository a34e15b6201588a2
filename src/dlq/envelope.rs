//! The dead-letter envelope: one JSON document per record that can never
//! become a row, documented in `docs/formats.md`.
//!
//! The envelope carries everything needed to find the record again in
//! Kinesis (stream, shard, sequence and sub-sequence number) and to replay or
//! inspect it (the raw bytes, inline as base64 or as an S3 pointer when the
//! message would exceed the queue's size limit).

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::source::{Position, SequenceNumber, SourceRecord};
use crate::table::TableName;

/// Bumped when a field changes meaning or disappears; adding fields does not.
pub const ENVELOPE_VERSION: u32 = 1;

/// Error texts are cut here: a decoder message that quotes a whole record
/// would otherwise push the envelope past SQS's message size limit on its own.
pub const MAX_ERROR_BYTES: usize = 4096;

/// Why a record was dead-lettered. Stable snake_case names: consumers of the
/// queue route on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The record (or KPL sub-record) is not valid UTF-8 JSON.
    InvalidJson,
    /// Valid JSON that does not fit the table schema (type, mode, range).
    SchemaMismatch,
    /// A field the table does not have, with `UNKNOWN_FIELDS=reject`.
    UnknownField,
    /// A KPL aggregate whose MD5 trailer does not match its protobuf bytes.
    KplChecksum,
    /// A KPL aggregate with the magic prefix whose protobuf does not decode.
    KplProtobuf,
    /// One encoded row larger than an AppendRows request can carry.
    RowTooLarge,
    /// BigQuery answered the append with a `row_errors` entry for this row.
    RejectedByBigquery,
    /// `WRITE_MODE=cdc`: the record's change type or sequence number cannot
    /// be read (`CDC_CHANGE_TYPE_FIELD`, `CDC_SEQUENCE_FIELD`).
    ChangeUnreadable,
    /// A templated `BIGQUERY_TABLE`: the record's route field is missing,
    /// not a string, or not a valid table-name part. The letter's `table` is
    /// the template itself.
    NoRoute,
    /// A templated `BIGQUERY_TABLE`: the record's table does not exist (and
    /// `CREATE_TABLES` is off, or creating it failed for good).
    NoSuchTable,
}

/// One dead-lettered record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub version: u32,
    pub reason: Reason,
    /// Human-readable cause, at most [`MAX_ERROR_BYTES`].
    pub error: String,
    /// Path of the offending field (`payload.items[3].price`) when known.
    #[serde(default)]
    pub field_path: Option<String>,
    #[serde(with = "table_name")]
    pub table: TableName,
    pub stream_arn: String,
    pub shard_id: String,
    pub sequence_number: SequenceNumber,
    pub sub_sequence_number: u64,
    pub partition_key: String,
    #[serde(default)]
    pub explicit_hash_key: Option<String>,
    /// Kinesis `approximateArrivalTimestamp`, RFC 3339.
    #[serde(default)]
    pub arrival_time: Option<DateTime<Utc>>,
    /// When this envelope was built, RFC 3339.
    pub dead_lettered_at: DateTime<Utc>,
    /// Length of the raw record in bytes (before base64).
    pub data_size: usize,
    /// `data_base64` or `data_s3`, exactly one of them.
    #[serde(flatten)]
    pub data: Payload,
}

/// Where the raw record bytes are.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// The bytes themselves, standard base64 with padding.
    #[serde(rename = "data_base64", with = "base64_bytes")]
    Inline(Bytes),
    /// `s3://bucket/key` of an object holding exactly the raw bytes, used when
    /// the inline message would exceed the queue's maximum message size.
    #[serde(rename = "data_s3")]
    S3(String),
}

impl DeadLetter {
    /// Builds the envelope for `record`, stamped now, with the raw bytes inline.
    pub fn new(
        record: &SourceRecord,
        table: &TableName,
        reason: Reason,
        error: impl Into<String>,
    ) -> Self {
        Self {
            version: ENVELOPE_VERSION,
            reason,
            error: truncate(error.into(), MAX_ERROR_BYTES),
            field_path: None,
            table: table.clone(),
            stream_arn: record.stream_arn.to_string(),
            shard_id: record.shard_id.to_string(),
            sequence_number: record.position.sequence_number.clone(),
            sub_sequence_number: record.position.sub_sequence_number,
            partition_key: record.partition_key.to_string(),
            explicit_hash_key: record.explicit_hash_key.as_deref().map(str::to_string),
            arrival_time: record.arrival_micros.and_then(DateTime::from_timestamp_micros),
            dead_lettered_at: Utc::now(),
            data_size: record.data.len(),
            data: Payload::Inline(record.data.clone()),
        }
    }

    pub fn with_field_path(mut self, path: impl Into<String>) -> Self {
        self.field_path = Some(path.into());
        self
    }

    pub fn position(&self) -> Position {
        Position {
            sequence_number: self.sequence_number.clone(),
            sub_sequence_number: self.sub_sequence_number,
        }
    }

    /// The envelope as one line of JSON, safe for an SQS message body: SQS
    /// accepts only #x9, #xA, #xD, #x20-#xD7FF, #xE000-#xFFFD and
    /// #x10000-#x10FFFF (SendMessage API reference). serde_json already escapes
    /// control characters; U+FFFE and U+FFFF are escaped here.
    ///
    /// # Errors
    /// Only if serde_json fails, which these types do not make it do.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        let json = serde_json::to_string(self)?;
        if json.contains(['\u{FFFE}', '\u{FFFF}']) {
            return Ok(json.replace('\u{FFFE}', "\\ufffe").replace('\u{FFFF}', "\\uffff"));
        }
        Ok(json)
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    const MARK: &str = "…[truncated]";
    let mut end = max.saturating_sub(MARK.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(MARK);
    s
}

/// Serde for raw bytes as standard padded base64 (what `base64 -d` reads).
pub(crate) mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map(Bytes::from).map_err(serde::de::Error::custom)
    }
}

/// Serde for a [`TableName`] as `project.dataset.table`.
pub(crate) mod table_name {
    use crate::table::TableName;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &TableName, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(t)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TableName, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::Arc;

    pub(in crate::dlq) fn record(data: &'static [u8]) -> SourceRecord {
        SourceRecord {
            shard_id: Arc::from("shardId-000000000003"),
            stream_arn: Arc::from("arn:aws:kinesis:us-east-1:123456789012:stream/events"),
            position: Position {
                sequence_number: SequenceNumber::new(
                    "49590338271490256608559692538361571095921575989136588898",
                )
                .unwrap(),
                sub_sequence_number: 2,
            },
            event_index: 0,
            partition_key: Arc::from("user-7"),
            explicit_hash_key: None,
            arrival_micros: Some(1_700_000_000_123_456),
            data: Bytes::from_static(data),
        }
    }

    #[test]
    fn envelope_has_the_documented_fields() {
        let table: TableName = "p.d.t".parse().unwrap();
        let letter =
            DeadLetter::new(&record(b"{not json"), &table, Reason::InvalidJson, "expected value")
                .with_field_path("$");
        let v: serde_json::Value = serde_json::from_str(&letter.to_json().unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["reason"], "invalid_json");
        assert_eq!(v["table"], "p.d.t");
        assert_eq!(v["shard_id"], "shardId-000000000003");
        assert_eq!(
            v["sequence_number"],
            "49590338271490256608559692538361571095921575989136588898"
        );
        assert_eq!(v["sub_sequence_number"], 2);
        assert_eq!(v["arrival_time"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["explicit_hash_key"], serde_json::Value::Null);
        assert_eq!(v["data_size"], 9);
        assert_eq!(v["data_base64"], "e25vdCBqc29u");
        assert!(v.get("data_s3").is_none());
        let back: DeadLetter = serde_json::from_value(v).unwrap();
        assert_eq!(back, letter);
    }

    #[test]
    fn pointer_payload_round_trips() {
        let table: TableName = "p.d.t".parse().unwrap();
        let mut letter = DeadLetter::new(&record(b"x"), &table, Reason::RowTooLarge, "big");
        letter.data = Payload::S3("s3://b/k.bin".into());
        let json = letter.to_json().unwrap();
        assert!(json.contains(r#""data_s3":"s3://b/k.bin""#), "{json}");
        assert!(!json.contains("data_base64"));
        assert_eq!(serde_json::from_str::<DeadLetter>(&json).unwrap(), letter);
    }

    #[test]
    fn escapes_what_sqs_refuses_and_truncates_errors() {
        let table: TableName = "p.d.t".parse().unwrap();
        let letter =
            DeadLetter::new(&record(b"x"), &table, Reason::SchemaMismatch, "bad \u{FFFF} é");
        let json = letter.to_json().unwrap();
        assert!(!json.contains('\u{FFFF}') && json.contains("\\uffff"));
        assert_eq!(serde_json::from_str::<DeadLetter>(&json).unwrap().error, "bad \u{FFFF} é");
        let long = "é".repeat(MAX_ERROR_BYTES);
        let cut = DeadLetter::new(&record(b"x"), &table, Reason::SchemaMismatch, long);
        assert!(cut.error.len() <= MAX_ERROR_BYTES && cut.error.ends_with("[truncated]"));
    }
}
