//! Routing by record (issue 14, "Measured"): the handler on the same 10,000
//! records of 1 KiB spread over 1, 4 and 16 tables by a templated
//! `BIGQUERY_TABLE` (`bench.routing.r{n}_{type}`, `type` = `t0`…), in one
//! run, beside the same records to one fixed table (no routing at all).
//! Each case prints its median records/s and its ratio to the one-table
//! routed case. Part of `benches/handler.rs`:
//! `cargo bench --bench handler -- handler/routing`.

use super::invocations::Invocations;
use super::{RECORD_BYTES, RECORDS, events};
use criterion::{Criterion, Throughput};
use kinesis_bigquery::config::Config;
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::handler::Deps;
use kinesis_bigquery::metrics::LogOutput;
use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::table::TableName;
use std::collections::HashMap;
use std::time::Duration;

/// Tables the records are spread over; `0` is the fixed table.
const CASES: [usize; 4] = [0, 1, 4, 16];

struct Case {
    tables: usize,
    names: Vec<TableName>,
    /// `BIGQUERY_TABLE` for this case.
    target: String,
    event: aws_lambda_events::event::kinesis::KinesisEvent,
}

impl Case {
    fn new(tables: usize) -> anyhow::Result<Self> {
        let (names, target) = if tables == 0 {
            let t: TableName = "bench.routing.fixed".parse()?;
            (vec![t.clone()], t.to_string())
        } else {
            let names = (0..tables)
                .map(|k| format!("bench.routing.r{tables}_t{k}").parse())
                .collect::<Result<Vec<TableName>, _>>()?;
            (names, format!("bench.routing.r{tables}_{{type}}"))
        };
        // The plain 1 KiB records, each `type` set to one of the tables in
        // turn (the fixed case keeps the same bytes).
        let spread = tables.max(1);
        let records: Vec<events::Rec> = events::plain_records(0, RECORDS, RECORD_BYTES)
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&r.data) {
                    v["type"] = format!("t{}", i % spread).into();
                    r.data = v.to_string().into_bytes();
                }
                r
            })
            .collect();
        let event = serde_json::from_value(events::event("shardId-000000000000", &records))?;
        Ok(Self { tables, names, target, event })
    }

    fn label(&self) -> String {
        match self.tables {
            0 => "fixed table".into(),
            1 => "routed, 1 table".into(),
            n => format!("routed, {n} tables"),
        }
    }
}

/// Runs every case and prints medians and ratios.
pub fn bench(c: &mut Criterion) -> anyhow::Result<()> {
    let schema = emulator::parse_bq_schema(super::SCHEMA)?;
    let cases = CASES.iter().map(|&n| Case::new(n)).collect::<anyhow::Result<Vec<_>>>()?;
    let emulator_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let tables = cases.iter().flat_map(|c| c.names.iter().map(|t| (t.clone(), schema.clone())));
    let emulator = emulator_rt.block_on(emulator::start(EmulatorConfig {
        tables: tables.collect(),
        ..EmulatorConfig::default()
    }))?;
    let dir = tempfile::tempdir()?;
    let mut medians = Vec::new();
    for case in &cases {
        let median = run_case(c, &emulator_rt, &emulator, &schema, dir.path(), case)?;
        medians.push((case.label(), median));
    }
    let baseline = medians.iter().find(|(l, _)| l == "routed, 1 table").map(|(_, m)| *m);
    for (label, median) in &medians {
        let rate = RECORDS as f64 / median.as_secs_f64();
        let ratio = baseline.map_or(f64::NAN, |b| b.as_secs_f64() / median.as_secs_f64());
        println!(
            "handler/routing: {label}: median {:.1} ms per 10,000-record invocation = {rate:.0} \
             records/s, {ratio:.2}x the one-table routed rate",
            median.as_secs_f64() * 1000.0,
        );
    }
    Ok(())
}

fn run_case(
    c: &mut Criterion,
    emulator_rt: &tokio::runtime::Runtime,
    emulator: &Emulator,
    schema: &TableSchema,
    dir: &std::path::Path,
    case: &Case,
) -> anyhow::Result<Duration> {
    let n = case.tables;
    let d = dir.display();
    let env = HashMap::from([
        ("BIGQUERY_TABLE", case.target.clone()),
        ("BIGQUERY_ENDPOINT", emulator.grpc_endpoint()),
        ("STATE_URL", format!("file://{d}/state-{n}")),
        ("SPILL_URL", format!("file://{d}/spill-{n}")),
        ("DLQ_URL", format!("file://{d}/dlq-{n}.ndjson")),
        ("LOG_LEVEL", "warn".into()),
    ]);
    let config = Config::from_lookup(|k| env.get(k).cloned())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let deps = rt.block_on(Deps::build(&config, LogOutput::Stderr))?;
    let reset = |t: &TableName| -> anyhow::Result<()> {
        let url = format!(
            "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
            emulator.rest_endpoint(),
            t.project(),
            t.dataset(),
            t.table()
        );
        emulator_rt.block_on(reqwest::Client::new().delete(url).send())?;
        emulator.create_table(t, schema.clone())?;
        Ok(())
    };
    let mut runs = Invocations::default();
    let mut group = c.benchmark_group("handler/routing");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(case.label(), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                for t in &case.names {
                    if let Err(e) = reset(t) {
                        eprintln!("reset failed: {e:#}");
                    }
                }
                total += runs.run(&rt, &deps, &case.event);
            }
            total
        });
    });
    group.finish();
    let failures = runs.failures;
    anyhow::ensure!(failures == 0, "{}: {failures} invocations did not land", case.label());
    for t in &case.names {
        let rows = emulator.read_rows(t)?.len();
        anyhow::ensure!(
            rows == RECORDS / case.names.len(),
            "{t}: {rows} rows, expected {}",
            RECORDS / case.names.len()
        );
    }
    let (wall, cpu) = runs.medians();
    if let Some(cpu) = cpu {
        println!(
            "handler/routing/{}: median {:.1} ms of handler-thread CPU per invocation",
            case.label(),
            cpu.as_secs_f64() * 1000.0
        );
    }
    wall.ok_or_else(|| anyhow::anyhow!("no invocation ran"))
}
