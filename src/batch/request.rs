//! One AppendRows request builder and one byte budget for every path that
//! appends (exactly-once, at-least-once / CDC, the backfill).
//!
//! `BATCH_MAX_BYTES` bounds the *whole* encoded `AppendRowsRequest`. Any
//! request may go out as a connection's first — a reconnect resends what was
//! in flight on a new connection — so every request is budgeted as a first
//! one: the stream name, the offset, the trace id and the writer schema all
//! count, with the rows envelope and each row's field key and length varint.

use bytes::Bytes;

use super::{BatchError, BatchLimits, MIN_ROW_ROOM_BYTES, Piece, cut};
use crate::bigquery::{AppendRequest, WriterSchema};
use crate::rows::{EncodeError, Encoder, WriterSchema as RowsWriterSchema};
use crate::table::TableName;

/// Room kept for the write-stream id after `<table>/streams/`: the service's
/// ids are under 100 characters, `_default` is 8.
const STREAM_ID_ROOM: usize = 256;

/// `offset` is a `google.protobuf.Int64Value`: field key, length, inner key,
/// and a varint of at most 10 bytes.
const OFFSET_FIELD_BYTES: usize = 1 + 1 + 1 + 10;

/// The writer schema an appender sends on each connection's first request.
///
/// Proto descriptors travel as the encoder's own bytes: prost's typed
/// `DescriptorProto` drops field options, and with them the `column_name`
/// extension that columns whose names are not proto identifiers need.
pub fn writer_schema(encoder: &Encoder) -> WriterSchema {
    match encoder.writer_schema() {
        RowsWriterSchema::Proto(_) => {
            WriterSchema::ProtoDescriptorBytes(encoder.proto_descriptor_bytes().to_vec())
        }
        RowsWriterSchema::Arrow(s) => WriterSchema::Arrow(s),
    }
}

/// The bytes one length-delimited field of `len` bytes takes: key, length, body.
fn field_bytes(len: usize) -> usize {
    1 + varint_len(len) + len
}

fn varint_len(mut v: usize) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// The byte budget of a table's requests under `BATCH_MAX_BYTES`: what is
/// fixed per request, and the room left for rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestBudget {
    limits: BatchLimits,
    overhead: usize,
}

impl RequestBudget {
    /// The budget for requests of `encoder`'s rows to any write stream of `table`.
    pub fn new(limits: &BatchLimits, encoder: &Encoder, table: &TableName) -> Self {
        let stream_name = table.path().len() + "/streams/".len() + STREAM_ID_ROOM;
        let schema = match writer_schema(encoder) {
            WriterSchema::ProtoDescriptorBytes(d) => field_bytes(field_bytes(d.len())),
            WriterSchema::Arrow(s) => field_bytes(prost::Message::encoded_len(&s)),
        };
        let overhead = field_bytes(stream_name)
            + OFFSET_FIELD_BYTES
            + field_bytes(crate::bigquery::TRACE_ID.len())
            + schema
            + encoder.envelope_bytes();
        Self { limits: *limits, overhead }
    }

    /// Bytes of every request that are not rows.
    pub fn overhead(&self) -> usize {
        self.overhead
    }

    /// Bytes left for rows (as [`Encoder::row_bytes`] counts them).
    pub fn row_room(&self) -> usize {
        self.limits.max_bytes.saturating_sub(self.overhead)
    }

    /// The limits with `max_bytes` as the room for rows, for [`cut`] and
    /// [`super::Batcher`].
    pub fn row_limits(&self) -> BatchLimits {
        BatchLimits { max_bytes: self.row_room(), ..self.limits }
    }

    /// Whether a row of `len` encoded bytes fits in a request of its own.
    pub fn fits(&self, encoder: &Encoder, len: usize) -> bool {
        encoder.row_bytes(len) <= self.row_room()
    }

    /// Rows of these encoded lengths, in order, cut into requests (see [`cut`]).
    pub fn cut(&self, encoder: &Encoder, row_lens: impl IntoIterator<Item = usize>) -> Vec<Piece> {
        cut(row_lens.into_iter().map(|l| encoder.row_bytes(l)), &self.row_limits())
    }

