//! The pre-cut append round, of every path that sends rows already encoded
//! (exactly-once's later rounds, at-least-once's re-sends, the backfill's
//! encode-first replay): the rows cut into AppendRows requests at
//! consecutive offsets (or at the stream's end), sent through the appender;
//! and, for exactly-once, the answers judged into what the protocol may
//! conclude about the stream's end (DESIGN.md, invariants 3, 6). Rows
//! encoded while they are sent go through `streaming.rs`.

use std::ops::Range;

use bytes::Bytes;
use tokio::time::Instant;

use super::DeliveryDeps;
use super::crash::{self, Boundary, Crash, CrashPoints};
use crate::batch::{self, BatchLimits, Piece, RequestBudget};
use crate::bigquery::{
    AppendError, AppendOutcome, AppendRequest, Appender, Class, Classify, RowError,
};
use crate::rows::{EncodeError, Encoder};
use crate::spill::SpillReason;
use crate::table::TableName;

/// One request of a round: the rows `rows` (indexes into the round's rows)
/// at `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Cut {
    pub offset: i64,
    pub rows: Range<usize>,
}

impl Cut {
    pub fn end(&self) -> i64 {
        self.offset + self.rows.len() as i64
    }
}

/// The one pre-cut append round of every path (exactly-once's later rounds,
/// at-least-once's re-sends, the backfill's encode-first replay): encoded
/// `rows` cut under `limits` into requests of `table`, at consecutive
/// offsets from `first_offset`, or at the stream's end without one (the
/// cuts then count from 0). Returns each request with its cut.
///
/// # Errors
/// [`EncodeError`] when the encoder cannot build a request of its own rows
/// (only an Arrow library failure can do that).
pub(crate) fn cut_requests(
    rows: &[Bytes],
    first_offset: Option<i64>,
    encoder: &Encoder,
    limits: &BatchLimits,
    table: &TableName,
) -> Result<(Vec<Cut>, Vec<AppendRequest>), EncodeError> {
    let cuts = cut(rows.iter().map(Bytes::len), first_offset.unwrap_or(0), encoder, limits, table);
    let requests = cuts
        .iter()
        .map(|c| {
            let rows = rows.get(c.rows.clone()).unwrap_or_default();
            batch::build_request(encoder, rows, first_offset.map(|_| c.offset))
        })
        .collect::<Result<_, _>>()?;
    Ok((cuts, requests))
}

/// Cuts rows of these encoded lengths, starting at `first_offset`, into
/// requests of `table` under `limits` (the micro-batcher's deterministic cut,
/// with the one request budget). Rows too large for a request were
/// dead-lettered when they were encoded; one that slipped through still gets
/// a request of its own, for BigQuery to refuse.
fn cut(
    row_lens: impl Iterator<Item = usize>,
    first_offset: i64,
    encoder: &Encoder,
    limits: &BatchLimits,
    table: &TableName,
) -> Vec<Cut> {
    RequestBudget::new(limits, encoder, table)
        .cut(encoder, row_lens)
        .into_iter()
        .map(|piece| match piece {
            Piece::Request(rows) => rows,
            Piece::TooLarge { index, .. } => index..index + 1,
        })
        .map(|rows| Cut { offset: first_offset + rows.start as i64, rows })
        .collect()
}

/// Why a pre-cut round stopped before all its answers were in.
pub(crate) enum Stopped {
    /// A crash point (test hook): requests before it were sent and settled.
    Crashed(Crash),
    /// A request could not be built; nothing was sent.
    Unbuilt(EncodeError),
}

