//! `kinesis-bigquery emulator`: the emulator as a long-running process.
//!
//! Prints exactly one line, `emulator ready grpc=http://.. rest=http://..`,
//! on stdout once both listeners accept connections (scripts wait for it),
//! then serves until SIGINT or SIGTERM. Tables (`--table`) and their
//! primary keys (`--primary-key`, for change data capture) exist by then.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::errors::EmulatorError;
use super::schema_json::{SchemaJsonError, parse_bq_schema};
use super::server::{DEFAULT_MAX_REQUEST_BYTES, EmulatorConfig, start};
use crate::table::{TableName, TableNameError};

#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address of the gRPC BigQueryWrite service.
    #[arg(long = "grpc", default_value = "127.0.0.1:9060")]
    pub grpc: SocketAddr,
    /// Address of the REST API (BigQuery v2 subset and /emulator/v1/faults).
    #[arg(long = "rest", default_value = "127.0.0.1:9050")]
    pub rest: SocketAddr,
    /// A table to create at start: PROJECT.DATASET.TABLE=SCHEMA.json (bq schema format). Repeatable.
    #[arg(long = "table", value_name = "PROJECT.DATASET.TABLE=SCHEMA.json")]
    pub tables: Vec<String>,
    /// Declares the primary key of a `--table` (`PRIMARY KEY (...) NOT
    /// ENFORCED`, 1 to 16 top-level columns), which change data capture
    /// (`WRITE_MODE=cdc`) needs. Repeatable, one per table.
    #[arg(long = "primary-key", value_name = "PROJECT.DATASET.TABLE=COLUMN[,COLUMN...]")]
    pub primary_keys: Vec<String>,
    /// AppendRows request size limit in bytes (the service's is 10 MiB).
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Close AppendRows connections idle this long (the service uses 600 s).
    #[arg(long, default_value_t = 600)]
    pub idle_timeout_secs: u64,
    /// Milliseconds a schema change (tables.patch) takes to reach AppendRows
    /// (the service takes seconds to minutes; 0 = at once).
    #[arg(long, default_value_t = 0)]
    pub schema_delay_ms: u64,
}

/// One `--primary-key TABLE=COLUMN[,COLUMN...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryKeyArg {
    /// The argument as given, for error messages.
    pub arg: String,
    pub table: TableName,
    pub columns: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("--table {0:?}: expected PROJECT.DATASET.TABLE=SCHEMA.json")]
    TableArg(String),
    #[error("--table {arg:?}")]
    TableName {
        arg: String,
        #[source]
        source: TableNameError,
    },
    #[error("cannot read schema file {path}")]
    ReadSchema {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("schema file {path}")]
    Schema {
        path: PathBuf,
        #[source]
        source: SchemaJsonError,
    },
    #[error("--primary-key {0:?}: expected PROJECT.DATASET.TABLE=COLUMN[,COLUMN...]")]
    PrimaryKeyArg(String),
    #[error("--primary-key {arg:?}")]
    PrimaryKey {
        arg: String,
        #[source]
        source: EmulatorError,
    },
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
    #[error("cannot listen for signals")]
    Signal(#[source] std::io::Error),
}

impl EmulatorArgs {
    /// The configuration these arguments describe (schema files are read here).
    ///
    /// # Errors
    /// [`CliError`] naming the bad argument or file.
    pub fn config(&self) -> Result<EmulatorConfig, CliError> {
        let mut tables = Vec::new();
        for arg in &self.tables {
            let (name, path) =
                arg.split_once('=').ok_or_else(|| CliError::TableArg(arg.clone()))?;
            let name: TableName =
                name.parse().map_err(|source| CliError::TableName { arg: arg.clone(), source })?;
            let path = PathBuf::from(path);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| CliError::ReadSchema { path: path.clone(), source })?;
            let schema =
                parse_bq_schema(&text).map_err(|source| CliError::Schema { path, source })?;
            tables.push((name, schema));
        }
        Ok(EmulatorConfig {
            grpc_addr: self.grpc,
            rest_addr: self.rest,
            max_request_bytes: self.max_request_bytes,
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            tables,
            schema_delay: Duration::from_millis(self.schema_delay_ms),
        })
    }

    /// The `--primary-key` arguments, parsed.
    ///
    /// # Errors
    /// [`CliError`] naming an argument that is not `TABLE=COLUMN[,COLUMN...]`.
    pub fn primary_keys(&self) -> Result<Vec<PrimaryKeyArg>, CliError> {
        self.primary_keys
            .iter()
            .map(|arg| {
                let bad = || CliError::PrimaryKeyArg(arg.clone());
                let (name, columns) = arg.split_once('=').ok_or_else(bad)?;
                let name: TableName = name
                    .parse()
                    .map_err(|source| CliError::TableName { arg: arg.clone(), source })?;
                let columns: Vec<String> =
                    columns.split(',').map(|c| c.trim().to_string()).collect();
                if columns.iter().any(String::is_empty) {
                    return Err(bad());
                }
                Ok(PrimaryKeyArg { arg: arg.clone(), table: name, columns })
            })
            .collect()
    }
}

/// Runs the emulator until SIGINT/SIGTERM.
///
/// # Errors
/// [`CliError`] for bad arguments, a taken port or a failed signal handler.
pub async fn serve(args: EmulatorArgs) -> Result<(), CliError> {
    let keys = args.primary_keys()?;
    let emu = start(args.config()?).await?;
    // Keys are checked against the created tables (columns present, not
    // REPEATED, at most 16) before the ready line: a script never sees a
    // table without the key it asked for.
    for key in keys {
        let columns: Vec<&str> = key.columns.iter().map(String::as_str).collect();
        if let Err(source) = emu.set_primary_key(&key.table, &columns) {
            emu.shutdown().await;
            return Err(CliError::PrimaryKey { arg: key.arg, source });
        }
    }
    println!("emulator ready grpc={} rest={}", emu.grpc_endpoint(), emu.rest_endpoint());
    wait_for_signal().await?;
    emu.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<(), CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(CliError::Signal)?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.map_err(CliError::Signal),
        _ = term.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<(), CliError> {
    tokio::signal::ctrl_c().await.map_err(CliError::Signal)
}
