//! The AppendRows pipeline: one write stream, one long-lived bidi connection.
//!
//! Requests go out in order without waiting for answers, up to the in-flight
//! bounds; answers come back in the same order, one per request (fact sheet
//! §2.3), so a FIFO of in-flight request indexes matches them. When a
//! transient failure hits — an in-stream error, or the connection ending
//! (idle close, draining, reset, EOF) — the connection is dropped and every
//! request from the failed one on is resent, in order, with its own offset on
//! a new connection: ALREADY_EXISTS on a resend means the earlier attempt
//! landed (§2.2). Anything else stops the run: nothing after the first
//! request that did not succeed is sent, and each request gets exactly the
//! outcome the service's answers justify (see [`AppendOutcome`]).
//!
//! Without offsets (`_default`), a resend after a lost answer can duplicate
//! rows: that is the at-least-once contract of the default stream.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

use crate::pb::storage::append_rows_response::Response;
use crate::pb::storage::{AppendRowsResponse, TableSchema};

use super::append::{AppendOutcome, AppendRequest, AppenderOptions, RowError, wire_request};
use super::client::{MAX_RESPONSE_BYTES, WriteClient};
use super::error::{AppendError, Class, Classify, ServerStatus};
use super::wire::{self, PreparedRows, WireAppendRowsRequest, WriterSchema};
use crate::retry::{Attempts, Decision};

/// Reconnects that cost no retry attempt: an idle close, or a connection found
/// closed with nothing in flight (fact sheet §2.8: "do not count this close").
/// Bounded so a server that keeps closing cannot spin us.
const FREE_RECONNECTS: u32 = 3;

/// How long a new connection waits for the one it replaces to finish closing. An
/// application-created stream takes one connection at a time (fact sheet §2.1), so
/// opening the next before the service has let go of the last would be refused.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// One open AppendRows call.
struct Connection {
    tx: mpsc::Sender<WireAppendRowsRequest>,
    rx: Streaming<AppendRowsResponse>,
}

/// Writes to one write stream over one reconnecting AppendRows connection.
pub struct Appender {
    client: WriteClient,
    write_stream: String,
    writer_schema: WriterSchema,
    options: AppenderOptions,
    conn: Option<Connection>,
    /// A connection we ended (half-closed) whose close the service has not confirmed.
    closing: Option<Streaming<AppendRowsResponse>>,
    updated_schema: Option<TableSchema>,
}

/// A request with its rows serialized once for all its sends.
struct Prepared {
    offset: Option<i64>,
    rows: PreparedRows,
    row_count: usize,
    bytes: usize,
}

impl From<AppendRequest> for Prepared {
    fn from(r: AppendRequest) -> Self {
        Self { offset: r.offset, rows: r.rows.into(), row_count: r.row_count, bytes: r.bytes }
    }
}

/// Progress through one `append_all` call.
struct Run {
    outcomes: Vec<Option<AppendOutcome>>,
    /// The next request to send.
    next: usize,
    /// Indexes sent on the current connection and not yet answered, oldest first.
    inflight: VecDeque<usize>,
    inflight_bytes: usize,
    /// The first request that did not succeed: nothing after it is sent.
    stop: Option<usize>,
    /// Failed attempts in a row (reset by every success).
    attempts: Attempts,
    free_reconnects: u32,
    /// Requests once in flight on a connection that went away before their
    /// answer: that send may have been written, so a refusal of a later send
    /// (which answers only that send) leaves them in doubt, not failed.
    unanswered: HashSet<usize>,
}

/// What the loop does after handling an event.
enum Flow {
    Continue,
    Done,
}

impl Run {
    fn rewind(&mut self) {
        if let Some(&first) = self.inflight.front() {
            self.next = first;
        }
        self.unanswered.extend(self.inflight.drain(..));
        self.inflight_bytes = 0;
    }

    fn settle(&mut self, i: usize, outcome: AppendOutcome) {
        let outcome = match outcome {
            AppendOutcome::Failed(err) if self.unanswered.contains(&i) => {
                AppendOutcome::InDoubt(err)
            }
            other => other,
        };
        if !outcome.is_success() && self.stop.is_none() {
            self.stop = Some(i);
        }
        if let Some(slot) = self.outcomes.get_mut(i) {
            *slot = Some(outcome);
        }
    }

