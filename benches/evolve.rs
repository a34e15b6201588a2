//! Schema evolution measured (issue 14): an event stream over 4 shards in
//! which a new field appears mid-run, through `handler::handle` with
//! `UNKNOWN_FIELDS=add` into the in-process emulator (gRPC + REST), file://
//! state, spillover and dead letters. The emulator makes a schema change
//! visible to writers after `SCHEMA_DELAY` (the service takes seconds to
//! minutes; the delay is a stand-in, so the wait measured is delay + polling).
//!
//! Prints: records that waited for the column, time from the first
//! invocation that saw the field to its rows landing with the column, rows
//! lost, dead letters; and the cost of `add` on batches with no new field
//! (median invocation time, `add` ÷ `reject`, same run, same events).
//!
//! Routing by record (1/4/16 tables) is not measured: routing is not built.
//!
//! Run: `cargo bench --bench evolve` (release profile).

// Shared with the tests; this bench uses only part of it.
#[allow(dead_code)]
#[path = "../tests/it/events.rs"]
mod events;

use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_bigquery::config::Config;
use kinesis_bigquery::emulator::{self, EmulatorConfig};
use kinesis_bigquery::handler::{self, Deps};
use kinesis_bigquery::metrics::LogOutput;
use kinesis_bigquery::table::TableName;
use serde_json::Value;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const SHARDS: usize = 4;
const PER_SHARD: usize = 500;
const ROUNDS: usize = 12;
/// The round from which every record carries the new field.
const FIELD_FROM: usize = 6;
const SCHEMA_DELAY: Duration = Duration::from_millis(500);
const SCHEMA: &str = include_str!("../tests/fixtures/events.schema.json");

fn round_event(round: usize, with_field: bool) -> anyhow::Result<KinesisEvent> {
    let mut all = Vec::new();
    for shard in 0..SHARDS {
        let first = round * PER_SHARD;
        let records: Vec<events::Rec> = (first..first + PER_SHARD)
            .map(|i| {
                let mut v: Value = serde_json::from_slice(&events::row_json(i, 400))?;
                if with_field {
                    v["plan"] = Value::from(format!("p{}", i % 7));
                }
                Ok(events::Rec {
                    sequence_number: events::seq(i),
                    partition_key: format!("k{shard}"),
                    data: v.to_string().into_bytes(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        let ev = events::event(&format!("shardId-{shard:012}"), &records);
        all.extend(ev["Records"].as_array().cloned().unwrap_or_default());
    }
    Ok(serde_json::from_value(serde_json::json!({ "Records": all }))?)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let emulator_rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let emu = emulator_rt.block_on(emulator::start(EmulatorConfig {
        schema_delay: SCHEMA_DELAY,
        ..EmulatorConfig::default()
    }))?;
    let schema = emulator::parse_bq_schema(SCHEMA)?;
    let dir = tempfile::tempdir()?;
    let deps_for = |table: &TableName, unknown: &str| -> anyhow::Result<Deps> {
        let d = dir.path().join(table.table());
        let env = HashMap::from([
            ("BIGQUERY_TABLE", table.to_string()),
            ("BIGQUERY_ENDPOINT", emu.grpc_endpoint()),
            ("BIGQUERY_REST_ENDPOINT", emu.rest_endpoint()),
            ("UNKNOWN_FIELDS", unknown.to_string()),
            ("STATE_URL", format!("file://{}/state", d.display())),
            ("SPILL_URL", format!("file://{}/spill", d.display())),
            ("DLQ_URL", format!("file://{}/dlq.ndjson", d.display())),
            ("LOG_LEVEL", "warn".into()),
        ]);
        let config = Config::from_lookup(|k| env.get(k).cloned())?;
        Ok(rt.block_on(Deps::build(&config, LogOutput::Stderr))?)
    };
    let invoke = |deps: &Deps, ev: KinesisEvent| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let r =
            rt.block_on(handler::handle(handler::local_event(ev, Duration::from_secs(60)), deps))?;
        anyhow::ensure!(r.batch_item_failures.is_empty(), "records handed back: {r:?}");
        Ok(started.elapsed())
    };

    // 1. The new field mid-run.
    let table: TableName = "bench.evolve.midrun".parse()?;
    emu.create_table(&table, schema.clone())?;
    let deps = deps_for(&table, "add")?;
    let mut before = Vec::new();
    let mut sighting = Duration::ZERO;
    let mut after = Vec::new();
    for round in 0..ROUNDS {
        let took = invoke(&deps, round_event(round, round >= FIELD_FROM)?)?;
        match round.cmp(&FIELD_FROM) {
            std::cmp::Ordering::Less => before.push(took),
            std::cmp::Ordering::Equal => sighting = took,
            std::cmp::Ordering::Greater => after.push(took),
        }
    }
    let rows = emu.read_rows(&table)?;
    let with_plan = rows.iter().filter(|r| r["plan"].is_string()).count();
    let letters = std::fs::read_to_string(dir.path().join(table.table()).join("dlq.ndjson"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let sent = SHARDS * PER_SHARD * ROUNDS;
    println!(
        "new field mid-run: {SHARDS} shards x {PER_SHARD} records x {ROUNDS} rounds, field from round {FIELD_FROM}, schema delay {} ms",
        SCHEMA_DELAY.as_millis()
    );
    println!("  records that waited for the column: {}", SHARDS * PER_SHARD);
    println!(
        "  first sighting -> rows with the column landed: {} ms (median invocation before {} ms, after {} ms)",
        sighting.as_millis(),
        median(before).as_millis(),
        median(after).as_millis()
    );
    println!("  rows lost: {}", sent.saturating_sub(rows.len()));
    println!(
        "  rows with the new column: {with_plan} of {}",
        SHARDS * PER_SHARD * (ROUNDS - FIELD_FROM)
    );
    println!("  dead letters: {letters}");

    // 2. What `add` costs when no field is new: same events, reject vs add.
    let mut times: HashMap<&str, Vec<Duration>> = HashMap::new();
    for mode in ["reject", "add"] {
        let t: TableName = format!("bench.evolve.cost_{mode}").parse()?;
        emu.create_table(&t, schema.clone())?;
        let deps = deps_for(&t, mode)?;
        for round in 0..9 {
            times.entry(mode).or_default().push(invoke(&deps, round_event(round, false)?)?);
        }
    }
    let reject = median(times.remove("reject").unwrap_or_default());
    let add = median(times.remove("add").unwrap_or_default());
    println!(
        "no new field, {} records per invocation: median reject {:.1} ms, add {:.1} ms, add / reject = {:.2}",
        SHARDS * PER_SHARD,
        reject.as_secs_f64() * 1e3,
        add.as_secs_f64() * 1e3,
        add.as_secs_f64() / reject.as_secs_f64().max(1e-9)
    );
    emulator_rt.block_on(emu.shutdown());
    Ok(())
}
