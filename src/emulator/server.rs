//! Starting and stopping the emulator, and the handle tests and the CLI hold.
//!
//! [`start`] binds both listeners before returning, so the endpoints it
//! reports accept connections at once (port 0 picks free ports). The gRPC
//! and REST servers run as tasks; [`Emulator::shutdown`] ends open AppendRows
//! connections (UNAVAILABLE), stops both servers and waits for them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use super::activity::{Activity, ActivityLog};
use super::append::Limits;
use super::errors::EmulatorError;
use super::faults::Faults;
use super::grpc::{WriteRoutes, WriteService};
use super::store::Store;
use crate::pb::storage::{TableFieldSchema, TableSchema};
use crate::table::TableName;

/// AppendRows rejects requests over 10 MiB ("AppendRows request too large:
/// N limit 10485760", fact sheet §3).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;
/// The service closes AppendRows connections idle for 600 s (fact sheet §2.8).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How to run an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub grpc_addr: SocketAddr,
    pub rest_addr: SocketAddr,
    pub max_request_bytes: usize,
    pub idle_timeout: Duration,
    /// Tables that exist from the start.
    pub tables: Vec<(TableName, TableSchema)>,
    /// How long a schema change (`tables.patch`) takes to reach AppendRows:
    /// until then writers are checked against the old schema and open
    /// connections see no `updated_schema`. The service takes seconds to
    /// minutes; 0 makes changes visible at once.
    pub schema_delay: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc_addr: local,
            rest_addr: local,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            tables: Vec::new(),
            schema_delay: Duration::ZERO,
        }
    }
}

/// A running emulator. Clones share the same state; any clone may shut it down.
#[derive(Clone)]
pub struct Emulator {
    store: Store,
    faults: Faults,
    routing: Arc<Mutex<Vec<String>>>,
    activity: ActivityLog,
    grpc_addr: SocketAddr,
    rest_addr: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Binds both listeners, creates the configured tables and starts serving.
///
/// # Errors
/// [`EmulatorError::Bind`] when an address is taken; table errors for a bad configured schema.
pub async fn start(config: EmulatorConfig) -> Result<Emulator, EmulatorError> {
    let store = Store::default();
    store.set_schema_delay(config.schema_delay);
    for (name, schema) in config.tables {
        store.create_table(&name, schema)?;
    }
    let faults = Faults::default();
    let grpc_listener = TcpListener::bind(config.grpc_addr)
        .await
        .map_err(|source| EmulatorError::Bind { what: "gRPC", addr: config.grpc_addr, source })?;
    let rest_listener = TcpListener::bind(config.rest_addr)
        .await
        .map_err(|source| EmulatorError::Bind { what: "REST", addr: config.rest_addr, source })?;
    let grpc_addr = grpc_listener.local_addr().map_err(|source| EmulatorError::Bind {
        what: "gRPC",
        addr: config.grpc_addr,
        source,
    })?;
    let rest_addr = rest_listener.local_addr().map_err(|source| EmulatorError::Bind {
        what: "REST",
        addr: config.rest_addr,
        source,
    })?;

    let (stop, stopped) = watch::channel(false);
    let limits =
        Limits { max_request_bytes: config.max_request_bytes, idle_timeout: config.idle_timeout };
    let service =
        Arc::new(WriteService::new(store.clone(), faults.clone(), limits, stopped.clone()));
    let routing = service.routing_seen.clone();
    let activity = service.activity.clone();

    let mut grpc_stop = stopped.clone();
    let grpc = tokio::spawn(async move {
        // The real service advertises large HTTP/2 windows; h2's 64 KiB default would make
        // every multi-MB AppendRows wait on WINDOW_UPDATE round trips and understate
        // client throughput in benchmarks.
        let result = tonic::transport::Server::builder()
            .initial_stream_window_size(8 * 1024 * 1024)
            .initial_connection_window_size(32 * 1024 * 1024)
            .add_service(WriteRoutes::new(service))
            // Small AppendRows responses must not wait out Nagle's delay (~40 ms), as the
            // real front end does not make them.
            .serve_with_incoming_shutdown(
                TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                async move {
                    let _ = grpc_stop.wait_for(|s| *s).await;
                },
            )
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "emulator gRPC server failed");
        }
    });

    let app = super::rest::router(super::rest::RestState {
        store: store.clone(),
        faults: faults.clone(),
    });
    let mut rest_stop = stopped;
    let rest = tokio::spawn(async move {
        let result = axum::serve(rest_listener, app)
            .with_graceful_shutdown(async move {
                let _ = rest_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "emulator REST server failed");
        }
    });

    Ok(Emulator {
        store,
        faults,
        routing,
        activity,
        grpc_addr,
        rest_addr,
        stop: Arc::new(stop),
        tasks: Arc::new(Mutex::new(vec![grpc, rest])),
    })
}

