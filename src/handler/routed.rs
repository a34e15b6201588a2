//! The routed side of [`Deps`](super::Deps): with a templated
//! `BIGQUERY_TABLE`, one writer per table ([`RoutedTables`]), sharing the
//! sinks opened at cold start and one gRPC channel connected on first use.

use crate::bigquery::{AppenderOptions, TablesClient};
use crate::config::Config;
use crate::delivery::{SPILL_RESERVE, WriteMode};
use crate::evolve::Evolver;
use crate::route::{RoutedTables, Router, SharedParts, TableCreator};
use crate::rows::{EncoderOptions, UnknownFields};
use crate::sink_url::s3_client;

use super::deps::{DepsError, Sinks};

/// The routed tables of a templated `BIGQUERY_TABLE`; `None` for one table.
/// Nothing here reaches BigQuery: tables are opened as records name them.
///
/// # Errors
/// [`DepsError::Tables`] when the REST API's credentials cannot be loaded
/// (needed by `UNKNOWN_FIELDS=add` and `CREATE_TABLES=true`).
pub(super) fn routed_tables(
    config: &Config,
    sinks: &Sinks,
    aws: &aws_config::SdkConfig,
) -> Result<Option<RoutedTables>, DepsError> {
    let Some(template) = config.table.template() else { return Ok(None) };
    let rest_needed =
        config.unknown_fields == UnknownFields::Add || config.routing.create.is_some();
    let tables = if rest_needed { Some(TablesClient::new(&config.rest_endpoint)?) } else { None };
    let create = match (&config.routing.create, &tables) {
        (Some(schema_url), Some(tables)) => Some(TableCreator {
            tables: tables.clone(),
            schema_url: schema_url.clone(),
            s3: schema_url.is_s3().then(|| s3_client(aws)),
        }),
        _ => None,
    };
    let evolve = match (config.unknown_fields, tables) {
        (UnknownFields::Add, Some(tables)) => Some(Evolver::new(tables)),
        _ => None,
    };
    let parts = SharedParts {
        endpoint: config.endpoint.clone(),
        retry: config.retry.clone(),
        mode: sinks.mode.clone(),
        spill: sinks.spill.clone(),
        dead_letter: sinks.dead_letter.clone(),
        options: EncoderOptions {
            format: config.row_format,
            unknown_fields: config.unknown_fields,
        },
        cdc: (config.write_mode() == WriteMode::Cdc).then(|| config.cdc.clone()),
        limits: config.batch,
        appender: AppenderOptions {
            max_inflight_requests: config.max_inflight_requests,
            max_inflight_bytes: config.max_inflight_bytes,
            retry: config.retry.clone(),
        },
        evolve,
        spill_reserve: SPILL_RESERVE,
    };
    let router = Router::new(template.clone());
    Ok(Some(RoutedTables::new(router, config.routing.max_tables, create, parts)))
}
