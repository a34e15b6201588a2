//! `demo --new-field` (issue 14, "Measured"): an event stream over four
//! shards where producers start sending a field the table lacks halfway
//! through, run through the real handler with `UNKNOWN_FIELDS=add` against
//! an emulator whose writers see a new column only after a delay, as the
//! service's do. It reports the records that waited for the column, the
//! time from its first sighting to its first use in the table, and checks
//! that no row is lost or written twice and nothing is dead-lettered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::kinesis::KinesisEvent;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use super::generate::{event_json, kinesis_record};
use super::run::DemoError;
use super::table;
use crate::backfill::{self, BackfillDeps, BackfillOptions, Progress};
use crate::bigquery::{AppenderOptions, WriteClient};
use crate::config::Config;
use crate::delivery::store::FileStateStore;
use crate::dlq::FileDeadLetter;
use crate::emulator::{self, Emulator, EmulatorConfig};
use crate::handler::{self, Deps};
use crate::metrics::LogOutput;
use crate::rows::{EncoderOptions, RowFormat, UnknownFields};
use crate::spill::FileSpill;
use crate::table::TableName;

/// The field producers start sending mid-run.
pub const NEW_FIELD: &str = "campaign";
/// Shards of the run (the measurement).
const SHARDS: usize = 4;
/// Records per invocation.
const BATCH: usize = 100;
/// How long the emulator's writers take to see a new column (BigQuery's
/// Storage Write API also lags `tables.patch`; a real table can take longer).
pub const VISIBILITY_DELAY: Duration = Duration::from_millis(500);

/// What `--new-field` measured.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewFieldReport {
    pub shards: usize,
    pub records: u64,
    /// Records carrying the new field.
    pub with_field: u64,
    /// Records with the new field in invocations that began before the
    /// writers saw its column: they waited (in the invocation, or in the
    /// spillover until the backfill).
    pub waited: u64,
    /// Records spilled while waiting (written by the backfill).
    pub spilled: u64,
    /// From the first invocation holding the new field to the first row
    /// with a value in its column visible in the table.
    pub first_sighting_to_use: Option<Duration>,
    /// Invocations, and those answered with a partial batch response.
    pub invocations: u64,
    pub partial_responses: u64,
    /// Records not in the table, in it more than once, or whose new field
    /// is missing from their row.
    pub rows_lost: u64,
    pub duplicated: u64,
    pub values_missing: u64,
    pub dead_letters: u64,
}

impl NewFieldReport {
    /// Every record once with its value, no dead letter.
    pub fn passed(&self) -> bool {
        self.rows_lost == 0
            && self.duplicated == 0
            && self.values_missing == 0
            && self.dead_letters == 0
            && self.first_sighting_to_use.is_some()
    }
}

impl std::fmt::Display for NewFieldReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let used = self
            .first_sighting_to_use
            .map_or_else(|| "never".to_string(), |d| format!("{} ms", d.as_millis()));
        writeln!(
            f,
            "new field `{NEW_FIELD}` mid-run ({} shards, UNKNOWN_FIELDS=add, writers see a new column after {} ms)",
            self.shards,
            VISIBILITY_DELAY.as_millis()
        )?;
        let lines: [(&str, String); 11] = [
            ("records", self.records.to_string()),
            ("  with the new field", self.with_field.to_string()),
            ("records that waited", self.waited.to_string()),
            ("  spilled, then backfilled", self.spilled.to_string()),
            ("first sighting to use", used),
            ("invocations", self.invocations.to_string()),
            ("  partial responses", self.partial_responses.to_string()),
            ("rows lost", self.rows_lost.to_string()),
            ("rows duplicated", self.duplicated.to_string()),
            ("new-field values missing", self.values_missing.to_string()),
            ("dead letters", self.dead_letters.to_string()),
        ];
        for (label, value) in lines {
            writeln!(f, "  {label:<28}{value:>12}")?;
        }
        Ok(())
    }
}

