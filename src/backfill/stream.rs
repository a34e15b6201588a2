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

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::BackfillError;
use super::encode::{Encoded, to_encode};
use super::resolve::Fate;
use crate::batch::{BatchLimits, RequestBudget};
use crate::bigquery::{AppendOutcome, Appender};
use crate::delivery::plan::Kind;
use crate::delivery::streaming::{self, Produced, Role};
use crate::dlq::DeadLetter;
use crate::rows::{EncodeError, Encoder};
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
/// `open` creates, with the Lambda's streamed producer
/// (`delivery::streaming::produce`): every row goes, from offset 0. `open`
/// runs when the first request is cut, so an object whose records all turn
/// out to be dead letters creates no stream.
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
    let budget = RequestBudget::new(limits, encoder, table);
    let inputs = to_encode(records, fates, excluded);
    let every_row = |item: &crate::delivery::prepare::Item<'_>| {
        if item.kind == Kind::Good { Role::Row } else { Role::Skip }
    };
    let produce = streaming::produce(inputs, encoder, budget, table, Some(0), every_row, tx, None);
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
    let (produced, appended) = tokio::join!(produce, append);
    let (stream, outcomes) = appended?;
    // Every good item is a row, in order: indexes into `segment` are row
    // indexes, and offsets.
    let Produced { items, requests: ranges, error, .. } = produced;
    let encoded = Encoded::from_items(items, fates, excluded);
    Ok(Streamed { encoded, stream, ranges, outcomes, error })
}
