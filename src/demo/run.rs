//! `kinesis-bigquery demo`: the whole pipeline on one machine, with nothing
//! installed — the emulator in-process, `file://` state, spillover and
//! dead-letter queue in a temporary directory, generated Kinesis events run
//! through the real handler with faults injected, then the backfill, then
//! the check: every good record exactly once (`--mode exactly-once`), or
//! the table equal to the last change of each key (`--mode cdc`).

use super::cdc;
use super::faults::FaultSet;
use super::generate::generate;
use super::kinesis::{StreamFinder, drive};
use super::report::{Allowances, DemoReport};
use super::table;
use crate::backfill::{self, BackfillDeps, BackfillError, BackfillOptions, Progress};
use crate::batch::BatchLimits;
use crate::bigquery::{AppenderOptions, ClientError, WriteClient};
use crate::config::{Config, ConfigError};
use crate::delivery::store::FileStateStore;
use crate::dlq::{DeadLetter, FileDeadLetter};
use crate::emulator::{self, EmulatorConfig, EmulatorError, SchemaJsonError};
use crate::handler::{Deps, DepsError};
use crate::metrics::LogOutput;
use crate::rows::{EncoderOptions, RowFormat};
use crate::source::SourceError;
use crate::spill::{FileSpill, SpillError, SpillFilter, SpillReason, SpillSink};
use crate::table::TableNameError;
use aws_lambda_events::event::kinesis::KinesisEvent;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the demo writes and checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DemoMode {
    /// Click events, `WRITE_MODE=exactly_once`: every good record exactly once.
    #[default]
    ExactlyOnce,
    /// Account changes (creates, updates, deletes), `WRITE_MODE=cdc` on a
    /// table with a primary key: the table converges to the last change of
    /// each key.
    Cdc,
}

impl DemoMode {
    fn write_mode(self) -> &'static str {
        match self {
            Self::ExactlyOnce => "exactly_once",
            Self::Cdc => "cdc",
        }
    }
}

/// Run the whole pipeline locally with faults, then check exactly-once.
#[derive(Clone, Debug, clap::Args)]
pub struct DemoArgs {
    /// exactly-once (click events, each exactly once) or cdc (changes by
    /// primary key, the table converging to the last change of each key).
    #[arg(long, value_enum, default_value_t = DemoMode::ExactlyOnce)]
    pub mode: DemoMode,
    /// User records to generate (after KPL de-aggregation).
    #[arg(long, default_value_t = 5_000)]
    pub records: u64,
    /// Kinesis shards.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub shards: u16,
    /// Kinesis records per invocation at most (the mapping's BatchSize); made
    /// smaller for small runs, so every fault meets a batch of its own.
    #[arg(long, default_value_t = 250)]
    pub batch_size: usize,
    /// Row format of the AppendRows requests.
    #[arg(long, default_value = "proto", value_parser = parse_format)]
    pub format: RowFormat,
    /// Faults to inject: all, none, or a list of retries, outage, crash,
    /// in-doubt, discard, lost-stream (and lost-stream-midway, not in all).
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    pub faults: FaultSet,
    /// Seed of the generated records.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Keep the working directory (state, spillover, dead letters) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Route each click to the table of its type
    /// (`BIGQUERY_TABLE=demo.analytics.clicks_{type}`: four tables, each with
    /// its own write stream and state); exactly-once mode only.
    #[arg(long)]
    pub routing: bool,
    /// Also run the schema-evolution step: over 4 shards a field the table
    /// lacks appears halfway (`UNKNOWN_FIELDS=add`); reports the records
    /// that waited for the column and the time to its first use.
    #[arg(long)]
    pub new_field: bool,
}

fn parse_format(s: &str) -> Result<RowFormat, String> {
    s.parse()
}