/// Runs the scenario with about `records` records.
///
/// # Errors
/// [`DemoError`] when the local world cannot be set up.
pub async fn run(records: u64, seed: u64) -> Result<NewFieldReport, DemoError> {
    let dir = tempfile::Builder::new().prefix("kinesis-bigquery-new-field-").tempdir()?;
    let dir = dir.path().to_path_buf();
    let emulator = emulator::start(EmulatorConfig {
        schema_delay: VISIBILITY_DELAY,
        ..EmulatorConfig::default()
    })
    .await?;
    let table = table::name()?;
    emulator.create_table(&table, table::schema()?)?;
    let file_url = |name: &str| format!("file://{}", dir.join(name).display());
    let vars: HashMap<&str, String> = HashMap::from([
        ("BIGQUERY_TABLE", table.to_string()),
        ("BIGQUERY_ENDPOINT", emulator.grpc_endpoint()),
        ("BIGQUERY_REST_ENDPOINT", emulator.rest_endpoint()),
        ("UNKNOWN_FIELDS", "add".to_string()),
        ("STATE_URL", file_url("state")),
        ("SPILL_URL", file_url("spill")),
        ("DLQ_URL", file_url("dead-letters.ndjson")),
        ("LOG_LEVEL", "off".to_string()),
    ]);
    let config = Config::from_lookup(|k| vars.get(k).cloned())?;
    let deps = Deps::build(&config, LogOutput::Discard).await?;

    let per_shard = (records / SHARDS as u64).max(2);
    let (shards, ids) = generate(per_shard, seed);
    let mut report = NewFieldReport {
        shards: SHARDS,
        records: per_shard * SHARDS as u64,
        with_field: ids.values().filter(|v| v.is_some()).count() as u64,
        ..NewFieldReport::default()
    };
    let clock = Clock::default();
    let runs = shards.iter().map(|(_, recs)| drive(&deps, &emulator, &table, recs, &clock));
    for (invocations, partial, waited) in futures::future::join_all(runs).await {
        report.invocations += invocations;
        report.partial_responses += partial;
        report.waited += waited;
    }

    let spill = Arc::new(FileSpill::new(dir.join("spill")));
    let backfill_deps = BackfillDeps {
        client: WriteClient::connect(&emulator.endpoint()).await?,
        state: Some(Arc::new(FileStateStore::new(dir.join("state")))),
        spill,
        dlq: Some(Arc::new(FileDeadLetter::new(dir.join("dead-letters.ndjson")))),
        encoder: EncoderOptions { format: RowFormat::Proto, unknown_fields: UnknownFields::Add },
        cdc: None,
        limits: config.batch,
        appender: AppenderOptions::default(),
        append_timeout: Duration::from_secs(60),
    };
    let summary =
        backfill::run(&backfill_deps, &BackfillOptions::default(), &Progress::Silent).await?;
    report.spilled = summary.records;

    check(&emulator.read_rows(&table)?, &ids, &mut report);
    report.dead_letters = std::fs::read_to_string(dir.join("dead-letters.ndjson"))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0);
    report.first_sighting_to_use = clock.elapsed();
    emulator.shutdown().await;
    Ok(report)
}

/// Per shard, Kinesis records in order (plain JSON, the second half with
/// [`NEW_FIELD`]); and every `event_id` with the value it must have there.
type Shards = Vec<(String, Vec<Value>)>;
fn generate(per_shard: u64, seed: u64) -> (Shards, HashMap<String, Option<String>>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next_id = 0;
    let mut ids = HashMap::new();
    let base_ms = 1_764_000_000_000_i64;
    let shards = (0..SHARDS)
        .map(|s| {
            let shard_id = format!("shardId-{s:012}");
            let recs = (0..per_shard)
                .map(|i| {
                    let arrival = base_ms + i as i64 * 10;
                    let mut event = event_json(&mut rng, &mut next_id, arrival);
                    let value = (i >= per_shard / 2).then(|| format!("spring-{}", i % 5));
                    if let Some(v) = &value {
                        event[NEW_FIELD] = json!(v);
                    }
                    let id = event["event_id"].as_str().unwrap_or_default().to_string();
                    ids.insert(id, value);
                    kinesis_record(&shard_id, s, i, arrival, event.to_string().as_bytes(), "pk")
                })
                .collect();
            (shard_id, recs)
        })
        .collect();
    (shards, ids)
}

/// First sighting of the new field and first row using its column.
#[derive(Default)]
struct Clock {
    sighted: Mutex<Option<Instant>>,
    used: Mutex<Option<Instant>>,
}

