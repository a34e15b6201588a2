//! The vocabulary of appending: one request in, one outcome out.
//!
//! An [`AppendOutcome`] says, for one AppendRows request, whether its rows are
//! in the stream, are certainly not, or nobody knows (in doubt). The delivery
//! protocol builds its exactly-once decisions on exactly these distinctions,
//! so no outcome claims more than the service said.

use crate::pb::storage::RowError as PbRowError;
use crate::pb::storage::append_rows_request::Rows;

use super::error::AppendError;
use super::wire::{
    PreparedRows, WireAppendRowsRequest, WireArrowData, WireProtoData, WireProtoSchema, WireRows,
    WriterSchema,
};
use crate::retry::RetryPolicy;

/// One AppendRows request, before the connection decides whether it is the first
/// (which carries `write_stream` and the writer schema).
#[derive(Clone, Debug, PartialEq)]
pub struct AppendRequest {
    /// Row offset of the first row; `None` on `_default` (offsets are not allowed there).
    pub offset: Option<i64>,
    /// The rows, without `writer_schema`: the appender adds it when needed.
    pub rows: Rows,
    /// Rows in `rows`, to check `row_errors` indexes.
    pub row_count: usize,
    /// Serialized size of the request, for the in-flight byte bound.
    pub bytes: usize,
}

/// What became of one request.
#[derive(Clone, Debug)]
pub enum AppendOutcome {
    /// Acknowledged; `offset` is where it landed (unset on `_default`).
    Appended { offset: Option<i64> },
    /// Offset streams only: the service already holds rows at this offset, so an
    /// earlier attempt wrote exactly these rows (DESIGN.md invariant 3).
    AlreadyExists,
    /// Nothing of this request was written; these rows are bad. Indexes are into it.
    RowErrors(Vec<RowError>),
    /// Definitely not written: the service answered with a permanent error, or with a
    /// transient one after the retry budget ran out, and no earlier send of the request
    /// went unanswered.
    Failed(AppendError),
    /// Sent, but no definitive answer came: it may or may not be in the stream. Also a
    /// refusal of a resend whose earlier send went unanswered (the refusal answers
    /// only its own send: a stream lost in between cannot say ALREADY_EXISTS).
    InDoubt(AppendError),
    /// Never sent (an earlier request did not succeed, or the deadline came first).
    NotSent,
}

impl AppendOutcome {
    /// Whether the request's rows are known to be in the stream.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Appended { .. } | Self::AlreadyExists)
    }
}

/// A row the service rejected (`AppendRowsResponse.row_errors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    /// 0-based index of the row within its request.
    pub index: usize,
    /// The service's explanation, e.g. which field is wrong.
    pub message: String,
}

impl RowError {
    /// Checks the service's index against the request; `None` if it is out of range.
    pub(crate) fn from_pb(e: &PbRowError, row_count: usize) -> Option<Self> {
        let index = usize::try_from(e.index).ok().filter(|&i| i < row_count)?;
        Some(Self { index, message: e.message.clone() })
    }
}

/// The `rows` oneof carrying only the writer schema; converts into a [`WriterSchema`].
pub type WriterSchemaRows = Rows;

/// Bounds and retry behaviour of one [`super::Appender`].
#[derive(Clone, Debug, PartialEq)]
pub struct AppenderOptions {
    /// Requests sent and not yet answered. 1 disables pipelining.
    pub max_inflight_requests: usize,
    /// Bytes sent and not yet answered (a single larger request still goes alone).
    pub max_inflight_bytes: usize,
    pub retry: RetryPolicy,
}

impl Default for AppenderOptions {
    /// Java's per-connection in-flight limits: 1000 requests, 100 MiB (fact sheet §2.8).
    fn default() -> Self {
        Self {
            max_inflight_requests: 1000,
            max_inflight_bytes: 100 * 1024 * 1024,
            retry: RetryPolicy::default(),
        }
    }
}

/// Identifies our writes in the service's logs; only a connection's first counts (§1.3).
pub(crate) const TRACE_ID: &str = concat!("kinesis-bigquery/", env!("CARGO_PKG_VERSION"));

