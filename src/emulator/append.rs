//! One AppendRows connection: the state machine the service runs per bidi stream.
//!
//! Guarantees (fact sheet §2.2–§2.4, §2.8): one response per request, in
//! order; the first request names the stream and carries the writer schema;
//! an application-created stream has one connection at a time; a request is
//! atomic (a bad row, a bad offset or an injected failure writes nothing);
//! after a failure on an explicit stream the requests already in flight are
//! answered ABORTED; a table schema change shows up once as `updated_schema`;
//! an idle connection is closed ABORTED.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use prost::Message;
use tokio::sync::{mpsc, watch};
use tonic::{Code, Status, Streaming};

use super::activity::{ActivityLog, ReceivedAppend};
use super::arrow_rows::{self, ArrowWriter};
use super::cdc::{self, PseudoFields};
use super::defaults;
use super::errors::Failure;
use super::faults::{Faults, Verdict};
use super::proto_rows;
use super::proto_schema::{self, ProtoWriter};
use super::store::{Store, Target};
use super::stored::{ProtoBatch, StoredRow};
use crate::pb::storage::append_rows_request::ArrowData;
use crate::pb::storage::append_rows_response::{AppendResult, Response};
use crate::pb::storage::row_error::RowErrorCode;
use crate::pb::storage::{AppendRowsResponse, ProtoRows, RowError, TableSchema};

/// `AppendRowsRequest` as received: the same field numbers as the public
/// proto, but the writer's `DescriptorProto` kept as raw bytes so its field
/// options (the `column_name` extension) survive decoding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RawAppendRowsRequest {
    #[prost(string, tag = "1")]
    pub write_stream: String,
    #[prost(message, optional, tag = "2")]
    pub offset: Option<i64>,
    #[prost(message, optional, tag = "4")]
    pub proto_rows: Option<RawProtoData>,
    #[prost(message, optional, tag = "5")]
    pub arrow_rows: Option<ArrowData>,
    #[prost(string, tag = "6")]
    pub trace_id: String,
    #[prost(map = "string, int32", tag = "7")]
    pub missing_value_interpretations: HashMap<String, i32>,
    #[prost(int32, tag = "8")]
    pub default_missing_value_interpretation: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawProtoData {
    #[prost(message, optional, tag = "1")]
    pub writer_schema: Option<RawProtoSchema>,
    #[prost(message, optional, tag = "2")]
    pub rows: Option<ProtoRows>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RawProtoSchema {
    #[prost(bytes = "vec", tag = "1")]
    pub proto_descriptor: Vec<u8>,
}

/// Limits a connection enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub idle_timeout: Duration,
}

enum Writer {
    Proto(Arc<ProtoWriter>),
    Arrow(ArrowWriter),
}

/// What to do after one request.
enum Step {
    Respond(AppendRowsResponse),
    /// An in-stream failure: on an explicit stream, in-flight requests are aborted.
    Failed(AppendRowsResponse),
    Close(Status),
}

pub struct Connection {
    pub store: Store,
    pub faults: Faults,
    pub limits: Arc<Limits>,
    activity: ActivityLog,
    pub id: u64,
    /// The `x-goog-request-params` header of the call, if any.
    pub routing: Option<String>,
    target: Option<Target>,
    writer: Option<Writer>,
    /// Where the proto writer schema put the CDC pseudo-columns, if it has them.
    cdc: Option<PseudoFields>,
    schema_version: u64,
    /// `default_missing_value_interpretation` is sticky on the connection (§2.7).
    default_missing: i32,
}

type Tx = mpsc::Sender<Result<AppendRowsResponse, Status>>;

impl Connection {
    pub fn new(
        store: Store,
        faults: Faults,
        limits: Arc<Limits>,
        activity: ActivityLog,
        id: u64,
        routing: Option<String>,
    ) -> Self {
        Self {
            store,
            faults,
            limits,
            activity,
            id,
            routing,
            target: None,
            writer: None,
            cdc: None,
            schema_version: 0,
            default_missing: 0,
        }
    }

