//! The micro-batcher pipeline against encoding everything first (issue 13).
//!
//! One 10,000-record, ~6 MB Kinesis event through `handler::handle` in
//! `WRITE_MODE=at_least_once`, then in `exactly_once`, into the in-process
//! emulator (its own runtime,
//! as the service runs elsewhere; the handler on a 2-worker runtime, as a
//! Lambda of ≥ 1,769 MB has two vCPUs). Configurations, in one run:
//!
//! - `encode_first`: the whole batch encoded, then cut and sent (what
//!   exactly-once does, and what at-least-once did before the pipeline) —
//!   the baseline;
//! - `window_0`: `BATCH_WINDOW_MS=0`, every row goes out as it is encoded;
//! - `window_default`: the default window (20 ms);
//! - `window_large`: `BATCH_WINDOW_MS=300000`, requests cut by size only;
//! - `eo_*`: the same four in `exactly_once` (file state store), each
//!   against `eo_encode_first` (the exactly-once path before issue 13). Each
//!   run uses a new shard whose stream a one-record invocation created
//!   first (untimed), as a warm shard's is; the timed invocation writes the
//!   claim, then streams.
//!
//! Printed per configuration, as the median of the runs and as a ratio to
//! the baseline: time to the first AppendRows request (invocation start →
//! the emulator receives it), invocation wall clock, and the peak RSS of a
//! child process (this binary with `--child`) running one invocation.
//!
//! Run: `cargo bench --bench batching` (release profile);
//! `BATCHING_CONFIGS=eo_` runs the exactly-once ones only.

#[path = "../tests/it/events.rs"]
mod events;

use anyhow::Context as _;
use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_bigquery::config::Config;
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::handler::{self, Deps};
use kinesis_bigquery::metrics::LogOutput;
use kinesis_bigquery::table::TableName;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

const RECORDS: usize = 10_000;
/// ~600 bytes per record: a ~6 MB event.
const RECORD_BYTES: usize = 600;
const RUNS: usize = 7;
const SCHEMA: &str = include_str!("../tests/fixtures/events.schema.json");

/// The configurations, each mode's baseline first: name, exactly-once, and
/// `BATCH_WINDOW_MS` (`None`: encode first).
const CONFIGS: [(&str, bool, Option<&str>); 8] = [
    ("encode_first", false, None),
    ("window_0", false, Some("0")),
    ("window_default", false, Some("20")),
    ("window_large", false, Some("300000")),
    ("eo_encode_first", true, None),
    ("eo_window_0", true, Some("0")),
    ("eo_window_default", true, Some("20")),
    ("eo_window_large", true, Some("300000")),
];

fn table() -> anyhow::Result<TableName> {
    Ok("bench.batching.events".parse()?)
}

fn event() -> anyhow::Result<KinesisEvent> {
    shard_event("shardId-000000000001", 1, RECORDS)
}

/// `n` records of `shard` from the `first`-th on.
fn shard_event(shard: &str, first: usize, n: usize) -> anyhow::Result<KinesisEvent> {
    let recs: Vec<events::Rec> = events::plain_records(first, n, RECORD_BYTES);
    Ok(serde_json::from_value(events::event(shard, &recs))?)
}

/// An exactly-once shard's stream exists before the timed invocation: its
/// first invocation (one record, the 0th) creates it. Returns the event of
/// the timed invocation.
fn warm_shard(
    rt: &tokio::runtime::Runtime,
    deps: &Deps,
    shard: &str,
) -> anyhow::Result<KinesisEvent> {
    let warm = handler::local_event(shard_event(shard, 0, 1)?, Duration::from_secs(900));
    match rt.block_on(handler::handle(warm, deps)) {
        Ok(r) if r.batch_item_failures.is_empty() => shard_event(shard, 1, RECORDS),
        other => anyhow::bail!("the warm-up record did not land: {other:?}"),
    }
}

fn env(
    endpoint: &str,
    dir: &std::path::Path,
    eo: bool,
    window: Option<&str>,
) -> HashMap<String, String> {
    let dir = dir.display();
    let mode = if eo { "exactly_once" } else { "at_least_once" };
    let mut env = HashMap::from([
        ("BIGQUERY_TABLE".to_string(), "bench.batching.events".to_string()),
        ("BIGQUERY_ENDPOINT".into(), endpoint.to_string()),
        ("WRITE_MODE".into(), mode.into()),
        ("SPILL_URL".into(), format!("file://{dir}/spill")),
        ("DLQ_URL".into(), format!("file://{dir}/dlq.ndjson")),
        ("LOG_LEVEL".into(), "warn".into()),
    ]);
    if eo {
        env.insert("STATE_URL".into(), format!("file://{dir}/state"));
    }
    if let Some(w) = window {
        env.insert("BATCH_WINDOW_MS".into(), w.into());
    }
    env
}

async fn deps(
    endpoint: &str,
    dir: &std::path::Path,
    eo: bool,
    window: Option<&str>,
) -> anyhow::Result<Deps> {
    let env = env(endpoint, dir, eo, window);
    let config = Config::from_lookup(|k| env.get(k).cloned())?;
    let mut deps = Deps::build(&config, LogOutput::Stderr).await?;
    deps.delivery_mut().context("BigQuery did not answer")?.encode_first = window.is_none();
    Ok(deps)
}

