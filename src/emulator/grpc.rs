//! The `BigQueryWrite` gRPC service: the five unary RPCs, and the route that
//! hands each AppendRows call to its own [`Connection`].
//!
//! AppendRows is served by a route of our own in front of the generated
//! server, decoding requests as [`RawAppendRowsRequest`]: prost's
//! `DescriptorProto` drops unknown field options, and the writer schema's
//! `column_name` extension must survive (fact sheet §1.1). Every RPC passes
//! the fault gate first ([`super::faults`]).

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{BoxFuture, Service};
use tonic::server::{NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::activity::ActivityLog;
use super::append::{Connection, Limits, RawAppendRowsRequest};
use super::faults::{Faults, Verdict};
use super::store::Store;
use crate::pb::storage::big_query_write_server::{
    BigQueryWrite, BigQueryWriteServer, SERVICE_NAME,
};
use crate::pb::storage::*;

const APPEND_ROWS_PATH: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows";
/// The routing header the clients send (fact sheet §1.2).
pub const ROUTING_HEADER: &str = "x-goog-request-params";

/// State shared by every call.
pub struct WriteService {
    pub store: Store,
    pub faults: Faults,
    pub limits: Arc<Limits>,
    pub routing_seen: Arc<Mutex<Vec<String>>>,
    pub(crate) activity: ActivityLog,
    pub shutdown: watch::Receiver<bool>,
    next_conn: AtomicU64,
}

impl WriteService {
    pub fn new(
        store: Store,
        faults: Faults,
        limits: Limits,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            faults,
            limits: Arc::new(limits),
            routing_seen: Arc::default(),
            activity: ActivityLog::default(),
            shutdown,
            next_conn: AtomicU64::new(1),
        }
    }

    /// Injected delay and failure for one unary call.
    async fn gate(&self, method: &str) -> Result<(), Status> {
        let delay = self.faults.delay_for(method);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.faults.check(method) {
            Verdict::Fail { code, message, .. } => {
                self.activity.record(|a| a.refused += 1);
                Err(Status::new(code, message))
            }
            _ => Ok(()),
        }
    }

    fn open_append(
        &self,
        req: Request<Streaming<RawAppendRowsRequest>>,
    ) -> Result<ReceiverStream<Result<AppendRowsResponse, Status>>, Status> {
        if self.faults.is_down() {
            self.activity.record(|a| a.refused += 1);
            return Err(Status::unavailable("The service is currently unavailable."));
        }
        let routing = req
            .metadata()
            .get(ROUTING_HEADER)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        if let Some(r) = &routing {
            self.routing_seen.lock().unwrap_or_else(|e| e.into_inner()).push(r.clone());
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let conn = Connection::new(
            self.store.clone(),
            self.faults.clone(),
            self.limits.clone(),
            self.activity.clone(),
            id,
            routing,
        );
        // Bounded: a client that stops reading stalls its own connection only.
        let (tx, rx) = mpsc::channel(64);
        let activity = self.activity.clone();
        let run = conn.run(req.into_inner(), tx, self.shutdown.clone());
        tokio::spawn(async move {
            run.await;
            // After `run` has released the stream: a waiter may open the next connection.
            activity.record(|a| a.connections_closed += 1);
        });
        Ok(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl BigQueryWrite for Arc<WriteService> {
    async fn create_write_stream(
        &self,
        request: Request<CreateWriteStreamRequest>,
    ) -> Result<Response<WriteStream>, Status> {
        self.gate("CreateWriteStream").await?;
        let r = request.into_inner();
        let kind = r.write_stream.map(|w| w.r#type).unwrap_or(0);
        let stream = self.store.create_write_stream(&r.parent, kind)?;
        self.activity.record(|a| a.streams_created += 1);
        Ok(Response::new(stream))
    }

    type AppendRowsStream = ReceiverStream<Result<AppendRowsResponse, Status>>;

    /// Never reached: `WriteRoutes` serves AppendRows with the raw request type.
    async fn append_rows(
        &self,
        _request: Request<Streaming<AppendRowsRequest>>,
    ) -> Result<Response<Self::AppendRowsStream>, Status> {
        Err(Status::unimplemented("AppendRows is served by the emulator's own route"))
    }

    async fn get_write_stream(
        &self,
        request: Request<GetWriteStreamRequest>,
    ) -> Result<Response<WriteStream>, Status> {
        self.gate("GetWriteStream").await?;
        let r = request.into_inner();
        let full = r.view == WriteStreamView::Full as i32;
        Ok(Response::new(self.store.get_write_stream(&r.name, full)?))
    }

    async fn finalize_write_stream(
        &self,
        request: Request<FinalizeWriteStreamRequest>,
    ) -> Result<Response<FinalizeWriteStreamResponse>, Status> {
        self.gate("FinalizeWriteStream").await?;
        let row_count = self.store.finalize(&request.into_inner().name)?;
        Ok(Response::new(FinalizeWriteStreamResponse { row_count }))
    }

    async fn batch_commit_write_streams(
        &self,
        request: Request<BatchCommitWriteStreamsRequest>,
    ) -> Result<Response<BatchCommitWriteStreamsResponse>, Status> {
        self.gate("BatchCommitWriteStreams").await?;
        let r = request.into_inner();
        if r.parent.parse::<crate::table::TableName>().is_err() {
            return Err(Status::invalid_argument(format!("Invalid parent {:?}", r.parent)));
        }
        if self.store.schema(&r.parent).is_none() {
            return Err(Status::not_found(format!("Table {} not found.", r.parent)));
        }
        let resp = match self.store.batch_commit(&r.parent, &r.write_streams) {
            Ok(commit_time) => {
                BatchCommitWriteStreamsResponse { commit_time, stream_errors: vec![] }
            }
            Err(stream_errors) => {
                BatchCommitWriteStreamsResponse { commit_time: None, stream_errors }
            }
        };
        Ok(Response::new(resp))
    }

    async fn flush_rows(
        &self,
        request: Request<FlushRowsRequest>,
    ) -> Result<Response<FlushRowsResponse>, Status> {
        self.gate("FlushRows").await?;
        let r = request.into_inner();
        let Some(offset) = r.offset else {
            return Err(Status::invalid_argument("FlushRows needs an offset."));
        };
        Ok(Response::new(FlushRowsResponse { offset: self.store.flush(&r.write_stream, offset)? }))
    }
}

/// The `BigQueryWrite` service as tonic serves it: AppendRows by our route, the rest by the generated server.
#[derive(Clone)]
pub struct WriteRoutes {
    service: Arc<WriteService>,
    generated: BigQueryWriteServer<Arc<WriteService>>,
    max_decoding: usize,
}

impl WriteRoutes {
    pub fn new(service: Arc<WriteService>) -> Self {
        // Decode requests well above the request limit, so an oversized
        // request gets the service's own INVALID_ARGUMENT, not a codec error.
        let max_decoding = service.limits.max_request_bytes.saturating_mul(4).max(64 << 20);
        let generated =
            BigQueryWriteServer::new(service.clone()).max_decoding_message_size(max_decoding);
        Self { service, generated, max_decoding }
    }
}

impl NamedService for WriteRoutes {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<tonic::body::Body>> for WriteRoutes {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        if req.uri().path() != APPEND_ROWS_PATH {
            return self.generated.call(req);
        }
        let service = self.service.clone();
        let max = self.max_decoding;
        Box::pin(async move {
            let codec =
                tonic_prost::ProstCodec::<AppendRowsResponse, RawAppendRowsRequest>::default();
            let mut grpc =
                tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(max), None);
            Ok(grpc.streaming(AppendRows(service), req).await)
        })
    }
}

struct AppendRows(Arc<WriteService>);

impl StreamingService<RawAppendRowsRequest> for AppendRows {
    type Response = AppendRowsResponse;
    type ResponseStream = ReceiverStream<Result<AppendRowsResponse, Status>>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<RawAppendRowsRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.open_append(request).map(Response::new) })
    }
}