    /// Serves the connection until the client ends it, a close is decided, or shutdown.
    pub async fn run(
        mut self,
        mut incoming: Streaming<RawAppendRowsRequest>,
        tx: Tx,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let drop_after = self.faults.take_drop_after();
        let mut responses = 0u32;
        loop {
            let next = tokio::select! {
                r = tokio::time::timeout(self.limits.idle_timeout, incoming.next()) => r,
                _ = shutdown.changed() => {
                    let _ = tx.send(Err(Status::unavailable("The emulator is shutting down."))).await;
                    break;
                }
            };
            let req = match next {
                Err(_) => {
                    let secs = self.limits.idle_timeout.as_secs();
                    let msg = format!(
                        "Closing the stream because it has been inactive for {secs} seconds."
                    );
                    let _ = tx.send(Err(Status::aborted(msg))).await;
                    break;
                }
                Ok(None) | Ok(Some(Err(_))) => break,
                Ok(Some(Ok(req))) => req,
            };
            let mut received = received_append(&req);
            let step = self.handle(req).await;
            // Counted before the answer goes out, so a client that has it sees the count.
            self.activity.record(|a| a.append_requests += 1);
            if let Some(target) = &self.target {
                received.write_stream.clone_from(&target.stream);
            }
            self.activity.received(received);
            let (resp, failed) = match step {
                Step::Respond(r) => (r, false),
                Step::Failed(r) => (r, true),
                Step::Close(status) => {
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            if tx.send(Ok(resp)).await.is_err() {
                break;
            }
            responses += 1;
            if failed && self.target.as_ref().is_some_and(|t| !t.is_default) {
                responses += self.abort_in_flight(&mut incoming, &tx).await;
            }
            if drop_after.is_some_and(|k| responses >= k) {
                let _ =
                    tx.send(Err(Status::unavailable("Connection reset by peer (injected)."))).await;
                break;
            }
        }
        if let Some(t) = &self.target {
            self.store.detach(t, self.id);
        }
    }

    /// Answers ABORTED to every request already received (in flight when the failure happened).
    async fn abort_in_flight(
        &mut self,
        incoming: &mut Streaming<RawAppendRowsRequest>,
        tx: &Tx,
    ) -> u32 {
        tokio::task::yield_now().await;
        let mut n = 0;
        while let Some(Some(Ok(_))) = incoming.next().now_or_never() {
            let f = Failure::new(
                Code::Aborted,
                "Request aborted because of prior failures on the connection.",
            );
            if tx.send(Ok(self.error_response(&f))).await.is_err() {
                break;
            }
            n += 1;
        }
        n
    }

    fn error_response(&self, f: &Failure) -> AppendRowsResponse {
        AppendRowsResponse {
            response: Some(Response::Error(f.to_rpc_status())),
            write_stream: self.target.as_ref().map(|t| t.stream.clone()).unwrap_or_default(),
            ..Default::default()
        }
    }

    async fn handle(&mut self, req: RawAppendRowsRequest) -> Step {
        let delay = self.faults.delay_for("AppendRows");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let verdict = self.faults.check("AppendRows");
        if let Err(status) = self.resolve_target(&req) {
            return Step::Close(status);
        }
        let verdict = match (verdict, &self.target) {
            (Verdict::Pass, Some(target)) => self.faults.check_table(&target.table),
            (verdict, _) => verdict,
        };
        if matches!(verdict, Verdict::Fail { .. }) {
            self.activity.record(|a| a.refused += 1);
        }
        let (write_then_drop, then_expire) = match verdict {
            Verdict::Fail { code, message, in_band: false } => {
                return Step::Close(Status::new(code, message));
            }
            Verdict::Fail { code, message, in_band: true } => {
                return Step::Failed(self.error_response(&Failure::new(code, message)));
            }
            Verdict::WriteThenDrop => (true, false),
            Verdict::WriteThenExpire => (true, true),
            Verdict::Pass => (false, false),
            Verdict::Hold => {
                // Taken, not applied: it lands later, after this connection is gone.
                if let Ok((target, offset, rows, _, _)) = self.checked(req) {
                    self.store.hold(target, offset, rows);
                }
                return Step::Close(Status::unavailable(
                    "Connection reset; the request is still being processed (injected).",
                ));
            }
        };
        let size = req.encoded_len();
        if size > self.limits.max_request_bytes {
            let f = Failure::invalid(format!(
                "AppendRows request too large: {size} limit {}",
                self.limits.max_request_bytes
            ));
            return Step::Failed(self.error_response(&f));
        }
        match self.append(req) {
            Ok(resp) if write_then_drop => {
                drop(resp);
                if then_expire && let Some(target) = &self.target {
                    // Gone already is as good: the fault is the loss.
                    let _ = self.store.expire_stream(&target.stream);
                }
                Step::Close(Status::unavailable(
                    "Connection reset after the rows were written (injected).",
                ))
            }
            Ok(resp) => Step::Respond(resp),
            Err((f, row_errors)) => {
                let mut resp = self.error_response(&f);
                resp.row_errors = row_errors;
                Step::Failed(resp)
            }
        }
    }

    /// Connection-level checks: stream named on the first request, owned by
    /// this connection, consistent with the routing header.
    fn resolve_target(&mut self, req: &RawAppendRowsRequest) -> Result<(), Status> {
        let named = !req.write_stream.is_empty();
        match &self.target {
            None if !named => {
                return Err(Status::invalid_argument(
                    "The first request on a connection must set write_stream.",
                ));
            }
            None => {
                let has_schema = req.proto_rows.as_ref().is_some_and(|p| p.writer_schema.is_some())
                    || req.arrow_rows.as_ref().is_some_and(|a| a.writer_schema.is_some());
                if !has_schema {
                    return Err(Status::invalid_argument(
                        "The first request on a connection must set writer_schema.",
                    ));
                }
                self.check_routing(&req.write_stream)?;
                let target = self.store.attach(&req.write_stream, self.id).map_err(Status::from)?;
                self.schema_version = self.store.schema(&target.table).map(|(_, v)| v).unwrap_or(0);
                self.target = Some(target);
            }
            Some(t) if named && !same_stream(&t.stream, &req.write_stream) => {
                // Multiplexing: only default streams may switch destination (§2.9).
                let next = self.store.attach(&req.write_stream, self.id).map_err(Status::from)?;
                if !t.is_default || !next.is_default {
                    self.store.detach(&next, self.id);
                    return Err(Status::invalid_argument(format!(
                        "write_stream {} does not match the connection's stream {}",
                        req.write_stream, t.stream
                    )));
                }
                let has_schema = req.proto_rows.as_ref().is_some_and(|p| p.writer_schema.is_some())
                    || req.arrow_rows.as_ref().is_some_and(|a| a.writer_schema.is_some());
                if next.table != t.table && !has_schema {
                    return Err(Status::invalid_argument(
                        "Switching to another table needs a writer_schema.",
                    ));
                }
                self.schema_version = self.store.schema(&next.table).map(|(_, v)| v).unwrap_or(0);
                self.target = Some(next);
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A non-empty routing header must name this stream; an empty one is tolerated (§1.2).
    fn check_routing(&self, stream: &str) -> Result<(), Status> {
        let Some(header) = self.routing.as_deref().filter(|h| !h.trim().is_empty()) else {
            return Ok(());
        };
        for pair in header.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k == "write_stream"
            {
                let v = percent_decode(v);
                if !same_stream(&v, stream) {
                    return Err(Status::invalid_argument(format!(
                        "Routing header write_stream={v} does not match the request's write_stream {stream}"
                    )));
                }
            }
        }
        Ok(())
    }

    fn append(
        &mut self,
        req: RawAppendRowsRequest,
    ) -> Result<AppendRowsResponse, (Failure, Vec<RowError>)> {
        let plain = |f: Failure| (f, Vec::new());
        let (target, offset, rows, schema, version) = self.checked(req)?;
        let offset = self.store.append(&target, offset, rows).map_err(plain)?;
        let mut resp = AppendRowsResponse {
            response: Some(Response::AppendResult(AppendResult { offset })),
            write_stream: target.stream.clone(),
            ..Default::default()
        };
        if version > self.schema_version {
            self.schema_version = version;
            resp.updated_schema = Some(schema);
        }
        Ok(resp)
    }

    /// The request's rows, checked against the table, and where they go.
    fn checked(&mut self, req: RawAppendRowsRequest) -> Result<Checked, (Failure, Vec<RowError>)> {
        let plain = |f: Failure| (f, Vec::new());
        let Some(target) = self.target.clone() else {
            return Err(plain(Failure::invalid("No write_stream on the connection.")));
        };
        let (schema, version) = self.store.schema(&target.table).ok_or_else(|| {
            plain(Failure::new(Code::NotFound, format!("Table {} was deleted.", target.table)))
        })?;
        let columns = &schema.fields;
        if req.default_missing_value_interpretation != 0 {
            self.default_missing = req.default_missing_value_interpretation;
        }
        let fill =
            defaults::fill_for(columns, &req.missing_value_interpretations, self.default_missing)
                .map_err(|e| plain(Failure::invalid(e)))?;
        let rows = match (req.proto_rows, req.arrow_rows) {
            (Some(p), _) => {
                if let Some(ws) = p.writer_schema {
                    let (descriptor, pseudo) = self.cdc_writer(&ws.proto_descriptor, &target)?;
                    let w =
                        proto_schema::load(&descriptor, columns, &target.stream).map_err(plain)?;
                    self.writer = Some(Writer::Proto(Arc::new(w)));
                    self.cdc = pseudo;
                }
                let Some(Writer::Proto(w)) = &self.writer else {
                    return Err(plain(Failure::invalid(
                        "Proto rows need a proto writer_schema on this connection.",
                    )));
                };
                let serialized = p.rows.map(|r| r.serialized_rows).unwrap_or_default();
                match self.cdc {
                    // CDC rows keep their pseudo-columns in store (the merged
                    // read needs them); the rest is checked as a plain row.
                    Some(pseudo) => {
                        let plain_rows = cdc::plain_rows(&serialized, pseudo)
                            .map_err(|e| row_failure(e, &target.stream))?;
                        proto_rows::check_rows(w, &plain_rows, columns, &fill)
                    }
                    None => proto_rows::check_rows(w, &serialized, columns, &fill),
                }
                .map_err(|e| row_failure(e, &target.stream))?;
                let batch = Arc::new(ProtoBatch {
                    writer: Arc::clone(w),
                    columns: columns.clone(),
                    fill,
                    cdc: self.cdc,
                });
                serialized.into_iter().map(|b| StoredRow::Proto(b, Arc::clone(&batch))).collect()
            }
            (None, Some(a)) => {
                if let Some(ws) = a.writer_schema {
                    let w = arrow_rows::load(&ws.serialized_schema, columns, &target.stream)
                        .map_err(plain)?;
                    self.writer = Some(Writer::Arrow(w));
                }
                let Some(Writer::Arrow(w)) = &self.writer else {
                    return Err(plain(Failure::invalid(
                        "Arrow rows need an Arrow writer_schema on this connection.",
                    )));
                };
                let batch = a.rows.map(|r| r.serialized_record_batch).unwrap_or_default();
                let rows =
                    arrow_rows::decode_rows(w, &batch, columns, &fill).map_err(|e| match e {
                        arrow_rows::DecodeFailure::Request(f) => plain(f),
                        arrow_rows::DecodeFailure::Rows(rows) => row_failure(rows, &target.stream),
                    })?;
                rows.into_iter().map(StoredRow::Values).collect()
            }
            (None, None) => Vec::new(),
        };
        Ok((target, req.offset, rows, schema, version))
    }
}

impl Connection {
    /// A CDC writer schema's pseudo-columns, split off (see [`cdc`]): only
    /// on the `_default` stream of a table with a primary key.
    fn cdc_writer(
        &self,
        descriptor: &[u8],
        target: &Target,
    ) -> Result<CdcWriter, (Failure, Vec<RowError>)> {
        let plain =
            |m: String| (Failure::invalid(format!("{m} Entity: {}", target.stream)), vec![]);
        let (descriptor, pseudo) = cdc::split_descriptor(descriptor).map_err(plain)?;
        if pseudo.is_some() && !target.is_default {
            return Err(plain("_CHANGE_TYPE is only supported on the _default stream.".into()));
        }
        if pseudo.is_some() && !self.store.has_primary_key(&target.table) {
            return Err(plain(
                "_CHANGE_TYPE needs a table with a primary key (PRIMARY KEY ... NOT ENFORCED)."
                    .into(),
            ));
        }
        Ok((descriptor, pseudo))
    }
}

/// A writer descriptor without its CDC pseudo-columns, and where they were.
type CdcWriter = (Vec<u8>, Option<PseudoFields>);

/// Target, offset, rows, and the table schema and version they were checked against.
type Checked = (Target, Option<i64>, Vec<StoredRow>, TableSchema, u64);

fn received_append(req: &RawAppendRowsRequest) -> ReceivedAppend {
    let proto = req.proto_rows.as_ref();
    let rows = match (proto, &req.arrow_rows) {
        (Some(p), _) => p.rows.as_ref().map_or(0, |r| r.serialized_rows.len()),
        // `row_count` is deprecated in the proto but still what clients send.
        #[allow(deprecated)]
        (None, Some(a)) => a.rows.as_ref().map_or(0, |r| usize::try_from(r.row_count).unwrap_or(0)),
        (None, None) => 0,
    };
    let with_schema = proto.is_some_and(|p| p.writer_schema.is_some())
        || req.arrow_rows.as_ref().is_some_and(|a| a.writer_schema.is_some());
    ReceivedAppend {
        write_stream: req.write_stream.clone(),
        offset: req.offset,
        rows,
        bytes: prost::Message::encoded_len(req),
        with_schema,
        at: tokio::time::Instant::now(),
    }
}

fn row_failure(errors: Vec<(usize, String)>, stream: &str) -> (Failure, Vec<RowError>) {
    let first = errors.first().map(|(_, m)| m.clone()).unwrap_or_default();
    let f =
        Failure::invalid(format!("Errors found while processing rows: {first} Entity: {stream}"));
    let rows = errors
        .into_iter()
        .map(|(i, message)| RowError {
            index: i as i64,
            code: RowErrorCode::FieldsError as i32,
            message,
        })
        .collect();
    (f, rows)
}

/// Two stream names are the same stream, allowing the `.../tables/t/_default` alias.
fn same_stream(a: &str, b: &str) -> bool {
    let norm =
        |s: &str| super::store::split_stream_name(s).map(|(t, id)| format!("{t}/streams/{id}"));
    a == b || (norm(a).is_some() && norm(a) == norm(b))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