    /// Checked once the table's schema is known (cold start, backfill start).
    ///
    /// # Errors
    /// [`BatchError::NoRoomForRows`]: `BATCH_MAX_BYTES` leaves less than
    /// [`MIN_ROW_ROOM_BYTES`] for rows after this table's overhead.
    pub fn check(&self) -> Result<(), BatchError> {
        if self.row_room() < MIN_ROW_ROOM_BYTES {
            return Err(BatchError::NoRoomForRows {
                max_bytes: self.limits.max_bytes,
                overhead: self.overhead,
                room: self.row_room(),
            });
        }
        Ok(())
    }
}

/// The AppendRows request carrying `rows` (as [`Encoder::encode`] made them,
/// shared, not copied) at `offset` (`None` on `_default`).
///
/// # Errors
/// [`EncodeError`] only for an Arrow library failure.
pub fn build_request(
    encoder: &Encoder,
    rows: &[Bytes],
    offset: Option<i64>,
) -> Result<AppendRequest, EncodeError> {
    Ok(AppendRequest {
        offset,
        bytes: encoder.request_bytes(rows.iter().map(Bytes::len)),
        row_count: rows.len(),
        rows: encoder.request_rows(rows, false)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bigquery::first_request_len;
    use crate::pb::storage::table_field_schema::{Mode, Type};
    use crate::pb::storage::{TableFieldSchema, TableSchema};
    use crate::rows::{EncoderOptions, RecordMeta, RowFormat};
    use proptest::prelude::*;
    use std::time::Duration;

    fn encoder(format: RowFormat) -> Encoder {
        let col = |name: &str, t: Type| TableFieldSchema {
            name: name.into(),
            r#type: t as i32,
            mode: Mode::Nullable as i32,
            ..Default::default()
        };
        let schema = TableSchema {
            fields: vec![col("id", Type::Int64), col("name", Type::String), col("n", Type::Double)],
        };
        let options = EncoderOptions { format, ..Default::default() };
        Encoder::new(&schema, options).expect("schema")
    }

    fn table() -> TableName {
        TableName::new("a-project-with-a-long-name", "some_dataset", "events").expect("table")
    }

    #[test]
    fn too_small_a_budget_is_refused_naming_the_variable() {
        let e = encoder(RowFormat::Proto);
        let tight = BatchLimits { max_bytes: 1024, ..BatchLimits::default() };
        let err = RequestBudget::new(&tight, &e, &table()).check().unwrap_err();
        assert!(err.to_string().contains("BATCH_MAX_BYTES"), "{err}");
        assert!(RequestBudget::new(&BatchLimits::default(), &e, &table()).check().is_ok());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Every request cut and built under the budget, encoded as a
        /// connection's first (stream name, trace id, writer schema, the
        /// largest offset), stays within `BATCH_MAX_BYTES`.
        #[test]
        fn every_request_stays_within_batch_max_bytes(
            lens in prop::collection::vec(0usize..3000, 1..400),
            max_bytes in 2_000usize..40_000,
            max_rows in 1usize..500,
            arrow in any::<bool>(),
        ) {
            let e = encoder(if arrow { RowFormat::Arrow } else { RowFormat::Proto });
            let limits = BatchLimits { max_rows, max_bytes, window: Duration::ZERO };
            let budget = RequestBudget::new(&limits, &e, &table());
            let rows: Vec<Bytes> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let json = format!(r#"{{"id":{i},"name":"{}","n":{}.5}}"#, "x".repeat(n), i);
                    let mut out = Vec::new();
                    e.encode(json.as_bytes(), &RecordMeta::default(), &mut out).map(|()| Bytes::from(out))
                })
                .collect::<Result<_, _>>()
                .expect("rows encode");
            let stream = format!("{}/streams/{}", table().path(), "s".repeat(STREAM_ID_ROOM));
            let schema = writer_schema(&e);
            let mut covered = 0;
            for piece in budget.cut(&e, rows.iter().map(Bytes::len)) {
                match piece {
                    Piece::Request(range) => {
                        prop_assert_eq!(range.start, covered);
                        covered = range.end;
                        let request = build_request(&e, &rows[range], Some(i64::MAX)).expect("request");
                        let len = first_request_len(&request, &stream, &schema).expect("same kind");
                        prop_assert!(len <= max_bytes, "{} > {}", len, max_bytes);
                    }
                    Piece::TooLarge { index, .. } => {
                        prop_assert_eq!(index, covered);
                        covered += 1;
                        prop_assert!(!budget.fits(&e, rows[index].len()));
                    }
                }
            }
            prop_assert_eq!(covered, rows.len());
        }
    }
}