    /// Everything still in flight gets `outcome`; the connection is gone.
    fn abandon_inflight(&mut self, err: &AppendError) {
        while let Some(i) = self.inflight.pop_front() {
            self.settle(i, AppendOutcome::InDoubt(err.clone()));
        }
        self.inflight_bytes = 0;
    }
}

/// Moves the requests already waiting in `source` to the end of `requests`;
/// forgets a source that is closed and empty.
fn take_arrived(
    source: &mut Option<mpsc::UnboundedReceiver<AppendRequest>>,
    requests: &mut Vec<Prepared>,
    run: &mut Run,
) {
    let Some(src) = source.as_mut() else { return };
    loop {
        match src.try_recv() {
            Ok(request) => {
                requests.push(request.into());
                run.outcomes.push(None);
            }
            Err(mpsc::error::TryRecvError::Empty) => return,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                *source = None;
                return;
            }
        }
    }
}

/// The next request of an open source; never resolves without one.
async fn next_request(
    source: &mut Option<mpsc::UnboundedReceiver<AppendRequest>>,
) -> Option<AppendRequest> {
    match source {
        Some(src) => src.recv().await,
        None => std::future::pending().await,
    }
}

impl Appender {
    /// `writer_schema`: a [`WriterSchema`], or the `rows` oneof carrying only the
    /// writer schema (proto or Arrow); every request's rows must be of the same kind.
    /// No connection is opened until the first append.
    pub fn new(
        client: WriteClient,
        write_stream: String,
        writer_schema: impl Into<WriterSchema>,
        options: AppenderOptions,
    ) -> Self {
        let writer_schema = writer_schema.into();
        Self {
            client,
            write_stream,
            writer_schema,
            options,
            conn: None,
            closing: None,
            updated_schema: None,
        }
    }

    pub fn write_stream(&self) -> &str {
        &self.write_stream
    }

    /// The newest table schema the service announced (`updated_schema`), taken once.
    /// The caller rebuilds its encoder and calls [`Self::set_writer_schema`].
    pub fn updated_schema(&mut self) -> Option<TableSchema> {
        self.updated_schema.take()
    }

    /// Switches to a new writer schema. An explicit stream accepts a new schema only
    /// on a new connection (fact sheet §2.3), so the current one is closed.
    pub fn set_writer_schema(&mut self, writer_schema: impl Into<WriterSchema>) {
        self.writer_schema = writer_schema.into();
        self.retire();
    }

    /// Closes the connection; the next append opens a new one.
    pub fn disconnect(&mut self) {
        self.retire();
    }

    /// Ends our side of the live connection (the service then finishes what it
    /// received and closes); the next [`Self::open`] waits for that close.
    fn retire(&mut self) {
        if let Some(Connection { tx, rx }) = self.conn.take() {
            drop(tx);
            self.closing = Some(rx);
        }
    }

    /// Pipelines `requests` in order under the in-flight bounds and returns one outcome
    /// per request, in order.
    ///
    /// Sending stops at the first request that does not succeed; later ones are
    /// `NotSent`, or if already sent, whatever the service answered (`InDoubt` when
    /// the answer is lost). Transient failures reconnect and resend everything in
    /// flight, in order, with the same offsets, until the retry policy or `deadline`
    /// says stop. Nothing is awaited past `deadline`.
    pub async fn append_all(
        &mut self,
        requests: Vec<AppendRequest>,
        deadline: Instant,
    ) -> Vec<AppendOutcome> {
        let requests = requests.into_iter().map(Prepared::from).collect();
        self.run(requests, None, deadline).await
    }

