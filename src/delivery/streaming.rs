//! The streamed append round, of every path that writes rows: source →
//! encoder → micro-batcher → appender, concurrently. Records are encoded
//! one at a time; the [`Batcher`] cuts a request when it is full
//! (`BATCH_MAX_ROWS`, `BATCH_MAX_BYTES`) or when its oldest row has waited
//! `BATCH_WINDOW_MS`, and the request goes to the appender at once, so the
//! first AppendRows is on the wire while later records are still encoded.
//!
//! [`produce`] is the one producer: at-least-once and CDC send every good
//! row at the stream's end; exactly-once's first round
//! (`exactly_once/stream.rs`) sends at offsets, a stretch that ends at the
//! first record that is not a row; the backfill (`backfill/stream.rs`)
//! sends every row from offset 0 of its PENDING stream. [`stream_round`]
//! runs it beside the Lambda's cached appender for a stream. Rows already
//! encoded go through the pre-cut round (`send.rs`).

use std::ops::Range;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::DeliveryDeps;
use super::crash::{self, Boundary, CrashPoints};
use super::prepare::{Input, Item, ItemEncoder};
use crate::batch::{Batcher, RequestBudget, build_request};
use crate::bigquery::{AppendOutcome, AppendRequest};
use crate::rows::{EncodeError, Encoder};
use crate::table::TableName;

/// The one streamed round of the Lambda's write modes, on `stream` through
/// the deps' appender for it: [`produce`] and the appender side by side.
/// `first_offset` and `role` as for [`produce`]. Returns what was produced
/// and one answer per request the appender took.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream_round<'a>(
    deps: &DeliveryDeps,
    stream: &str,
    inputs: Vec<(usize, Input<'a>)>,
    encoder: &Encoder,
    table: &TableName,
    first_offset: Option<i64>,
    role: impl FnMut(&Item<'a>) -> Role,
    deadline: Instant,
) -> (Produced<'a>, Vec<AppendOutcome>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = RequestBudget::new(&deps.limits, encoder, table);
    let hook = deps.crash.as_deref();
    let mut appender = deps.take_appender(stream, encoder).await;
    let producing = produce(inputs, encoder, budget, table, first_offset, role, tx, hook);
    let round = tokio::join!(producing, appender.append_stream(rx, deadline));
    deps.put_appender(appender).await;
    round
}

/// What the streamed producer does with an encoded item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Its row goes out in the next request.
    Row,
    /// It is passed over (no row, or not this round's).
    Skip,
    /// Sending ends before it: the rows cut so far go, nothing after.
    Stop,
}

/// What [`produce`] made of the inputs.
pub(crate) struct Produced<'a> {
    /// Every input, encoded and classified, in order.
    pub items: Vec<Item<'a>>,
    /// Indexes into `items` of the rows sent, in order; with a first
    /// offset, at consecutive offsets from it.
    pub segment: Vec<usize>,
    /// The requests handed to the appender, as ranges of `segment`.
    pub requests: Vec<Range<usize>>,
    /// The item sending stopped at ([`Role::Stop`], or a row once nothing
    /// more could go), if any.
    pub stop: Option<usize>,
    /// A crash point stopped the sending (test hook).
    pub crashed: Option<String>,
    /// A request could not be built; nothing was sent after it.
    pub error: Option<EncodeError>,
}

/// The one producer of every streamed round: encodes `inputs` in order and
/// cuts the rows `role` names into requests with the micro-batcher, each
/// handed to the appender at once. With `first_offset` (exactly-once) the
/// rows are written at consecutive offsets from it; without (the stateless
/// paths), at the stream's end. After the first [`Role::Stop`] (or once a
/// request could not go) every later item is only encoded.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn produce<'a>(
    inputs: Vec<(usize, Input<'a>)>,
    encoder: &Encoder,
    budget: RequestBudget,
    table: &TableName,
    first_offset: Option<i64>,
    mut role: impl FnMut(&Item<'a>) -> Role,
    tx: mpsc::UnboundedSender<AppendRequest>,
    hook: Option<&CrashPoints>,
) -> Produced<'a> {
    let mut out = Produced {
        items: Vec::with_capacity(inputs.len()),
        segment: Vec::new(),
        requests: Vec::new(),
        stop: None,
        crashed: None,
        error: None,
    };
    let mut coder = ItemEncoder::new(encoder, budget, table);
    // Holds indexes into `segment`.
    let mut batcher: Batcher<usize> = Batcher::new(budget.row_limits());
    let mut send = Outbox { encoder, first_offset, tx: Some(tx), hook };
    for (index, input) in inputs {
        let item = coder.item(index, input);
        let i = out.items.len();
        let (what, len) = (role(&item), item.row.len());
        out.items.push(item);
        if out.stop.is_some() || what == Role::Skip {
            continue;
        }
        if what == Role::Stop || send.tx.is_none() {
            out.stop = Some(i);
            if !batcher.is_empty() {
                send.emit(&mut out, batcher.take()).await;
            }
            continue;
        }
        let k = out.segment.len();
        out.segment.push(i);
        let now = Instant::now();
        match batcher.push(k, encoder.row_bytes(len), now) {
            Ok(Some(full)) => send.emit(&mut out, full).await,
            Ok(None) => {}
            // The encoder dead-letters rows too large for a request; one that
            // slipped through goes alone (after the rows before it), for
            // BigQuery to refuse.
            Err(alone) => {
                if !batcher.is_empty() {
                    send.emit(&mut out, batcher.take()).await;
                }
                send.emit(&mut out, vec![alone.row]).await;
            }
        }
        if batcher.is_due(now) {
            send.emit(&mut out, batcher.take()).await;
        }
    }
    if !batcher.is_empty() {
        send.emit(&mut out, batcher.take()).await;
    }
    out
}

/// Where [`produce`]'s requests go.
struct Outbox<'e, 'h> {
    encoder: &'e Encoder,
    first_offset: Option<i64>,
    tx: Option<mpsc::UnboundedSender<AppendRequest>>,
    hook: Option<&'h CrashPoints>,
}

impl Outbox<'_, '_> {
    /// Builds the request of segment rows `rows` (consecutive) and hands it
    /// to the appender; then yields, so the appender (in the same task)
    /// sends it before encoding goes on. Once a request cannot go (crash
    /// point, appender gone, build error), nothing after it goes.
    async fn emit(&mut self, out: &mut Produced<'_>, rows: Vec<usize>) {
        let (Some(tx), Some(&first)) = (self.tx.as_ref(), rows.first()) else { return };
        if let Err(c) = crash::pass(self.hook, Boundary::BeforeAppend(out.requests.len())) {
            out.crashed = Some(c.to_string());
            self.tx = None;
            return;
        }
        let bytes: Vec<bytes::Bytes> = rows
            .iter()
            .filter_map(|&k| out.segment.get(k))
            .filter_map(|&i| out.items.get(i))
            .map(|it| it.row.clone())
            .collect();
        let offset = self.first_offset.map(|o| o + first as i64);
        match build_request(self.encoder, &bytes, offset) {
            Ok(request) => match tx.send(request) {
                Ok(()) => out.requests.push(first..first + rows.len()),
                Err(_) => self.tx = None,
            },
            Err(e) => {
                out.error = Some(e);
                self.tx = None;
            }
        }
        tokio::task::yield_now().await;
    }
}
