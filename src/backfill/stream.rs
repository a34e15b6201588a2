//! Step 3 as a pipeline: an object's records are encoded one at a time and
//! the micro-batcher hands each request to the PENDING stream's appender as
//! soon as it is cut (rows, bytes or `BATCH_WINDOW_MS`), so the first
//! AppendRows goes out while the rest of the object is still being encoded.
//!
//! A time-based cut is safe here, unlike in the Lambda's exactly-once path:
//! each attempt writes a stream of its own from offset 0, and nothing of it
//! is visible before the commit, so no later attempt depends on how an
//! earlier one cut its requests.

use std::ops::Range;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::BackfillError;
use super::encode::{Encoded, dead_letter, to_encode};
use super::resolve::Fate;
use crate::batch::{BatchLimits, Batcher, RequestBudget, build_request};
use crate::bigquery::{AppendOutcome, AppendRequest, Appender};
use crate::dlq::{Cause, DeadLetter};
use crate::rows::{EncodeError, Encoder, RecordMeta};
use crate::source::SourceRecord;
use crate::table::TableName;

/// What the streamed step 3 produced.
pub(super) struct Streamed {
    /// Every record encoded (rows, dead letters, records skipped), as
    /// [`super::encode::encode`] would have made it.
    pub encoded: Encoded,
    /// The PENDING stream, once a request was cut (`None`: no row to write).
    pub stream: Option<String>,
    /// The rows (indexes into `encoded.rows`, also their offsets) of each
    /// request, in order.
    pub ranges: Vec<Range<usize>>,
    /// One outcome per request.
    pub outcomes: Vec<AppendOutcome>,
    /// A request could not be built; nothing was sent after it.
    pub error: Option<EncodeError>,
}

/// Encodes the records whose fate is [`Fate::Replay`] and that are not in
/// `excluded`, appending their rows at explicit offsets to the stream
/// `open` creates. `open` runs when the first request is cut, so an object
/// whose records all turn out to be dead letters creates no stream.
///
/// # Errors
/// What `open` returned; the records are still all encoded.
#[allow(clippy::too_many_arguments)]
pub(super) async fn encode_and_append<Open, Opened>(
    encoder: &Encoder,
    table: &TableName,
    limits: &BatchLimits,
    records: &[SourceRecord],
    fates: &[Fate],
    excluded: &[(usize, DeadLetter)],
    open: Open,
    deadline: Instant,
) -> Result<Streamed, BackfillError>
where
    Open: FnOnce() -> Opened,
    Opened: Future<Output = Result<(String, Appender), BackfillError>>,
{
    let (tx, mut cut) = mpsc::unbounded_channel();
    let produce = produce(encoder, table, limits, records, fates, excluded, tx);
    let append = async {
        type Appended = (Option<String>, Vec<AppendOutcome>);
        let Some(first) = cut.recv().await else {
            return Ok::<Appended, BackfillError>((None, Vec::new()));
        };
        let (stream, mut appender) = open().await?;
        // The appender reads one channel: the first request, then the rest
        // as they are cut.
        let (resend, requests) = mpsc::unbounded_channel();
        let _ = resend.send(first);
        let forward = async move {
            while let Some(request) = cut.recv().await {
                if resend.send(request).is_err() {
                    break;
                }
            }
        };
        let ((), outcomes) = tokio::join!(forward, appender.append_stream(requests, deadline));
        Ok((Some(stream), outcomes))
    };
    let ((encoded, ranges, error), appended) = tokio::join!(produce, append);
    let (stream, outcomes) = appended?;
    Ok(Streamed { encoded, stream, ranges, outcomes, error })
}

async fn produce(
    encoder: &Encoder,
    table: &TableName,
    limits: &BatchLimits,
    records: &[SourceRecord],
    fates: &[Fate],
    excluded: &[(usize, DeadLetter)],
    tx: mpsc::UnboundedSender<AppendRequest>,
) -> (Encoded, Vec<Range<usize>>, Option<EncodeError>) {
    let budget = RequestBudget::new(limits, encoder, table);
    let mut out = Encoded::start(records, fates, excluded);
    let mut sender = Sender { tx: Some(tx), ranges: Vec::new(), error: None };
    let mut batcher: Batcher<usize> = Batcher::new(budget.row_limits());
    for (index, record) in to_encode(records, fates, excluded) {
        let mut row = Vec::new();
        match encoder.encode(&record.data, &RecordMeta::from(record), &mut row) {
            Err(err) => out.dead.push(dead_letter(record, table, &err)),
            Ok(()) if !budget.fits(encoder, row.len()) => {
                out.dead.push(DeadLetter::of(record, table, Cause::RowTooLarge(None)));
            }
            Ok(()) => {
                let at = out.rows.len();
                let bytes = encoder.row_bytes(row.len());
                out.rows.push(Bytes::from(row));
                out.record_of_row.push(index);
                let now = Instant::now();
                if let Ok(Some(full)) = batcher.push(at, bytes, now) {
                    sender.send(encoder, &out.rows, &full).await;
                }
                if batcher.is_due(now) {
                    sender.send(encoder, &out.rows, &batcher.take()).await;
                }
            }
        }
    }
    if !batcher.is_empty() {
        sender.send(encoder, &out.rows, &batcher.take()).await;
    }
    (out, sender.ranges, sender.error)
}

struct Sender {
    tx: Option<mpsc::UnboundedSender<AppendRequest>>,
    ranges: Vec<Range<usize>>,
    error: Option<EncodeError>,
}

impl Sender {
    /// Sends the request of consecutive rows `batch` at their offset, then
    /// yields so the appender (same task) puts it on the wire.
    async fn send(&mut self, encoder: &Encoder, rows: &[Bytes], batch: &[usize]) {
        let (Some(tx), Some(&first), Some(&last)) = (&self.tx, batch.first(), batch.last()) else {
            return;
        };
        let range = first..last + 1;
        let built = build_request(encoder, rows.get(range.clone()).unwrap_or_default(), {
            Some(first as i64)
        });
        match built {
            Ok(request) => match tx.send(request) {
                Ok(()) => self.ranges.push(range),
                Err(_) => self.tx = None,
            },
            Err(e) => {
                self.error = Some(e);
                self.tx = None;
            }
        }
        tokio::task::yield_now().await;
    }
}