    /// As [`Self::append_all`], for requests still being built (the micro-batcher
    /// cutting rows as they are encoded): each goes out as soon as it arrives and
    /// the in-flight bounds allow, while earlier ones are being answered.
    ///
    /// Returns once `requests` is closed and every request received is settled: one
    /// outcome per request, in the order received. Requests that arrive after a stop
    /// (or the deadline) are received, so the outcomes line up, and are `NotSent`.
    pub async fn append_stream(
        &mut self,
        requests: mpsc::UnboundedReceiver<AppendRequest>,
        deadline: Instant,
    ) -> Vec<AppendOutcome> {
        self.run(Vec::new(), Some(requests), deadline).await
    }

    async fn run(
        &mut self,
        mut requests: Vec<Prepared>,
        mut source: Option<mpsc::UnboundedReceiver<AppendRequest>>,
        deadline: Instant,
    ) -> Vec<AppendOutcome> {
        let mut run = Run {
            outcomes: vec![None; requests.len()],
            next: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            stop: None,
            attempts: Attempts::default(),
            free_reconnects: 0,
            unanswered: HashSet::new(),
        };
        self.drop_if_closed();
        loop {
            take_arrived(&mut source, &mut requests, &mut run);
            if let Flow::Done = self.send_allowed(&requests, &mut run, deadline).await {
                break;
            }
            if run.inflight.is_empty() {
                let more = run.stop.is_none() && run.next < requests.len();
                if !more {
                    // Nothing to send yet: wait for the batcher's next request.
                    if let Some(src) = source.as_mut()
                        && run.stop.is_none()
                        && Instant::now() < deadline
                    {
                        match tokio::time::timeout_at(deadline, src.recv()).await {
                            Ok(Some(request)) => {
                                requests.push(request.into());
                                run.outcomes.push(None);
                            }
                            Ok(None) => source = None,
                            Err(_elapsed) => break,
                        }
                        continue;
                    }
                    break;
                }
                if Instant::now() >= deadline {
                    break;
                }
                if self.conn.is_none() {
                    continue; // reopened by the next send
                }
                // Open but refusing sends: the call ended; its status is on the receiving side.
            }
            let Some(conn) = self.conn.as_mut() else {
                run.rewind();
                continue;
            };
            let answer = tokio::select! {
                biased;
                answer = tokio::time::timeout_at(deadline, conn.rx.message()) => answer,
                Some(request) = next_request(&mut source) => {
                    requests.push(request.into());
                    run.outcomes.push(None);
                    continue;
                }
            };
            let flow = match answer {
                Err(_elapsed) => {
                    self.retire();
                    run.abandon_inflight(&AppendError::DeadlineExceeded);
                    Flow::Done
                }
                Ok(Ok(Some(response))) => {
                    self.on_response(response, &requests, &mut run, deadline).await
                }
                Ok(Ok(None)) => {
                    let eof = ServerStatus {
                        code: tonic::Code::Unavailable,
                        message: "AppendRows stream ended without a status".into(),
                        storage: None,
                    };
                    self.on_loss(AppendError::Connection(eof), true, &mut run, deadline).await
                }
                Ok(Err(status)) => {
                    let err = AppendError::Connection(ServerStatus::from_tonic(&status));
                    self.on_loss(err, true, &mut run, deadline).await
                }
            };
            if let Flow::Done = flow {
                break;
            }
        }
        // The rest of the batch still arrives; none of it is sent now.
        if let Some(mut src) = source {
            while let Some(request) = src.recv().await {
                requests.push(request.into());
                run.outcomes.push(None);
            }
        }
        run.outcomes.into_iter().map(|o| o.unwrap_or(AppendOutcome::NotSent)).collect()
    }