/// A pre-cut round on `stream`, through the deps' appender for it: `rows`
/// cut and built ([`cut_requests`]) and sent ([`send`]). Returns each
/// request's cut and answer.
///
/// # Errors
/// [`Stopped`].
pub(crate) async fn round(
    deps: &DeliveryDeps,
    stream: &str,
    encoder: &Encoder,
    table: &TableName,
    rows: &[Bytes],
    first_offset: Option<i64>,
    deadline: Instant,
) -> Result<(Vec<Cut>, Vec<AppendOutcome>), Stopped> {
    let (cuts, requests) =
        cut_requests(rows, first_offset, encoder, &deps.limits, table).map_err(Stopped::Unbuilt)?;
    let mut appender = deps.take_appender(stream, encoder).await;
    let sent = send(&mut appender, requests, deadline, deps.crash.as_deref()).await;
    deps.put_appender(appender).await;
    Ok((cuts, sent.map_err(Stopped::Crashed)?))
}

/// What a round proves.
#[derive(Clone, Debug)]
pub(crate) enum Verdict {
    /// Every request is in, and the stream ends right after the last one.
    AllIn { end: i64 },
    /// Requests `..landed` are in; request `request` at `offset` was refused
    /// for these rows (nothing of it was written). `at_end`: `offset` is the
    /// stream's known end (then `request == landed`), so the rows after it
    /// may be re-mapped right away.
    RowErrors { landed: usize, request: usize, offset: i64, errors: Vec<RowError>, at_end: bool },
    /// Requests `..landed` are in; the stream ends at `end`, so nothing from
    /// request `landed` on was written.
    NotWritten { landed: usize, end: i64, reason: SpillReason, error: String },
    /// Requests `..landed` are in; whether later ones are is not known.
    Unknown { landed: usize, error: String },
}

/// Judges the answers. `known_end` is the stream's end before the round, if
/// this invocation knows it exactly.
pub(crate) fn judge(cuts: &[Cut], outcomes: &[AppendOutcome], known_end: Option<i64>) -> Verdict {
    let mut end = known_end;
    let mut landed = 0;
    let mut last_error = String::new();
    for (i, (cut, outcome)) in cuts.iter().zip(outcomes).enumerate() {
        let at_end = end == Some(cut.offset);
        match outcome {
            // Written at exactly this offset: the stream ended here before, so
            // every offset below is written too (offsets only grow).
            AppendOutcome::Appended { .. } => {
                end = Some(cut.end());
                landed = i + 1;
            }
            // Only the first row is proven; a later Appended proves the rest.
            AppendOutcome::AlreadyExists => {
                end = None;
                last_error = format!("offset {} already exists", cut.offset);
            }
            AppendOutcome::RowErrors(errors) if !errors.is_empty() => {
                let errors = errors.clone();
                return Verdict::RowErrors {
                    landed,
                    request: i,
                    offset: cut.offset,
                    errors,
                    at_end,
                };
            }
            AppendOutcome::Failed(e) if at_end && !needs_resolution(e) => {
                let reason = match e {
                    AppendError::DeadlineExceeded => SpillReason::DeadlineNear,
                    e if e.class() == Class::Permanent => SpillReason::Rejected,
                    _ => SpillReason::RetriesExhausted,
                };
                return Verdict::NotWritten {
                    landed,
                    end: cut.offset,
                    reason,
                    error: e.to_string(),
                };
            }
            AppendOutcome::NotSent if at_end => {
                return Verdict::NotWritten {
                    landed,
                    end: cut.offset,
                    reason: SpillReason::RetriesExhausted,
                    error: if last_error.is_empty() { "not sent".into() } else { last_error },
                };
            }
            AppendOutcome::RowErrors(_) => {
                return Verdict::Unknown { landed, error: "row errors without rows".into() };
            }
            AppendOutcome::Failed(e) | AppendOutcome::InDoubt(e) => {
                return Verdict::Unknown { landed, error: e.to_string() };
            }
            AppendOutcome::NotSent => {
                return Verdict::Unknown {
                    landed,
                    error: "not sent after an unresolved append".into(),
                };
            }
        }
    }
    match end {
        Some(end) if landed == cuts.len() => Verdict::AllIn { end },
        _ => Verdict::Unknown { landed, error: last_error },
    }
}