impl Clock {
    fn sight(&self) {
        if let Ok(mut s) = self.sighted.lock() {
            s.get_or_insert_with(Instant::now);
        }
    }

    fn is_used(&self) -> bool {
        self.used.lock().map(|u| u.is_some()).unwrap_or(true)
    }

    fn use_now(&self) {
        if let Ok(mut u) = self.used.lock() {
            u.get_or_insert_with(Instant::now);
        }
    }

    fn elapsed(&self) -> Option<Duration> {
        let sighted = (*self.sighted.lock().ok()?)?;
        let used = (*self.used.lock().ok()?)?;
        Some(used.saturating_duration_since(sighted))
    }
}

/// One shard's records through the handler, batch by batch, as the event
/// source mapping would (a partial response resumes at the named record).
/// Returns (invocations, partial responses, records that waited).
async fn drive(
    deps: &Deps,
    emulator: &Emulator,
    table: &TableName,
    records: &[Value],
    clock: &Clock,
) -> (u64, u64, u64) {
    let (mut invocations, mut partial, mut waited) = (0, 0, 0);
    let mut at = 0;
    let mut attempts = 0;
    while at < records.len() && attempts < 10 * records.len() {
        attempts += 1;
        let batch = records.get(at..(at + BATCH).min(records.len())).unwrap_or_default();
        let carrying = batch.iter().filter(|r| carries(r)).count() as u64;
        if carrying > 0 {
            clock.sight();
            if !writers_see(deps, table).await {
                waited += carrying;
            }
        }
        invocations += 1;
        let Ok(event) = serde_json::from_value::<KinesisEvent>(json!({ "Records": batch })) else {
            break;
        };
        let local = handler::local_event(event, Duration::from_secs(60));
        let Ok(response) = handler::handle(local, deps).await else { continue };
        let failed = response.batch_item_failures.first().and_then(|f| f.item_identifier.clone());
        let resumed = failed.and_then(|seq| {
            batch.iter().position(|r| r["kinesis"]["sequenceNumber"].as_str() == Some(&seq))
        });
        match resumed {
            Some(i) => {
                partial += 1;
                at += i;
            }
            None => at += batch.len(),
        }
        if carrying > 0 && !clock.is_used() && column_used(emulator, table) {
            clock.use_now();
        }
    }
    (invocations, partial, waited)
}

/// Whether a Kinesis event record's data holds [`NEW_FIELD`].
fn carries(record: &Value) -> bool {
    use base64::Engine as _;
    let data = record["kinesis"]["data"].as_str().unwrap_or_default();
    let bytes = base64::engine::general_purpose::STANDARD.decode(data).unwrap_or_default();
    serde_json::from_slice::<Value>(&bytes).is_ok_and(|v| v.get(NEW_FIELD).is_some())
}

/// Whether the Storage Write API shows the new column to writers now.
async fn writers_see(deps: &Deps, table: &TableName) -> bool {
    let Some(delivery) = deps.delivery() else { return false };
    delivery
        .client
        .table_schema(table)
        .await
        .is_ok_and(|s| s.fields.iter().any(|f| f.name == NEW_FIELD))
}

/// Whether a visible row has a value in the new column.
fn column_used(emulator: &Emulator, table: &TableName) -> bool {
    emulator
        .read_rows(table)
        .is_ok_and(|rows| rows.iter().any(|r| r.get(NEW_FIELD).is_some_and(|v| !v.is_null())))
}

/// Each record once, with its value in the new column when it had one.
fn check(rows: &[Value], ids: &HashMap<String, Option<String>>, report: &mut NewFieldReport) {
    let mut seen: HashMap<&str, u64> = HashMap::new();
    for row in rows {
        let Some(id) = row.get("event_id").and_then(Value::as_str) else { continue };
        *seen.entry(id).or_default() += 1;
        if let Some(Some(want)) = ids.get(id)
            && row.get(NEW_FIELD).and_then(Value::as_str) != Some(want.as_str())
        {
            report.values_missing += 1;
        }
    }
    report.rows_lost = ids.keys().filter(|id| !seen.contains_key(id.as_str())).count() as u64;
    report.duplicated = seen.values().map(|n| n.saturating_sub(1)).sum();
}
