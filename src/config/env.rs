//! [`Config`]: every environment variable, parsed and validated once at cold
//! start. Nothing else in the crate reads the environment for settings; the
//! AWS and Google SDKs read their own standard variables
//! (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_SQS`, `AWS_REGION`,
//! `GOOGLE_APPLICATION_CREDENTIALS`, ...) themselves.

use super::delivery::Delivery;
use super::error::ConfigError;
use super::log_filter::LogFilter;
use super::read::Reader;
use crate::batch::BatchLimits;
use crate::bigquery::{DEFAULT_REST_ENDPOINT, Endpoint};
use crate::cdc::CdcSettings;
use crate::delivery::WriteMode;
use crate::retry::RetryPolicy;
use crate::route::{SchemaUrl, TableTarget};
use crate::rows::{RowFormat, UnknownFields};
use crate::sink_url::SinkUrl;
use std::time::Duration;

/// The Storage Write API's public endpoint.
pub const DEFAULT_ENDPOINT: &str = crate::bigquery::DEFAULT_ENDPOINT;

/// Default `BATCH_MAX_BYTES`, the whole encoded request: 512 KiB under the
/// service's 10 MiB limit ([`crate::batch::BATCH_MAX_BYTES`]).
pub const DEFAULT_BATCH_MAX_BYTES: u64 = crate::batch::BATCH_MAX_BYTES as u64;
/// A Lambda invocation runs at most 15 minutes (900 s, Lambda quotas).
pub const MAX_INVOCATION_MS: u64 = 900_000;
/// Java's per-connection in-flight cap (`StreamWriter`: 1000 requests /
/// 100 MiB, fact sheet §2.6) bounds what we accept.
pub const MAX_INFLIGHT_REQUESTS_LIMIT: u64 = 1_000;

/// Everything the process needs, typed and checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `BIGQUERY_TABLE`: `project.dataset.table` (or the resource path), or
    /// a template naming a record field (`p.d.events_{event_type}`).
    pub table: TableTarget,
    /// `CREATE_TABLES`, `TABLE_SCHEMA_URL`, `MAX_TABLES` (routing only).
    pub routing: RouteSettings,
    /// `BIGQUERY_ENDPOINT`: `https://...` (TLS + Google auth) or
    /// `http://host:port` (plain, no auth: the emulator).
    pub endpoint: Endpoint,
    /// `BIGQUERY_REST_ENDPOINT`: the BigQuery REST API (`tables.get/patch`),
    /// used by `UNKNOWN_FIELDS=add`; `https://bigquery.googleapis.com` by default.
    pub rest_endpoint: Endpoint,
    /// `WRITE_MODE` (`exactly_once` by default, `at_least_once` or `cdc`)
    /// with `STATE_URL`, which only exactly-once has.
    pub delivery: Delivery,
    /// `CDC_CHANGE_TYPE_FIELD`, `CDC_SEQUENCE_FIELD` (used with
    /// `WRITE_MODE=cdc` only).
    pub cdc: CdcSettings,
    /// `ROW_FORMAT`: `proto` (default) or `arrow`.
    pub row_format: RowFormat,
    /// `UNKNOWN_FIELDS`: `reject` (default, to the DLQ), `ignore` or `add`.
    pub unknown_fields: UnknownFields,
    /// `BATCH_MAX_ROWS`, `BATCH_MAX_BYTES`, `BATCH_WINDOW_MS`.
    pub batch: BatchLimits,
    /// `MAX_INFLIGHT_REQUESTS`: AppendRows requests sent but not answered.
    pub max_inflight_requests: usize,
    /// `MAX_INFLIGHT_BYTES`: their total size; at least `BATCH_MAX_BYTES`.
    pub max_inflight_bytes: usize,
    /// The default backoff bounded by `RETRY_BUDGET_MS`: how long transient
    /// errors are retried before a batch is spilled.
    pub retry: RetryPolicy,
    /// `DEADLINE_MARGIN_MS`: stop appending this long before the Lambda
    /// deadline, so spilling and the state write still fit.
    pub deadline_margin: Duration,
    /// `SPILL_URL`: `s3://bucket/prefix` or `file:///dir`.
    pub spill: SinkUrl,
    /// `DLQ_URL`: an SQS queue URL or `file:///path.ndjson`.
    pub dead_letter: SinkUrl,
    /// `LOG_LEVEL` / `RUST_LOG`.
    pub log_filter: LogFilter,
}