    /// Sends requests while the bounds, the stop mark and the deadline allow.
    /// `Done` when nothing is in flight and nothing more may be sent.
    async fn send_allowed(
        &mut self,
        requests: &[Prepared],
        run: &mut Run,
        deadline: Instant,
    ) -> Flow {
        while let Some(request) = requests.get(run.next) {
            let fits = run.inflight.is_empty()
                || (run.inflight.len() < self.options.max_inflight_requests
                    && run.inflight_bytes.saturating_add(request.bytes)
                        <= self.options.max_inflight_bytes);
            if run.stop.is_some() || !fits || Instant::now() >= deadline {
                break;
            }
            let i = run.next;
            let first = self.conn.is_none();
            let schema = first.then_some((self.write_stream.as_str(), &self.writer_schema));
            let wire = match wire_request(request.offset, &request.rows, schema) {
                Ok(wire) => wire,
                Err(err) => {
                    run.settle(i, AppendOutcome::Failed(err));
                    break;
                }
            };
            if first {
                match self.open(wire, deadline).await {
                    Ok(conn) => self.conn = Some(conn),
                    Err((err, sent)) => {
                        if sent {
                            run.inflight.push_back(i);
                            run.next += 1;
                        }
                        return self.on_loss(err, false, run, deadline).await;
                    }
                }
            } else if let Some(conn) = &self.conn
                && conn.tx.try_send(wire).is_err()
            {
                // The call has ended; its status arrives on the receiving side.
                break;
            }
            run.inflight.push_back(i);
            run.inflight_bytes = run.inflight_bytes.saturating_add(request.bytes);
            run.next += 1;
        }
        Flow::Continue
    }

    /// Opens a connection whose first request is `first`. On failure, says whether
    /// `first` may have reached the service.
    async fn open(
        &mut self,
        first: WireAppendRowsRequest,
        deadline: Instant,
    ) -> Result<Connection, (AppendError, bool)> {
        if let Some(mut old) = self.closing.take() {
            // Answers still coming on it are for requests we resend anyway: ignore them.
            let wait = deadline.min(Instant::now() + CLOSE_WAIT);
            let _ = tokio::time::timeout_at(wait, async {
                while let Ok(Some(_)) = old.message().await {}
            })
            .await;
        }
        let mut call = tonic::Request::new(());
        let routing = ("write_stream", self.write_stream.as_str());
        match tokio::time::timeout_at(deadline, self.client.decorate(&mut call, routing)).await {
            Err(_elapsed) => return Err((AppendError::DeadlineExceeded, false)),
            Ok(Err(e)) => return Err((AppendError::Auth(e), false)),
            Ok(Ok(())) => {}
        }
        // One slot more than can be in flight: `try_send` then only fails when the call is over.
        let (tx, rx) = mpsc::channel(self.options.max_inflight_requests.max(1) + 1);
        // Queued before the call starts: some servers send response headers only after
        // the first message, and the call does not return before the headers.
        if tx.try_send(first).is_err() {
            return Err((AppendError::Protocol("fresh request channel refused a message"), false));
        }
        let (metadata, extensions, ()) = call.into_parts();
        let request = tonic::Request::from_parts(metadata, extensions, ReceiverStream::new(rx));
        let call = wire::append_rows(self.client.channel(), MAX_RESPONSE_BYTES, request);
        match tokio::time::timeout_at(deadline, call).await {
            Err(_elapsed) => Err((AppendError::DeadlineExceeded, true)),
            Ok(Err(status)) => {
                Err((AppendError::Connection(ServerStatus::from_tonic(&status)), true))
            }
            Ok(Ok(response)) => Ok(Connection { tx, rx: response.into_inner() }),
        }
    }

    /// A connection left from an earlier call may have been closed by the server
    /// since (idle close after 600 s): notice it now rather than on a send.
    fn drop_if_closed(&mut self) {
        let Some(conn) = self.conn.as_mut() else { return };
        let closed = conn.tx.is_closed() || conn.rx.message().now_or_never().is_some();
        if closed {
            tracing::debug!(write_stream = %self.write_stream, "AppendRows connection closed while idle");
            self.conn = None;
        }
    }

