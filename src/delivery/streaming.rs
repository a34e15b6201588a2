//! The first append round of the stateless paths (`at_least_once`, `cdc`):
//! source → encoder → micro-batcher → appender, concurrently. Records are
//! encoded one at a time; the [`Batcher`] cuts a request when it is full
//! (`BATCH_MAX_ROWS`, `BATCH_MAX_BYTES`) or when its oldest row has waited
//! `BATCH_WINDOW_MS`, and the request goes to the appender at once, so the
//! first AppendRows is on the wire while later records are still encoded.
//!
//! Exactly-once streams its first round with its own producer
//! (`exactly_once/stream.rs`): its rows carry offsets, and the stretch it
//! streams ends at the first record that is not a row.

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::crash::{self, Boundary, CrashPoints};
use super::plan::Kind;
use super::prepare::{Input, Item, ItemEncoder};
use crate::batch::{BatchLimits, Batcher, RequestBudget, build_request};
use crate::bigquery::{AppendOutcome, AppendRequest, Appender};
use crate::rows::Encoder;
use crate::table::TableName;

/// What the streamed round produced.
pub(crate) struct Streamed<'a> {
    /// Every input, encoded and classified, in the order given.
    pub items: Vec<Item<'a>>,
    /// The rows (indexes into `items`) of each request, in the order sent.
    pub requests: Vec<Vec<usize>>,
    /// One outcome per request.
    pub outcomes: Vec<AppendOutcome>,
    /// A crash point stopped the round (test hook): requests before it were
    /// sent and settled, nothing after.
    pub crashed: Option<String>,
    /// A request could not be built; nothing was sent after it.
    pub error: Option<String>,
}

/// Encodes `inputs` and appends their good rows through `appender` as they
/// are cut.
pub(crate) async fn stream_round<'a>(
    inputs: Vec<(usize, Input<'a>)>,
    encoder: &Encoder,
    limits: &BatchLimits,
    table: &TableName,
    appender: &mut Appender,
    deadline: Instant,
    hook: Option<&CrashPoints>,
) -> Streamed<'a> {
    let (tx, rx) = mpsc::unbounded_channel();
    let produce = produce(inputs, encoder, limits, table, tx, hook);
    let (mut streamed, outcomes) = tokio::join!(produce, appender.append_stream(rx, deadline));
    streamed.outcomes = outcomes;
    streamed
}

async fn produce<'a>(
    inputs: Vec<(usize, Input<'a>)>,
    encoder: &Encoder,
    limits: &BatchLimits,
    table: &TableName,
    tx: mpsc::UnboundedSender<AppendRequest>,
    hook: Option<&CrashPoints>,
) -> Streamed<'a> {
    let budget = RequestBudget::new(limits, encoder, table);
    let mut out = Streamed {
        items: Vec::with_capacity(inputs.len()),
        requests: Vec::new(),
        outcomes: Vec::new(),
        crashed: None,
        error: None,
    };
    let mut items = ItemEncoder::new(encoder, budget, table);
    let mut batcher: Batcher<usize> = Batcher::new(budget.row_limits());
    let mut sender = Some(tx);
    for (index, input) in inputs {
        let item = items.item(index, input);
        let i = out.items.len();
        let (good, len) = (item.kind == Kind::Good, item.row.len());
        out.items.push(item);
        if !good || sender.is_none() {
            continue;
        }
        let now = Instant::now();
        match batcher.push(i, encoder.row_bytes(len), now) {
            Ok(Some(full)) => emit(&mut out, full, encoder, &mut sender, hook).await,
            Ok(None) => {}
            // The encoder dead-letters rows too large for a request; one that
            // slipped through goes alone, for BigQuery to refuse.
            Err(alone) => emit(&mut out, vec![alone.row], encoder, &mut sender, hook).await,
        }
        if batcher.is_due(now) {
            emit(&mut out, batcher.take(), encoder, &mut sender, hook).await;
        }
        if out.crashed.is_some() {
            return out;
        }
    }
    if !batcher.is_empty() {
        emit(&mut out, batcher.take(), encoder, &mut sender, hook).await;
    }
    out
}

/// Builds the request of `rows` and hands it to the appender; then yields,
/// so the appender (in the same task) sends it before encoding goes on.
async fn emit(
    out: &mut Streamed<'_>,
    rows: Vec<usize>,
    encoder: &Encoder,
    sender: &mut Option<mpsc::UnboundedSender<AppendRequest>>,
    hook: Option<&CrashPoints>,
) {
    let Some(tx) = sender.as_ref() else { return };
    if let Err(c) = crash::pass(hook, Boundary::BeforeAppend(out.requests.len())) {
        out.crashed = Some(c.to_string());
        *sender = None;
        return;
    }
    let bytes: Vec<bytes::Bytes> =
        rows.iter().filter_map(|&i| out.items.get(i)).map(|it| it.row.clone()).collect();
    match build_request(encoder, &bytes, None) {
        Ok(request) => match tx.send(request) {
            Ok(()) => out.requests.push(rows),
            Err(_) => *sender = None,
        },
        Err(e) => {
            out.error = Some(format!("building a request failed: {e}"));
            *sender = None;
        }
    }
    tokio::task::yield_now().await;
}