fn parse_faults(s: &str) -> Result<FaultSet, String> {
    s.parse()
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("working directory")]
    Io(#[from] std::io::Error),
    #[error("emulator")]
    Emulator(#[from] EmulatorError),
    #[error("demo table schema")]
    Schema(#[from] SchemaJsonError),
    #[error("demo table name")]
    Table(#[from] TableNameError),
    #[error("configuration")]
    Config(#[from] ConfigError),
    #[error("building the handler's dependencies")]
    Deps(#[from] DepsError),
    #[error("connecting the backfill to the emulator")]
    Client(#[from] ClientError),
    #[error("reading the spillover")]
    Spill(#[from] SpillError),
    #[error("backfill")]
    Backfill(#[from] BackfillError),
    #[error("reading the dead letters")]
    DeadLetters(#[from] serde_json::Error),
    #[error("reading the discarded Kinesis records")]
    Discarded(#[from] SourceError),
    #[error("--routing runs with --mode exactly-once only")]
    RoutingNeedsExactlyOnce,
}

/// Runs the demo and returns its report; [`DemoReport::passed`] says
/// whether every check held.
///
/// # Errors
/// [`DemoError`] when the local world cannot be set up; faults injected by
/// the demo are not errors.
pub async fn run(args: &DemoArgs) -> Result<DemoReport, DemoError> {
    let started = Instant::now();
    let workdir = tempfile::Builder::new().prefix("kinesis-bigquery-demo-").tempdir()?;
    let dir = workdir.path().to_path_buf();
    if args.routing && args.mode != DemoMode::ExactlyOnce {
        return Err(DemoError::RoutingNeedsExactlyOnce);
    }
    let emulator = emulator::start(EmulatorConfig::default()).await?;
    // With --routing: the template, and the tables rows are read from.
    let routed = if args.routing { table::routed()? } else { Vec::new() };
    for t in &routed {
        emulator.create_table(t, table::schema()?)?;
    }
    let table = match args.mode {
        // The lost-stream faults aim at the first routed table's stream.
        DemoMode::ExactlyOnce if args.routing => match routed.first() {
            Some(first) => first.clone(),
            None => table::name()?,
        },
        DemoMode::ExactlyOnce => {
            let table = table::name()?;
            emulator.create_table(&table, table::schema()?)?;
            table
        }
        DemoMode::Cdc => {
            let table = cdc::table_name()?;
            emulator.create_table(&table, cdc::schema()?)?;
            emulator.set_primary_key(&table, &[cdc::KEY])?;
            table
        }
    };

    let file_url = |name: &str| format!("file://{}", dir.join(name).display());
    let mut vars: HashMap<&str, String> = HashMap::from([
        (
            "BIGQUERY_TABLE",
            if args.routing { table::ROUTED_TEMPLATE.to_string() } else { table.to_string() },
        ),
        ("BIGQUERY_ENDPOINT", emulator.grpc_endpoint()),
        ("WRITE_MODE", args.mode.write_mode().to_string()),
        ("ROW_FORMAT", format_name(args.format).to_string()),
        ("STATE_URL", file_url("state")),
        ("SPILL_URL", file_url("spill")),
        ("DLQ_URL", file_url("dead-letters.ndjson")),
        // Short, so an outage turns into spillover within a second.
        ("RETRY_BUDGET_MS", "1000".to_string()),
        ("DEADLINE_MARGIN_MS", "2000".to_string()),
        ("LOG_LEVEL", "off".to_string()),
    ]);
    if args.mode == DemoMode::Cdc {
        vars.insert("CDC_CHANGE_TYPE_FIELD", cdc::CHANGE_TYPE_FIELD.to_string());
    }
    let config = Config::from_lookup(|k| vars.get(k).cloned())?;
    let deps = Deps::build(&config, LogOutput::Discard).await?;

    let shards = usize::from(args.shards);
    let (generated, expected) = match args.mode {
        DemoMode::ExactlyOnce => (generate(args.records, shards, args.seed), None),
        DemoMode::Cdc => {
            let (generated, expected) = cdc::generate(args.records, shards, args.seed);
            (generated, Some(expected))
        }
    };
    let kinesis_records: u64 = generated.shards.iter().map(|(_, r)| r.len() as u64).sum();
    // The faults hit invocations 1 to 17 (faults.rs): make more than that.
    let per_shard = kinesis_records / u64::from(args.shards.max(1));
    let batch_size =
        args.batch_size.min(usize::try_from(per_shard / 11).unwrap_or(usize::MAX).max(1));
    let bar = progress_bar(args.quiet, kinesis_records);
    bar.set_message("delivering");
    let state = FileStateStore::new(dir.join("state"));
    let finder = StreamFinder { state: &state, table: &table };
    let streams = (args.mode == DemoMode::ExactlyOnce).then_some(&finder);
    let esm =
        drive(&deps, &emulator, streams, &generated.shards, batch_size, &args.faults, &bar).await;
    let good: HashSet<&str> = generated.good.iter().map(String::as_str).collect();
    let mut allow = Allowances::default();
    let (discarded_ids, discarded_users) = event_ids(&esm.discarded)?;
    allow.discarded = discarded_ids.into_iter().filter(|id| good.contains(id.as_str())).collect();

    let mut report = DemoReport {
        mode: args.mode,
        format: format_name(args.format).to_string(),
        faults: args.faults.0.iter().map(|f| f.name()).collect(),
        kinesis_records,
        user_records: generated.user_records,
        good: generated.good.len() as u64,
        corrupt: generated.corrupt,
        corrupt_discarded: discarded_users.saturating_sub(allow.discarded.len() as u64),
        esm,
        ..DemoReport::default()
    };

    let spill: Arc<dyn SpillSink> = Arc::new(FileSpill::new(dir.join("spill")));
    for key in spill.list(&SpillFilter::default()).await? {
        let batch = spill.read(&key).await?;
        report.spilled_objects += 1;
        report.spilled_records += batch.records.len() as u64;
        report.in_doubt_records +=
            batch.records.iter().filter(|r| r.offset.is_some()).count() as u64;
        // In doubt on a lost stream: spilled as such, or spilled in doubt on
        // a stream the demo expired before the backfill could resolve it.
        let stream_lost = batch.reason == SpillReason::StreamLost;
        let on_expired =
            batch.write_stream.as_ref().is_some_and(|ws| report.esm.expired_streams.contains(ws));
        allow.lost_stream.extend(
            batch
                .records
                .iter()
                .filter(|r| stream_lost || (on_expired && r.offset.is_some()))
                .filter_map(|r| event_id(&r.data)),
        );
    }

    bar.set_message("backfilling");
    let client = WriteClient::connect(&emulator.endpoint()).await?;
    let backfill_deps = BackfillDeps {
        client,
        // CDC keeps no shard state: every spilled change is replayed, and a
        // change written twice leaves the table as it was.
        state: match args.mode {
            DemoMode::ExactlyOnce => Some(Arc::new(FileStateStore::new(dir.join("state")))),
            DemoMode::Cdc => None,
        },
        spill,
        dlq: Some(Arc::new(FileDeadLetter::new(dir.join("dead-letters.ndjson")))),
        encoder: EncoderOptions { format: args.format, unknown_fields: config.unknown_fields },
        cdc: (args.mode == DemoMode::Cdc).then(|| config.cdc.clone()),
        limits: BatchLimits { window: Duration::ZERO, ..config.batch },
        appender: AppenderOptions::default(),
        append_timeout: Duration::from_secs(60),
    };
    report.backfill = backfill::run(
        &backfill_deps,
        &BackfillOptions { concurrency: 4, ..Default::default() },
        &Progress::Silent,
    )
    .await?;
    bar.finish_and_clear();

    let mut rows = Vec::new();
    for t in if routed.is_empty() { std::slice::from_ref(&table) } else { &routed[..] } {
        let these = emulator.read_rows(t)?;
        if args.routing {
            report.routed.push((t.table().to_string(), these.len() as u64));
        }
        rows.extend(these);
    }
    match expected {
        None => {
            let in_table: Vec<String> = rows
                .iter()
                .filter_map(|row| row.get("event_id").and_then(|v| v.as_str()).map(str::to_string))
                .collect();
            report.check_table(&generated.good, &in_table, &allow);
        }
        Some(expected) => {
            report.rows_in_table = rows.len() as u64;
            report.cdc = Some(cdc::check(&expected, &rows));
        }
    }
    let letters = dead_letters(&dir.join("dead-letters.ndjson"))?;
    let distinct: std::collections::HashSet<_> =
        letters.iter().map(|l| (l.shard_id.clone(), l.position())).collect();
    report.dead_lettered_records = distinct.len() as u64;
    for letter in letters {
        let reason = serde_json::to_value(letter.reason)?;
        *report
            .dead_letters
            .entry(reason.as_str().unwrap_or("unknown").to_string())
            .or_default() += 1;
    }
    emulator.shutdown().await;
    if args.new_field {
        bar.set_message("new field");
        report.new_field = Some(super::new_field::run(args.records, args.seed).await?);
    }
    if args.keep {
        report.dir = Some(workdir.keep());
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The `event_id`s of `records` (Kinesis event records, de-aggregated as the
/// handler does), and how many user records they hold (a corrupt aggregate
/// counts once, as in [`super::generate::Generated::user_records`]).
fn event_ids(records: &[Value]) -> Result<(Vec<String>, u64), DemoError> {
    if records.is_empty() {
        return Ok((Vec::new(), 0));
    }
    let mut event: KinesisEvent = serde_json::from_value(json!({ "Records": records }))?;
    let users = crate::source::records(&mut event)?;
    let count = users.len() as u64;
    let ids = users.iter().filter_map(|u| u.as_ref().ok()).filter_map(|u| event_id(&u.data));
    Ok((ids.collect(), count))
}

/// A user record's `event_id`, when it is JSON with one.
fn event_id(data: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(data).ok()?;
    value.get("event_id")?.as_str().map(str::to_string)
}

fn format_name(format: RowFormat) -> &'static str {
    match format {
        RowFormat::Proto => "proto",
        RowFormat::Arrow => "arrow",
    }
}

fn progress_bar(quiet: bool, len: u64) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} {msg:<12} [{elapsed_precise}] {bar:40} {pos}/{len} Kinesis records",
    ) {
        bar.set_style(style);
    }
    bar
}

fn dead_letters(path: &Path) -> Result<Vec<DeadLetter>, DemoError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines().filter(|l| !l.trim().is_empty()).map(|l| Ok(serde_json::from_str(l)?)).collect()
}
