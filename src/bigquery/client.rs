//! The gRPC channel to the Storage Write API and its unary RPCs.
//!
//! One [`WriteClient`] per process (built at cold start) holds one HTTP/2
//! channel, TLS (rustls, webpki roots) for `https://` endpoints or plain text
//! for the emulator's `http://`. Clones share the channel. Unary RPCs carry
//! credentials and the GAPIC routing header and are retried on UNAVAILABLE,
//! DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED only (fact sheet §1.4), each
//! attempt bounded by a timeout. Appends go through [`super::Appender`].

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::pb::storage::big_query_write_client::BigQueryWriteClient;
use crate::pb::storage::{
    BatchCommitWriteStreamsRequest, CreateWriteStreamRequest, FinalizeWriteStreamRequest,
    FlushRowsRequest, GetWriteStreamRequest, StorageError, TableSchema, WriteStream,
    WriteStreamView, write_stream,
};
use crate::table::TableName;

use super::auth::Auth;
use super::error::{ClientError, RpcError, ServerStatus};
use crate::retry::{Attempts, Decision, RetryPolicy};

/// The production endpoint (fact sheet §1.1).
pub const DEFAULT_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";

/// The GAPIC routing header: it tells the front end which region serves the
/// stream; an empty value fails intermittently after reconnects (fact sheet §1.2, §7.6).
pub(crate) const ROUTING_HEADER: &str = "x-goog-request-params";

/// Responses are small, but GetWriteStream(FULL) carries the whole table schema,
/// which can exceed tonic's 4 MiB default for very wide tables.
pub(crate) const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// What BatchCommitWriteStreams decided; it is atomic (fact sheet §2.5).
#[derive(Clone, Debug, PartialEq)]
pub enum CommitOutcome {
    /// Every stream is committed and its rows visible from this time.
    Committed { commit_time: prost_types::Timestamp },
    /// Nothing was committed; one error per offending stream.
    NotCommitted(Vec<StorageError>),
}

/// A cheap-to-clone handle to the Storage Write API.
#[derive(Clone, Debug)]
pub struct WriteClient {
    channel: Channel,
    grpc: BigQueryWriteClient<Channel>,
    auth: Auth,
    retry: RetryPolicy,
    rpc_timeout: Duration,
}

impl WriteClient {
    /// Builds the channel (connecting lazily, so a cold start does not fail on a
    /// network blip: the first RPC reports it and is retried) and loads credentials.
    ///
    /// # Errors
    /// A malformed endpoint, or Application Default Credentials that cannot be loaded.
    pub async fn connect(endpoint: &super::Endpoint) -> Result<Self, ClientError> {
        let url = endpoint.url().to_string();
        let bad = |source| ClientError::Endpoint { endpoint: url.clone(), source };
        let mut ep = Endpoint::from_shared(url.clone()).map_err(bad)?;
        if !endpoint.is_emulator() {
            ep = ep.tls_config(ClientTlsConfig::new().with_webpki_roots()).map_err(bad)?;
        }
        let ep = ep
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            // Keepalive 1 min as Java's samples (fact sheet §2.8); also while idle, so a
            // warm Lambda container notices a dead connection before its next invocation.
            .http2_keep_alive_interval(Duration::from_secs(60))
            .keep_alive_while_idle(true)
            .http2_adaptive_window(true)
            .user_agent(concat!("kinesis-bigquery/", env!("CARGO_PKG_VERSION")))
            .map_err(bad)?;
        let channel = ep.connect_lazy();
        let grpc = BigQueryWriteClient::new(channel.clone())
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .max_encoding_message_size(usize::MAX);
        Ok(Self {
            channel,
            grpc,
            auth: Auth::new(&endpoint.auth())?,
            retry: RetryPolicy::default(),
            rpc_timeout: Duration::from_secs(60),
        })
    }