/// Drops the table's rows between runs (REST delete, create again), so the
/// emulator's memory stays flat.
fn reset(rt: &tokio::runtime::Runtime, emu: &Emulator) -> anyhow::Result<()> {
    let t = table()?;
    let url = format!(
        "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
        emu.rest_endpoint(),
        t.project(),
        t.dataset(),
        t.table()
    );
    rt.block_on(reqwest::Client::new().delete(url).send())?;
    emu.create_table(&t, emulator::parse_bq_schema(SCHEMA)?)?;
    Ok(())
}

#[derive(Default)]
struct Figures {
    first_request: Vec<Duration>,
    wall: Vec<Duration>,
    requests: usize,
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn measure(
    emu_rt: &tokio::runtime::Runtime,
    emu: &Emulator,
    eo: bool,
    window: Option<&str>,
    event: &KinesisEvent,
) -> anyhow::Result<Figures> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let deps = rt.block_on(deps(&emu.grpc_endpoint(), dir.path(), eo, window))?;
    let mut figures = Figures::default();
    for run in 0..RUNS {
        reset(emu_rt, emu)?;
        let event =
            if eo { warm_shard(&rt, &deps, &format!("shardId-{run:012}"))? } else { event.clone() };
        let invocation = handler::local_event(event, Duration::from_secs(900));
        let started = Instant::now();
        let response = rt.block_on(handler::handle(invocation, &deps));
        figures.wall.push(started.elapsed());
        match response {
            Ok(r) if r.batch_item_failures.is_empty() => {}
            other => anyhow::bail!("not every record landed: {other:?}"),
        }
        // By time, not by index: the emulator keeps only its latest 100,000
        // requests, and the window_0 runs send 10,000 each.
        let appends = emu.appends();
        let mine: Vec<_> = appends.iter().filter(|a| a.at.into_std() >= started).collect();
        let first = mine.first().ok_or_else(|| anyhow::anyhow!("no AppendRows request"))?;
        figures.first_request.push(first.at.into_std().saturating_duration_since(started));
        figures.requests = mine.len();
    }
    Ok(figures)
}

/// Peak RSS (bytes) of a child process running one invocation.
fn child_rss(emu: &Emulator, name: &str) -> anyhow::Result<u64> {
    let out = Command::new(std::env::current_exe()?)
        .args(["--child", name, &emu.grpc_endpoint()])
        .output()?;
    anyhow::ensure!(out.status.success(), "child {name}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix("vm_hwm_kb="))
        .ok_or_else(|| anyhow::anyhow!("child {name} printed no VmHWM: {text}"))?
        .trim()
        .parse::<u64>()?;
    Ok(kb * 1024)
}

/// `--child NAME ENDPOINT`: one invocation of configuration NAME, then this
/// process's peak resident set (`VmHWM` of `/proc/self/status`).
fn child(name: &str, endpoint: &str) -> anyhow::Result<()> {
    let (_, eo, window) = CONFIGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| anyhow::anyhow!("unknown configuration {name}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let deps = rt.block_on(deps(endpoint, dir.path(), *eo, *window))?;
    let event = if *eo { warm_shard(&rt, &deps, "shardId-child")? } else { event()? };
    let response =
        rt.block_on(handler::handle(handler::local_event(event, Duration::from_secs(900)), &deps));
    anyhow::ensure!(
        matches!(&response, Ok(r) if r.batch_item_failures.is_empty()),
        "not every record landed: {response:?}"
    );
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    println!("vm_hwm_kb={}", hwm.trim().trim_end_matches("kB").trim());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let (Some(name), Some(endpoint)) = (args.get(i + 1), args.get(i + 2)) else {
            anyhow::bail!("--child NAME ENDPOINT");
        };
        return child(name, endpoint);
    }
    let emu_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let emu = emu_rt.block_on(emulator::start(EmulatorConfig {
        tables: vec![(table()?, emulator::parse_bq_schema(SCHEMA)?)],
        ..EmulatorConfig::default()
    }))?;
    let event = event()?;
    let event_bytes = serde_json::to_vec(&event)?.len();
    println!(
        "batching: {RECORDS} records, {:.1} MB event, at_least_once then exactly_once, \
         median of {RUNS} runs, ratios to the mode's encode_first",
        event_bytes as f64 / 1e6
    );
    let mut baseline: Option<(Duration, Duration, u64)> = None;
    // `BATCHING_CONFIGS=eo_`: only the configurations whose name starts so.
    let only = std::env::var("BATCHING_CONFIGS").unwrap_or_default();
    for (name, eo, window) in CONFIGS {
        if !name.starts_with(&only) {
            continue;
        }
        let mut f = measure(&emu_rt, &emu, eo, window, &event)?;
        reset(&emu_rt, &emu)?;
        let rss = child_rss(&emu, name)?;
        let (first, wall) = (median(&mut f.first_request), median(&mut f.wall));
        if window.is_none() {
            // Each mode's encode-first run is its baseline.
            baseline = None;
        }
        let base = *baseline.get_or_insert((first, wall, rss));
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        println!(
            "batching/{name}: first AppendRows {:.1} ms ({:.2}x), invocation {:.1} ms ({:.2}x), \
             peak RSS {:.1} MiB ({:.2}x), {} requests",
            first.as_secs_f64() * 1e3,
            ratio(first.as_secs_f64(), base.0.as_secs_f64()),
            wall.as_secs_f64() * 1e3,
            ratio(wall.as_secs_f64(), base.1.as_secs_f64()),
            rss as f64 / 1048576.0,
            ratio(rss as f64, base.2 as f64),
            f.requests,
        );
    }
    emu_rt.block_on(emu.shutdown());
    Ok(())
}