impl Config {
    /// The bare `WRITE_MODE`.
    pub fn write_mode(&self) -> WriteMode {
        self.delivery.write_mode()
    }

    /// `STATE_URL`; only exactly-once has one.
    pub fn state(&self) -> Option<&SinkUrl> {
        self.delivery.state()
    }

    /// Reads the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] listing every variable that is missing or invalid.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads variables through `get`, so tests never touch the process
    /// environment.
    ///
    /// # Errors
    /// [`ConfigError`] listing every variable that is missing or invalid.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(get);
        let table = r.required(
            "BIGQUERY_TABLE",
            "PROJECT.DATASET.TABLE or projects/P/datasets/D/tables/T, the table part may hold \
             one {field} placeholder",
            |s| s.parse::<TableTarget>(),
        );
        let routing = read_routing(&mut r, table.as_ref());
        let endpoint = r.or_default("BIGQUERY_ENDPOINT", default_endpoint(), parse_endpoint);
        let write_mode = r.or_default("WRITE_MODE", WriteMode::default(), |s| {
            s.parse().map_err(|_| "one of exactly_once, at_least_once, cdc".to_string())
        });
        let cdc = read_cdc(&mut r);
        let row_format = r.or_default("ROW_FORMAT", RowFormat::default(), |s| {
            s.parse().map_err(|_| "one of proto, arrow".to_string())
        });
        let unknown_fields = r.or_default("UNKNOWN_FIELDS", UnknownFields::default(), |s| {
            s.parse().map_err(|_| "one of reject, ignore, add".to_string())
        });
        let rest_endpoint = r.optional("BIGQUERY_REST_ENDPOINT", parse_endpoint);
        // No per-request row limit is documented; a million keeps one
        // request's bookkeeping bounded.
        let max_rows =
            r.integer("BATCH_MAX_ROWS", crate::batch::BATCH_MAX_ROWS as u64, 1, 1_000_000);
        // The whole request counts: at least a request's fixed overhead plus an
        // ordinary row, at most what the service takes (`batch::BatchLimits::new`).
        let max_bytes = r.integer(
            "BATCH_MAX_BYTES",
            DEFAULT_BATCH_MAX_BYTES,
            crate::batch::MIN_BATCH_MAX_BYTES as u64,
            crate::batch::SERVICE_MAX_REQUEST_BYTES as u64,
        );
        // 300 s: the event source mapping's own maximum batching window.
        let default_window = crate::batch::BATCH_WINDOW.as_millis() as u64;
        let window = r.millis("BATCH_WINDOW_MS", default_window, 0, 300_000);
        let inflight_requests =
            r.integer("MAX_INFLIGHT_REQUESTS", 8, 1, MAX_INFLIGHT_REQUESTS_LIMIT);
        let inflight_bytes = r.integer("MAX_INFLIGHT_BYTES", 64 * 1024 * 1024, 1024, 1 << 30);
        let retry_budget = r.millis("RETRY_BUDGET_MS", 30_000, 0, MAX_INVOCATION_MS);
        let deadline_margin = r.millis("DEADLINE_MARGIN_MS", 5_000, 0, MAX_INVOCATION_MS);
        let state = r.optional("STATE_URL", |s| sink(s, &[Scheme::S3, Scheme::File]));
        let spill = r.required("SPILL_URL", "s3://BUCKET/PREFIX or file:///DIR", |s| {
            sink(s, &[Scheme::S3, Scheme::File])
        });
        let dead_letter = r.required("DLQ_URL", "an SQS queue URL or file:///PATH", |s| {
            sink(s, &[Scheme::Sqs, Scheme::File])
        });
        let log_filter = match r.raw("RUST_LOG") {
            Some(_) => r.optional("RUST_LOG", LogFilter::from_directives),
            None => r.optional("LOG_LEVEL", LogFilter::from_level),
        }
        .map(Option::unwrap_or_default);