/// Builds the wire request; the first on a connection names the stream and carries
/// the writer schema, later ones omit both (fact sheet §2.3).
pub(crate) fn wire_request(
    offset: Option<i64>,
    rows: &PreparedRows,
    first: Option<(&str, &WriterSchema)>,
) -> Result<WireAppendRowsRequest, AppendError> {
    let (write_stream, trace_id) = match first {
        Some((stream, _)) => (stream.to_string(), TRACE_ID.to_string()),
        None => (String::new(), String::new()),
    };
    let schema = first.map(|(_, schema)| schema);
    let rows = match (rows, schema) {
        (PreparedRows::Proto(rows), None) => {
            WireRows::ProtoRows(WireProtoData { writer_schema: None, rows: rows.clone() })
        }
        (PreparedRows::Proto(rows), Some(WriterSchema::ProtoDescriptorBytes(bytes))) => {
            WireRows::ProtoRows(WireProtoData {
                writer_schema: Some(WireProtoSchema { proto_descriptor: bytes.clone() }),
                rows: rows.clone(),
            })
        }
        (PreparedRows::Arrow(rows), None) => {
            WireRows::ArrowRows(WireArrowData { writer_schema: None, rows: rows.clone() })
        }
        (PreparedRows::Arrow(rows), Some(WriterSchema::Arrow(s))) => {
            WireRows::ArrowRows(WireArrowData {
                writer_schema: Some(s.clone()),
                rows: rows.clone(),
            })
        }
        _ => return Err(AppendError::FormatMismatch),
    };
    Ok(WireAppendRowsRequest { write_stream, offset, rows: Some(rows), trace_id })
}

/// The encoded size of `request` sent as a connection's first to `write_stream`
/// (stream name, trace id and writer schema included): what the service's request
/// size limit counts, at its largest.
///
/// # Errors
/// [`AppendError::FormatMismatch`]: the rows and the writer schema differ in kind.
pub fn first_request_len(
    request: &AppendRequest,
    write_stream: &str,
    writer_schema: &WriterSchema,
) -> Result<usize, AppendError> {
    use prost::Message as _;
    let rows = PreparedRows::from(request.rows.clone());
    Ok(wire_request(request.offset, &rows, Some((write_stream, writer_schema)))?.encoded_len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::storage::append_rows_request::ProtoData;
    use crate::pb::storage::{ArrowSchema, ProtoRows, ProtoSchema};

    fn proto(rows: Vec<Vec<u8>>) -> Rows {
        Rows::ProtoRows(ProtoData {
            writer_schema: None,
            rows: Some(ProtoRows { serialized_rows: rows.into_iter().map(Into::into).collect() }),
        })
    }

    fn schema() -> WriterSchema {
        WriterSchema::from(Rows::ProtoRows(ProtoData {
            writer_schema: Some(ProtoSchema { proto_descriptor: None }),
            rows: None,
        }))
    }

    #[test]
    fn first_request_carries_stream_and_schema() {
        let req =
            AppendRequest { offset: Some(7), rows: proto(vec![vec![1]]), row_count: 1, bytes: 3 };
        let prepared = PreparedRows::from(req.rows.clone());
        let first = wire_request(req.offset, &prepared, Some(("s", &schema()))).unwrap();
        assert_eq!(first.write_stream, "s");
        assert_eq!(first.offset, Some(7));
        assert_eq!(first.trace_id, TRACE_ID);
        let Some(WireRows::ProtoRows(d)) = first.rows else { panic!() };
        assert!(d.writer_schema.is_some());
        assert_eq!(d.rows.unwrap().serialized_rows, vec![vec![1]]);

        let later = wire_request(req.offset, &prepared, None).unwrap();
        assert_eq!((later.write_stream.as_str(), later.trace_id.as_str()), ("", ""));
        let Some(WireRows::ProtoRows(d)) = later.rows else { panic!() };
        assert!(d.writer_schema.is_none());
    }

    #[test]
    fn format_mismatch_is_refused() {
        let req = AppendRequest { offset: None, rows: proto(vec![]), row_count: 0, bytes: 0 };
        let arrow = WriterSchema::Arrow(ArrowSchema { serialized_schema: vec![1] });
        let prepared = PreparedRows::from(req.rows);
        let refused = wire_request(None, &prepared, Some(("s", &arrow)));
        assert!(matches!(refused, Err(AppendError::FormatMismatch)));
    }

    #[test]
    fn row_error_indexes_are_checked() {
        let e = |index| PbRowError { index, code: 1, message: "bad".into() };
        assert_eq!(RowError::from_pb(&e(2), 3), Some(RowError { index: 2, message: "bad".into() }));
        assert_eq!(RowError::from_pb(&e(3), 3), None);
        assert_eq!(RowError::from_pb(&e(-1), 3), None);
    }
}