/// The request's offset is beyond the stream's end: nothing of it was
/// written, and the stream holds no row at or after that offset.
pub(crate) fn is_out_of_range(outcome: &AppendOutcome) -> bool {
    use crate::pb::storage::storage_error::StorageErrorCode as S;
    let AppendOutcome::Failed(e) = outcome else { return false };
    e.status().is_some_and(|s| {
        s.code == tonic::Code::OutOfRange || s.storage_code() == Some(S::OffsetOutOfRange)
    })
}

/// Errors that say the stream is not where the state thinks (finalized by
/// the backfill, gone, or ending elsewhere): only its row count can tell.
fn needs_resolution(e: &AppendError) -> bool {
    use crate::pb::storage::storage_error::StorageErrorCode as S;
    let Some(status) = e.status() else { return false };
    matches!(status.code, tonic::Code::OutOfRange | tonic::Code::AlreadyExists)
        || matches!(
            status.storage_code(),
            Some(
                S::StreamFinalized
                    | S::StreamNotFound
                    | S::InvalidStreamState
                    | S::OffsetOutOfRange
                    | S::OffsetAlreadyExists
            )
        )
}

/// Sends the round. A crash point inside it sends and settles the requests
/// before it, then stops (a crash after those answers arrived).
///
/// # Errors
/// [`Crash`] from the hook.
pub(crate) async fn send(
    appender: &mut Appender,
    mut requests: Vec<AppendRequest>,
    deadline: Instant,
    hook: Option<&CrashPoints>,
) -> Result<Vec<AppendOutcome>, Crash> {
    let mut crashed = None;
    for i in 0..requests.len() {
        if let Err(c) = crash::pass(hook, Boundary::BeforeAppend(i)) {
            crashed = Some((i, c));
            break;
        }
    }
    if let Some((i, c)) = crashed {
        requests.truncate(i);
        if !requests.is_empty() {
            appender.append_all(requests, deadline).await;
        }
        return Err(c);
    }
    let outcomes = appender.append_all(requests, deadline).await;
    crash::pass(hook, Boundary::AfterAppendRound)?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bigquery::ServerStatus;

    fn cuts(sizes: &[usize], first: i64) -> Vec<Cut> {
        let mut at = 0;
        let mut off = first;
        sizes
            .iter()
            .map(|&n| {
                let c = Cut { offset: off, rows: at..at + n };
                at += n;
                off += n as i64;
                c
            })
            .collect()
    }

    fn failed(code: tonic::Code) -> AppendError {
        AppendError::Rejected(ServerStatus { code, message: "x".into(), storage: None })
    }

    /// The pre-cut round every path shares: cuts cover the rows in order
    /// under `BATCH_MAX_ROWS`, each request carries its cut's offset only
    /// when the round has offsets (a `_default` stream refuses them).
    #[test]
    fn cut_requests_cover_every_row_at_its_offset_or_none() {
        use crate::pb::storage::TableSchema;
        use crate::pb::storage::table_field_schema::{Mode, Type};
        use crate::rows::tests::col;
        use crate::rows::{EncoderOptions, RecordMeta};
        let schema = TableSchema { fields: vec![col("id", Type::Int64, Mode::Nullable)] };
        let encoder = Encoder::new(&schema, EncoderOptions::default()).expect("schema");
        let table = TableName::new("p", "d", "t").expect("table");
        let rows: Vec<Bytes> = (0..7)
            .map(|i| {
                let mut row = Vec::new();
                let json = format!(r#"{{"id":{i}}}"#);
                encoder.encode(json.as_bytes(), &RecordMeta::default(), &mut row).expect("row");
                Bytes::from(row)
            })
            .collect();
        let limits = BatchLimits { max_rows: 3, ..BatchLimits::default() };
        for first in [Some(40), None] {
            let (cuts, requests) =
                cut_requests(&rows, first, &encoder, &limits, &table).expect("requests");
            let ranges: Vec<Range<usize>> = cuts.iter().map(|c| c.rows.clone()).collect();
            assert_eq!(ranges, [0..3, 3..6, 6..7]);
            let offsets: Vec<Option<i64>> = requests.iter().map(|r| r.offset).collect();
            let counts: Vec<usize> = requests.iter().map(|r| r.row_count).collect();
            assert_eq!(counts, [3, 3, 1]);
            match first {
                Some(_) => assert_eq!(offsets, [Some(40), Some(43), Some(46)]),
                None => assert_eq!(offsets, [None, None, None]),
            }
        }
    }

    #[test]
    fn all_appended_proves_the_end() {
        let c = cuts(&[2, 3], 10);
        let o = vec![
            AppendOutcome::Appended { offset: Some(10) },
            AppendOutcome::Appended { offset: Some(12) },
        ];
        assert!(matches!(judge(&c, &o, None), Verdict::AllIn { end: 15 }));
    }

    #[test]
    fn already_exists_is_proven_only_by_a_later_append() {
        let c = cuts(&[2, 3], 10);
        let tail = vec![AppendOutcome::Appended { offset: Some(10) }, AppendOutcome::AlreadyExists];
        assert!(matches!(judge(&c, &tail, None), Verdict::Unknown { landed: 1, .. }));
        let head = vec![AppendOutcome::AlreadyExists, AppendOutcome::Appended { offset: Some(12) }];
        assert!(matches!(judge(&c, &head, None), Verdict::AllIn { end: 15 }));
    }

    #[test]
    fn row_errors_say_whether_the_end_is_known() {
        let c = cuts(&[2, 3], 10);
        let errs = vec![RowError { index: 1, message: "bad".into() }];
        let o = vec![
            AppendOutcome::Appended { offset: Some(10) },
            AppendOutcome::RowErrors(errs.clone()),
        ];
        assert!(matches!(
            judge(&c, &o, None),
            Verdict::RowErrors { landed: 1, offset: 12, at_end: true, .. }
        ));
        let late = vec![AppendOutcome::AlreadyExists, AppendOutcome::RowErrors(errs.clone())];
        assert!(matches!(
            judge(&c, &late, None),
            Verdict::RowErrors { landed: 0, request: 1, offset: 12, at_end: false, .. }
        ));
        let first = vec![AppendOutcome::RowErrors(errs), AppendOutcome::NotSent];
        assert!(matches!(
            judge(&c, &first, None),
            Verdict::RowErrors { landed: 0, at_end: false, .. }
        ));
        assert!(matches!(
            judge(&c, &first, Some(10)),
            Verdict::RowErrors { landed: 0, offset: 10, at_end: true, .. }
        ));
    }

    #[test]
    fn failures_at_a_known_end_are_not_written_otherwise_unknown() {
        let c = cuts(&[2, 3], 10);
        let o = vec![
            AppendOutcome::Appended { offset: Some(10) },
            AppendOutcome::Failed(failed(tonic::Code::PermissionDenied)),
        ];
        match judge(&c, &o, None) {
            Verdict::NotWritten { landed: 1, end: 12, reason, .. } => {
                assert_eq!(reason, SpillReason::Rejected)
            }
            v => panic!("{v:?}"),
        }
        let lost = vec![
            AppendOutcome::Appended { offset: Some(10) },
            AppendOutcome::InDoubt(failed(tonic::Code::Unavailable)),
        ];
        assert!(matches!(judge(&c, &lost, None), Verdict::Unknown { landed: 1, .. }));
        let finalized =
            vec![AppendOutcome::Failed(failed(tonic::Code::OutOfRange)), AppendOutcome::NotSent];
        assert!(matches!(judge(&c, &finalized, Some(10)), Verdict::Unknown { landed: 0, .. }));
        let down = vec![AppendOutcome::NotSent, AppendOutcome::NotSent];
        assert!(matches!(judge(&c, &down, None), Verdict::Unknown { landed: 0, .. }));
        assert!(matches!(
            judge(&c, &down, Some(10)),
            Verdict::NotWritten { landed: 0, end: 10, .. }
        ));
    }
}