        // Cross-variable rules, checked only when both sides parsed.
        let delivery = match (write_mode, state) {
            (Some(mode), Some(state)) => {
                let delivery = Delivery::new(mode, state);
                if delivery.is_none() {
                    r.problem(
                        "STATE_URL",
                        None,
                        "s3://BUCKET/PREFIX or file:///DIR (required with WRITE_MODE=exactly_once)",
                    );
                }
                delivery
            }
            _ => None,
        };
        // The emulator serves REST on a port of its own: no default to guess.
        if let (Some(UnknownFields::Add), Some(e), Some(None)) =
            (unknown_fields, &endpoint, &rest_endpoint)
            && e.is_emulator()
        {
            r.problem(
                "BIGQUERY_REST_ENDPOINT",
                None,
                "http://HOST:PORT of the emulator's REST API (required with UNKNOWN_FIELDS=add \
                 and a plain-http BIGQUERY_ENDPOINT)",
            );
        }
        if let (Some(Some(routing)), Some(e), Some(None)) = (&routing, &endpoint, &rest_endpoint)
            && routing.create.is_some()
            && e.is_emulator()
        {
            r.problem(
                "BIGQUERY_REST_ENDPOINT",
                None,
                "http://HOST:PORT of the emulator's REST API (required with CREATE_TABLES=true \
                 and a plain-http BIGQUERY_ENDPOINT)",
            );
        }
        if let (Some(WriteMode::Cdc), Some(RowFormat::Arrow)) = (write_mode, row_format) {
            r.problem(
                "ROW_FORMAT",
                Some("arrow"),
                "proto with WRITE_MODE=cdc (BigQuery applies changes from proto rows only)",
            );
        }
        if let (Some(batch), Some(inflight)) = (max_bytes, inflight_bytes)
            && inflight < batch
        {
            r.problem(
                "MAX_INFLIGHT_BYTES",
                Some(&inflight.to_string()),
                &format!("at least BATCH_MAX_BYTES ({batch}), or no request could be sent"),
            );
        }

        let (
            Some(table),
            Some(Some(routing)),
            Some(endpoint),
            Some(delivery),
            Some(row_format),
            Some(unknown_fields),
            Some(max_rows),
            Some(max_bytes),
            Some(window),
            Some(inflight_requests),
            Some(inflight_bytes),
            Some(retry_budget),
            Some(deadline_margin),
            Some(spill),
            Some(dead_letter),
            Some(log_filter),
            true,
        ) = (
            table,
            routing,
            endpoint,
            delivery,
            row_format,
            unknown_fields,
            max_rows,
            max_bytes,
            window,
            inflight_requests,
            inflight_bytes,
            retry_budget,
            deadline_margin,
            spill,
            dead_letter,
            log_filter,
            r.problems.is_empty(),
        )
        else {
            return Err(ConfigError { problems: r.problems });
        };
        Ok(Self {
            table,
            routing,
            rest_endpoint: rest_endpoint.flatten().unwrap_or_else(default_rest_endpoint),
            endpoint,
            delivery,
            cdc: cdc.unwrap_or_default(),
            row_format,
            unknown_fields,
            batch: BatchLimits {
                max_rows: to_usize(max_rows),
                max_bytes: to_usize(max_bytes),
                window,
            },
            max_inflight_requests: to_usize(inflight_requests),
            max_inflight_bytes: to_usize(inflight_bytes),
            retry: RetryPolicy::with_budget(retry_budget),
            deadline_margin,
            spill,
            dead_letter,
            log_filter,
        })
    }
}

/// `CREATE_TABLES`, `TABLE_SCHEMA_URL` and `MAX_TABLES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSettings {
    /// `CREATE_TABLES=true`: the schema a missing routed table is created
    /// with (`TABLE_SCHEMA_URL`); `None` when tables are not created.
    pub create: Option<SchemaUrl>,
    /// `MAX_TABLES`: tables one shard batch writes to (default 16); records
    /// of further tables go back to Kinesis.
    pub max_tables: usize,
}