    /// Replaces the retry policy of unary RPCs (default: [`RetryPolicy::default`]).
    pub fn with_unary_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Bounds each unary attempt (default 60 s; the GAPIC default of 600 s is longer
    /// than a Lambda invocation).
    pub fn with_rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// Creates an application stream; COMMITTED streams with offsets give exactly-once.
    pub async fn create_write_stream(
        &self,
        table: &TableName,
        kind: write_stream::Type,
    ) -> Result<WriteStream, RpcError> {
        let parent = table.path();
        let request = CreateWriteStreamRequest {
            parent: parent.clone(),
            write_stream: Some(WriteStream { r#type: kind as i32, ..Default::default() }),
        };
        self.unary("CreateWriteStream", ("parent", &parent), request, |mut g, r| async move {
            g.create_write_stream(r).await
        })
        .await
    }

    pub async fn get_write_stream(
        &self,
        name: &str,
        view: WriteStreamView,
    ) -> Result<WriteStream, RpcError> {
        let request = GetWriteStreamRequest { name: name.to_string(), view: view as i32 };
        self.unary("GetWriteStream", ("name", name), request, |mut g, r| async move {
            g.get_write_stream(r).await
        })
        .await
    }

    /// The table's current schema: GetWriteStream on `_default` with the FULL view.
    pub async fn table_schema(&self, table: &TableName) -> Result<TableSchema, RpcError> {
        let stream = self.get_write_stream(&table.default_stream(), WriteStreamView::Full).await?;
        stream
            .table_schema
            .ok_or(RpcError::MissingField { method: "GetWriteStream", field: "table_schema" })
    }

    /// Stops appends to the stream and returns its exact `row_count`: the truth about
    /// which offsets landed when appends are in doubt (DESIGN.md invariant 6).
    pub async fn finalize_write_stream(&self, name: &str) -> Result<i64, RpcError> {
        let request = FinalizeWriteStreamRequest { name: name.to_string() };
        let response = self
            .unary("FinalizeWriteStream", ("name", name), request, |mut g, r| async move {
                g.finalize_write_stream(r).await
            })
            .await?;
        Ok(response.row_count)
    }

    /// Commits finalized PENDING streams of one table, atomically.
    pub async fn batch_commit(
        &self,
        table: &TableName,
        streams: &[String],
    ) -> Result<CommitOutcome, RpcError> {
        let parent = table.path();
        let request = BatchCommitWriteStreamsRequest {
            parent: parent.clone(),
            write_streams: streams.to_vec(),
        };
        let response = self
            .unary("BatchCommitWriteStreams", ("parent", &parent), request, |mut g, r| async move {
                g.batch_commit_write_streams(r).await
            })
            .await?;
        // Non-empty stream_errors means nothing was committed, whatever else is set.
        Ok(match response.commit_time {
            Some(commit_time) if response.stream_errors.is_empty() => {
                CommitOutcome::Committed { commit_time }
            }
            _ => CommitOutcome::NotCommitted(response.stream_errors),
        })
    }

    /// Makes rows up to `offset` (inclusive) of a BUFFERED stream visible; returns the
    /// flushed offset.
    pub async fn flush_rows(&self, stream: &str, offset: i64) -> Result<i64, RpcError> {
        let request = FlushRowsRequest { write_stream: stream.to_string(), offset: Some(offset) };
        let response = self
            .unary("FlushRows", ("write_stream", stream), request, |mut g, r| async move {
                g.flush_rows(r).await
            })
            .await?;
        Ok(response.offset)
    }

    /// The HTTP/2 channel, for the append pipeline's own AppendRows encoding.
    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Adds credentials and the routing header `key=value` to a request.
    pub(crate) async fn decorate<T>(
        &self,
        request: &mut tonic::Request<T>,
        routing: (&str, &str),
    ) -> Result<(), super::AuthError> {
        self.auth.apply(request.metadata_mut()).await?;
        if let Ok(value) = MetadataValue::try_from(routing_value(routing.0, routing.1)) {
            request.metadata_mut().insert(ROUTING_HEADER, value);
        }
        Ok(())
    }

    async fn unary<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
        routing: (&str, &str),
        request: Req,
        call: F,
    ) -> Result<Resp, RpcError>
    where
        Req: Clone,
        F: Fn(BigQueryWriteClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let mut attempts = Attempts::default();
        // Every attempt is bounded by `rpc_timeout`; the retries by the
        // policy's budget (and, within an invocation, by its first failure).
        let deadline = Instant::now() + self.retry.budget.saturating_add(self.rpc_timeout);
        loop {
            let mut req = tonic::Request::new(request.clone());
            req.set_timeout(self.rpc_timeout);
            let err = match self.decorate(&mut req, routing).await {
                Err(source) => RpcError::Auth { method, source },
                Ok(()) => {
                    match tokio::time::timeout(self.rpc_timeout, call(self.grpc.clone(), req)).await
                    {
                        Ok(Ok(response)) => return Ok(response.into_inner()),
                        Ok(Err(status)) => {
                            RpcError::Status { method, status: ServerStatus::from_tonic(&status) }
                        }
                        Err(_elapsed) => RpcError::Status {
                            method,
                            status: ServerStatus {
                                code: tonic::Code::DeadlineExceeded,
                                message: format!("no answer within {:?}", self.rpc_timeout),
                                storage: None,
                            },
                        },
                    }
                }
            };
            match self.retry.decide(&err, &mut attempts, deadline) {
                Decision::RetryAfter(delay) => {
                    tracing::warn!(method, attempt = attempts.count, ?delay, error = %err, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Decision::GiveUp => return Err(err),
            }
        }
    }
}

/// `key=value` with bytes that cannot travel in an HTTP header value percent-encoded.
/// Slashes stay as they are, as the official clients send them (fact sheet §1.2).
pub(crate) fn routing_value(key: &str, value: &str) -> String {
    let mut out = String::with_capacity(key.len() + value.len() + 1);
    out.push_str(key);
    out.push('=');
    for b in value.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_value_keeps_slashes() {
        assert_eq!(
            routing_value("write_stream", "projects/p/datasets/d/tables/t/streams/_default"),
            "write_stream=projects/p/datasets/d/tables/t/streams/_default"
        );
        assert_eq!(routing_value("name", "a b%é"), "name=a%20b%25%C3%A9");
    }

    #[tokio::test]
    async fn connects_lazily() {
        let endpoint = "http://127.0.0.1:1".parse().expect("an emulator address");
        assert!(WriteClient::connect(&endpoint).await.is_ok(), "lazy: no connection yet");
    }
}
