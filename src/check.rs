//! `kinesis-bigquery check`: before a deploy (or after a change), prove the
//! configuration works — the table is reachable and its schema encodable,
//! and every sink answers — and say what was found.
//!
//! With `WRITE_MODE=cdc` it also reads the table's REST resource and judges
//! it against what BigQuery needs to apply changes ([`crate::cdc::requirements`]:
//! a primary key, a column for each configured field); `ROW_FORMAT=proto`,
//! the other requirement, is enforced by the configuration itself.
//!
//! Each finding is independent: one unreachable sink does not hide the
//! state of the others. Nothing is written anywhere.

use crate::bigquery::{DEFAULT_REST_ENDPOINT, TablesClient, WriteClient};
use crate::cdc::requirements;
use crate::config::Config;
use crate::delivery::{DeliveryMode, WriteMode};
use crate::handler::{DepsError, Sinks, WriterSide};
use crate::route::{SchemaUrl, TableTemplate};
use std::fmt;
use std::future::Future;
use std::time::Duration;

/// How long one probe may take; a hung endpoint must not hang `check`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// One probe: which variable, what it points at, and what was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub variable: &'static str,
    pub target: String,
    /// `Ok(what was found)` or `Err(why it failed)`.
    pub outcome: Result<String, String>,
}

/// Everything `check` found, in probe order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether every probe succeeded.
    pub fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.outcome.is_ok())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            let (tag, text) = match &finding.outcome {
                Ok(found) => ("ok  ", found),
                Err(why) => ("FAIL", why),
            };
            writeln!(f, "{tag} {} {}: {text}", finding.variable, finding.target)?;
        }
        Ok(())
    }
}

/// Probes the table (schema read and turned into an encoder) and every
/// configured sink (state store, spillover, dead-letter queue).
pub async fn run(config: &Config) -> Report {
    let mut report = Report::default();
    if let Some(template) = config.table.template() {
        routing(config, template, &mut report).await;
        return sinks(config, report).await;
    }
    let table = probe(WriterSide::connect(config)).await;
    // What a cold start refuses: a request size the table's own overhead
    // (stream name, writer schema) leaves no room for rows in.
    let budget = table.as_ref().ok().map(|w| {
        crate::handler::batch_limits(config, &w.encoder, &w.table)
            .map(|_| "leaves room for rows after the table's request overhead".to_string())
            .map_err(|e| error_chain(&e))
    });
    report.findings.push(Finding {
        variable: "BIGQUERY_TABLE",
        target: format!("{} at {}", config.table, config.endpoint),
        outcome: table.map(|w| w.describe()),
    });
    if let Some(outcome) = budget {
        report.findings.push(Finding {
            variable: "BATCH_MAX_BYTES",
            target: format!("{} bytes per AppendRows request", config.batch.max_bytes),
            outcome,
        });
    }
    if config.write_mode() == WriteMode::Cdc {
        report.findings.push(Finding {
            variable: "WRITE_MODE",
            target: format!("cdc on {} at {}", config.table, config.rest_endpoint),
            outcome: cdc_table(config).await,
        });
    }
    sinks(config, report).await
}

/// A templated `BIGQUERY_TABLE`: no table to read ahead (each is opened when
/// a record names it); what can be checked is that routing is on, the
/// Storage Write API answers, and the schema tables would be created from.
async fn routing(config: &Config, template: &TableTemplate, report: &mut Report) {
    let reach = probe(async {
        let client = WriteClient::connect(&config.endpoint).await?;
        drop(client);
        Ok(())
    })
    .await;
    let create = if config.routing.create.is_some() {
        "missing tables are created (CREATE_TABLES=true)"
    } else {
        "records naming a missing table are dead letters (no_such_table)"
    };
    report.findings.push(Finding {
        variable: "BIGQUERY_TABLE",
        target: format!("{template} at {}", config.endpoint),
        outcome: reach.map(|()| {
            format!(
                "routing on field {:?}: each table is opened when a record first names it, \
                 at most {} per batch (MAX_TABLES); {create}",
                template.field(),
                config.routing.max_tables
            )
        }),
    });
    if let Some(url) = &config.routing.create {
        let outcome = if url.to_string().contains(&format!("{{{}}}", template.field())) {
            Ok(format!(
                "one schema per table, read when a table is created (placeholder {{{}}})",
                template.field()
            ))
        } else {
            schema_at(config, url).await
        };
        report.findings.push(Finding {
            variable: "TABLE_SCHEMA_URL",
            target: url.to_string(),
            outcome,
        });
    }
}

/// Reads and parses the one schema every created table gets.
async fn schema_at(config: &Config, url: &SchemaUrl) -> Result<String, String> {
    let aws = crate::handler::aws_config(config).await;
    let s3 = url.is_s3().then(|| crate::sink_url::s3_client(&aws));
    match tokio::time::timeout(PROBE_TIMEOUT, url.read(s3.as_ref())).await {
        Ok(Ok(schema)) => Ok(format!("{} columns", schema.fields.len())),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Probes every configured sink (state store, spillover, dead-letter queue).
async fn sinks(config: &Config, mut report: Report) -> Report {
    let sinks = match Sinks::open(config).await {
        Ok(s) => s,
        Err(e) => {
            report.findings.push(Finding {
                variable: "STATE_URL/SPILL_URL/DLQ_URL",
                target: "sinks".into(),
                outcome: Err(e.to_string()),
            });
            return report;
        }
    };
    if let (Some(url), DeliveryMode::ExactlyOnce { state }) = (config.state(), &sinks.mode) {
        let outcome = probe(async { state.check().await.map_err(DepsError::from) }).await;
        report.findings.push(Finding { variable: "STATE_URL", target: url.to_string(), outcome });
    }
    let outcome = probe(async { sinks.spill.check().await.map_err(DepsError::from) }).await;
    report.findings.push(Finding {
        variable: "SPILL_URL",
        target: config.spill.to_string(),
        outcome,
    });
    let outcome = probe(async { sinks.dead_letter.check().await.map_err(DepsError::from) }).await;
    report.findings.push(Finding {
        variable: "DLQ_URL",
        target: config.dead_letter.to_string(),
        outcome,
    });
    report
}

/// The table as change data capture needs it, read with REST `tables.get`
/// (the Storage Write API does not show primary keys).
async fn cdc_table(config: &Config) -> Result<String, String> {
    if config.endpoint.is_emulator() && config.rest_endpoint == DEFAULT_REST_ENDPOINT {
        return Err("the primary key is read through the BigQuery REST API: set \
                    BIGQUERY_REST_ENDPOINT to the emulator's REST address (http://HOST:PORT)"
            .into());
    }
    let resource = probe(async {
        let tables = TablesClient::new(&config.rest_endpoint)?;
        let table =
            config.table.fixed().ok_or_else(|| DepsError::Routed(config.table.to_string()))?;
        Ok(tables.get(table).await?)
    })
    .await?;
    requirements::judge(&resource, &config.cdc, config.unknown_fields)
}

async fn probe<T>(f: impl Future<Output = Result<T, DepsError>>) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// The error and its sources on one line, so the cause is not lost (also
/// the handler's outage log line).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