impl Default for RouteSettings {
    fn default() -> Self {
        Self { create: None, max_tables: to_usize(DEFAULT_MAX_TABLES) }
    }
}

/// Default `MAX_TABLES`.
pub const DEFAULT_MAX_TABLES: u64 = 16;

/// Reads the routing variables. `Some(None)` means a problem was recorded;
/// `None` that `BIGQUERY_TABLE` itself failed (nothing to check against).
fn read_routing<F: Fn(&str) -> Option<String>>(
    r: &mut Reader<F>,
    table: Option<&TableTarget>,
) -> Option<Option<RouteSettings>> {
    let field = table.and_then(TableTarget::template).map(|t| t.field().to_string());
    let create = r.or_default("CREATE_TABLES", false, |s| match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("true or false".to_string()),
    });
    let schema_url = r.optional("TABLE_SCHEMA_URL", |s| SchemaUrl::parse(s, field.as_deref()));
    // A connection, an encoder and a write stream per table: a thousand is
    // already far past what one invocation's memory and deadline suit.
    let max_tables = r.integer("MAX_TABLES", DEFAULT_MAX_TABLES, 1, 1000);
    let table = table?;
    let create = match (create?, schema_url?) {
        (false, _) => None,
        (true, Some(url)) if table.template().is_some() => Some(url),
        (true, Some(_)) => {
            r.problem(
                "CREATE_TABLES",
                Some("true"),
                "false with a single table (tables are created only for a templated \
                 BIGQUERY_TABLE, e.g. p.d.events_{event_type})",
            );
            return Some(None);
        }
        (true, None) => {
            r.problem(
                "TABLE_SCHEMA_URL",
                None,
                "s3://BUCKET/KEY or file:///PATH of a BigQuery JSON schema (required with \
                 CREATE_TABLES=true)",
            );
            return Some(None);
        }
    };
    let Some(max_tables) = max_tables else { return Some(None) };
    Some(Some(RouteSettings { create, max_tables: to_usize(max_tables) }))
}

/// `CDC_CHANGE_TYPE_FIELD` and `CDC_SEQUENCE_FIELD`: dotted field paths
/// (`op`, `metadata.operation`); `None` when either is invalid.
fn read_cdc<F: Fn(&str) -> Option<String>>(r: &mut Reader<F>) -> Option<CdcSettings> {
    let expected = |s: &str| {
        s.parse().map_err(|e: String| format!("a field name or dotted path such as op ({e})"))
    };
    let change_type_field = r.optional("CDC_CHANGE_TYPE_FIELD", expected);
    let sequence_field = r.optional("CDC_SEQUENCE_FIELD", expected);
    Some(CdcSettings { change_type_field: change_type_field?, sequence_field: sequence_field? })
}

/// Every bound above fits in 32 bits, so this never saturates in practice.
fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    s.parse().map_err(|_| "https://HOST[:PORT] or http://HOST:PORT (e.g. the emulator)".into())
}

fn default_endpoint() -> Endpoint {
    Endpoint::Google { url: DEFAULT_ENDPOINT.to_string() }
}

fn default_rest_endpoint() -> Endpoint {
    Endpoint::Google { url: DEFAULT_REST_ENDPOINT.to_string() }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    S3,
    Sqs,
    File,
}

/// A [`SinkUrl`] of one of the `allowed` kinds (S3 is not a queue, SQS not
/// an object store).
fn sink(s: &str, allowed: &[Scheme]) -> Result<SinkUrl, String> {
    let expected = || {
        allowed
            .iter()
            .map(|k| match k {
                Scheme::S3 => "s3://BUCKET/PREFIX",
                Scheme::Sqs => "https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE",
                Scheme::File => "file:///PATH",
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let url: SinkUrl = s
        .parse()
        .map_err(|e: crate::sink_url::SinkUrlError| format!("{} ({})", expected(), e.why))?;
    let kind = match url {
        SinkUrl::S3 { .. } => Scheme::S3,
        SinkUrl::Sqs { .. } => Scheme::Sqs,
        SinkUrl::File { .. } => Scheme::File,
    };
    if allowed.contains(&kind) { Ok(url) } else { Err(expected()) }
}