    /// The connection is gone (or could not open) with `run.inflight` unanswered.
    /// `found_closed`: noticed on the receiving side, so with nothing in flight it is
    /// a close we merely discovered, not a failure of ours.
    async fn on_loss(
        &mut self,
        err: AppendError,
        found_closed: bool,
        run: &mut Run,
        deadline: Instant,
    ) -> Flow {
        self.conn = None;
        if run.stop.is_some() {
            // Draining after a stop: no more attempts; what is unanswered stays unknown.
            run.abandon_inflight(&err);
            return Flow::Done;
        }
        let idle = err.status().is_some_and(ServerStatus::is_idle_close);
        if (idle || (found_closed && run.inflight.is_empty()))
            && run.free_reconnects < FREE_RECONNECTS
        {
            run.free_reconnects += 1;
            run.rewind();
            return Flow::Continue;
        }
        match self.options.retry.decide(&err, &mut run.attempts, deadline) {
            Decision::RetryAfter(delay) => {
                tracing::warn!(write_stream = %self.write_stream, attempt = run.attempts.count,
                    ?delay, error = %err, "AppendRows connection lost; resending in-flight requests");
                run.rewind();
                tokio::time::sleep(delay).await;
                Flow::Continue
            }
            Decision::GiveUp => {
                // A deliberate refusal of the call answers its oldest unanswered request;
                // anything else leaves the in-flight requests in doubt.
                let refused =
                    matches!(err, AppendError::Connection(_)) && err.class() == Class::Permanent;
                match run.inflight.front().copied() {
                    Some(head) if refused => {
                        run.inflight.pop_front();
                        run.settle(head, AppendOutcome::Failed(err.clone()));
                        run.abandon_inflight(&err);
                    }
                    Some(_) => run.abandon_inflight(&err),
                    None => {
                        let next = run.next;
                        run.settle(next, AppendOutcome::Failed(err));
                    }
                }
                Flow::Done
            }
        }
    }

    async fn on_response(
        &mut self,
        response: AppendRowsResponse,
        requests: &[Prepared],
        run: &mut Run,
        deadline: Instant,
    ) -> Flow {
        if response.updated_schema.is_some() {
            self.updated_schema = response.updated_schema;
        }
        let Some(i) = run.inflight.pop_front() else {
            let err = AppendError::Protocol("a response with no request in flight");
            return self.on_loss(err, false, run, deadline).await;
        };
        let Some(request) = requests.get(i) else { return Flow::Done };
        run.inflight_bytes = run.inflight_bytes.saturating_sub(request.bytes);
        let status = match response.response {
            Some(Response::AppendResult(result)) => {
                run.attempts.reset();
                run.settle(i, AppendOutcome::Appended { offset: result.offset });
                return Flow::Continue;
            }
            Some(Response::Error(status)) => ServerStatus::from_rpc(&status),
            None => {
                run.inflight.push_front(i);
                let err = AppendError::Protocol("a response with neither result nor error");
                return self.on_loss(err, false, run, deadline).await;
            }
        };
        if !response.row_errors.is_empty() {
            let rows: Option<Vec<RowError>> = response
                .row_errors
                .iter()
                .map(|e| RowError::from_pb(e, request.row_count))
                .collect();
            let outcome = match rows {
                Some(rows) => AppendOutcome::RowErrors(rows),
                None => {
                    AppendOutcome::Failed(AppendError::Protocol("row error index out of range"))
                }
            };
            run.settle(i, outcome);
            return Flow::Continue;
        }
        let err = AppendError::Rejected(status);
        let class = err.class();
        if class == Class::AlreadyWritten && request.offset.is_some() {
            run.attempts.reset();
            run.settle(i, AppendOutcome::AlreadyExists);
            return Flow::Continue;
        }
        if run.stop.is_some() || !matches!(class, Class::Transient | Class::Throttled) {
            run.settle(i, AppendOutcome::Failed(err));
            return Flow::Continue;
        }
        match self.options.retry.decide(&err, &mut run.attempts, deadline) {
            Decision::RetryAfter(delay) => {
                tracing::warn!(write_stream = %self.write_stream, attempt = run.attempts.count,
                    ?delay, error = %err, "append failed; resending from it");
                // Later in-flight requests will be ABORTED on this connection (§2.2):
                // close it and resend them all, in order, on a new one.
                self.retire();
                run.rewind();
                // `i` itself was answered (not written by this send).
                run.next = i;
                tokio::time::sleep(delay).await;
            }
            Decision::GiveUp => run.settle(i, AppendOutcome::Failed(err)),
        }
        Flow::Continue
    }
}