impl Emulator {
    /// `http://127.0.0.1:PORT` of the gRPC `BigQueryWrite` service.
    /// The gRPC address as the [`Endpoint`](crate::bigquery::Endpoint) clients connect to.
    pub fn endpoint(&self) -> crate::bigquery::Endpoint {
        crate::bigquery::Endpoint::Emulator { url: self.grpc_endpoint() }
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// `http://127.0.0.1:PORT` of the REST API (`/bigquery/v2/...`, `/emulator/v1/faults`).
    pub fn rest_endpoint(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    pub fn rest_addr(&self) -> SocketAddr {
        self.rest_addr
    }

    /// # Errors
    /// [`EmulatorError::TableExists`], or [`EmulatorError::InvalidSchema`].
    pub fn create_table(&self, t: &TableName, s: TableSchema) -> Result<(), EmulatorError> {
        self.store.create_table(t, s)
    }

    /// Adds NULLABLE columns at the end; once the schema delay has passed,
    /// open connections see `updated_schema` on their next response.
    ///
    /// # Errors
    /// [`EmulatorError::TableNotFound`], or [`EmulatorError::InvalidSchema`] for a non-NULLABLE field.
    /// Declares `t`'s primary key (`PRIMARY KEY (...) NOT ENFORCED`): the
    /// table then takes CDC rows and reads show the merged view.
    pub fn set_primary_key(&self, t: &TableName, key: &[&str]) -> Result<(), EmulatorError> {
        self.store.set_primary_key(t, key.iter().map(|k| k.to_string()).collect())
    }

    pub fn add_columns(
        &self,
        t: &TableName,
        fields: Vec<TableFieldSchema>,
    ) -> Result<(), EmulatorError> {
        self.store.add_columns(t, fields)
    }

    /// Ends the propagation wait of the table's latest schema change: writers
    /// see it from now on (the test's stand-in for "the delay passed").
    ///
    /// # Errors
    /// [`EmulatorError::TableNotFound`].
    pub fn publish_schema(&self, t: &TableName) -> Result<(), EmulatorError> {
        self.store.publish_schema(t)
    }

    /// Visible rows in write order, in the canonical JSON of [`super::values`].
    ///
    /// # Errors
    /// [`EmulatorError::TableNotFound`].
    pub fn read_rows(&self, t: &TableName) -> Result<Vec<serde_json::Value>, EmulatorError> {
        self.store.read_rows(t)
    }

    /// The table's current schema (as REST shows it; writers may not see it yet).
    ///
    /// # Errors
    /// [`EmulatorError::TableNotFound`].
    pub fn table_schema(&self, t: &TableName) -> Result<TableSchema, EmulatorError> {
        Ok(self.store.table_info(t)?.schema)
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Applies one rule as the fault endpoint does: stream and table
    /// lifecycle rules act at once, the rest are added to [`Self::faults`].
    ///
    /// # Errors
    /// The stream or table a lifecycle rule names does not exist.
    pub fn apply_fault(&self, spec: super::FaultSpec) -> Result<(), EmulatorError> {
        super::lifecycle::apply(spec, &self.store, &self.faults)
    }

    /// Garbage-collects a write stream now (NOT_FOUND from then on).
    ///
    /// # Errors
    /// [`EmulatorError::StreamNotFound`].
    pub fn expire_stream(&self, name: &str) -> Result<(), EmulatorError> {
        self.store.expire_stream(name)
    }

    /// `CREATE OR REPLACE TABLE` with the same schema: no rows, no streams.
    ///
    /// # Errors
    /// [`EmulatorError::TableNotFound`].
    pub fn recreate_table(&self, t: &TableName) -> Result<(), EmulatorError> {
        self.store.recreate_table(t)
    }

    /// Deletes a table (it is not re-created).
    ///
    /// # Errors
    /// [`EmulatorError::TableNotFound`].
    pub fn drop_table(&self, t: &TableName) -> Result<(), EmulatorError> {
        self.store.delete_table(t)
    }

    /// Applies the requests held by a `hold` fault; returns how many landed.
    pub fn release_held(&self) -> usize {
        self.store.release_held()
    }

    /// How many requests a `hold` fault is holding.
    pub fn held(&self) -> usize {
        self.store.held()
    }

    /// Every `x-goog-request-params` value seen on AppendRows calls, in order.
    pub fn routing_headers(&self) -> Vec<String> {
        self.routing.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The AppendRows requests received so far (the newest 100,000), in
    /// arrival order.
    pub fn appends(&self) -> Vec<super::ReceivedAppend> {
        self.activity.appends()
    }

    /// Counters of what the service has done ([`Activity`]), to wait on instead of sleeping.
    pub fn activity(&self) -> tokio::sync::watch::Receiver<Activity> {
        self.activity.subscribe()
    }

    /// Ends open connections and stops both servers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            // Graceful drain first; a client that keeps a connection open must not hang us.
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
                abort.abort();
            }
        }
    }
}
