//! Rows → emulator through the client: pipelined AppendRows against one request at a
//! time (`max_inflight_requests = 1`), in the same run, over real TCP to the
//! in-process emulator. Reports MB/s (criterion's throughput) and, at the end,
//! the medians in rows/s and MB/s and their ratio.
//!
//! `cargo bench --bench append`

use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinesis_bigquery::bigquery::{
    AppendOutcome, AppendRequest, Appender, AppenderOptions, AuthMode, ClientConfig, RetryPolicy,
    WriteClient, write_stream,
};
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::append_rows_request::{ProtoData, Rows};
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{ProtoRows, ProtoSchema, TableFieldSchema, TableSchema};
use kinesis_bigquery::table::TableName;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type as PType};
use prost_types::{DescriptorProto, FieldDescriptorProto};

/// ~256-byte rows, 2,000 per request (~0.5 MB), 16 requests per iteration (~8 MB).
const ROWS_PER_REQUEST: usize = 2_000;
const REQUESTS: usize = 16;
const NAME_BYTES: usize = 240;

static SAMPLES: Mutex<Vec<(&'static str, f64)>> = Mutex::new(Vec::new());

fn table_schema() -> TableSchema {
    let col = |name: &str, t: Type, mode: Mode| TableFieldSchema {
        name: name.into(),
        r#type: t as i32,
        mode: mode as i32,
        ..Default::default()
    };
    TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            col("name", Type::String, Mode::Nullable),
        ],
    }
}

fn writer_schema() -> Rows {
    let field = |name: &str, number: i32, t: PType| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        r#type: Some(t as i32),
        label: Some(Label::Optional as i32),
        ..Default::default()
    };
    let descriptor = DescriptorProto {
        name: Some("Row".into()),
        field: vec![field("id", 1, PType::Int64), field("name", 2, PType::String)],
        ..Default::default()
    };
    Rows::ProtoRows(ProtoData {
        writer_schema: Some(ProtoSchema { proto_descriptor: Some(descriptor) }),
        rows: None,
    })
}

/// The requests of one iteration, starting at `offset`, and their bytes.
fn batch(offset: i64) -> (Vec<AppendRequest>, usize) {
    let name = "n".repeat(NAME_BYTES);
    let mut total = 0;
    let requests = (0..REQUESTS)
        .map(|k| {
            let start = offset + (k * ROWS_PER_REQUEST) as i64;
            let serialized_rows: Vec<Vec<u8>> = (start..start + ROWS_PER_REQUEST as i64)
                .map(|id| {
                    let mut row = Vec::with_capacity(NAME_BYTES + 16);
                    prost::encoding::int64::encode(1, &id, &mut row);
                    prost::encoding::string::encode(2, &name, &mut row);
                    row
                })
                .collect();
            let rows = ProtoRows { serialized_rows };
            let bytes = rows.encoded_len();
            total += bytes;
            AppendRequest {
                offset: Some(start),
                rows: Rows::ProtoRows(ProtoData { writer_schema: None, rows: Some(rows) }),
                row_count: ROWS_PER_REQUEST,
                bytes,
            }
        })
        .collect();
    (requests, total)
}

struct Bench {
    rt: tokio::runtime::Runtime,
    emulator: Emulator,
    client: WriteClient,
    http: reqwest::Client,
}

impl Bench {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let (emulator, client) = rt.block_on(async {
            let emulator = emulator::start(EmulatorConfig::default()).await.unwrap();
            let config = ClientConfig { endpoint: emulator.grpc_endpoint(), auth: AuthMode::None };
            (emulator, WriteClient::connect(&config).await.unwrap())
        });
        Self { rt, emulator, client, http: reqwest::Client::new() }
    }

    /// Runs `iters` iterations into a fresh table (deleted afterwards, so memory stays flat).
    fn run(&self, label: &'static str, inflight: usize, iters: u64) -> Duration {
        self.rt.block_on(async {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let table = TableName::new("bench", "ds", &format!("t_{id}")).unwrap();
            self.emulator.create_table(&table, table_schema()).unwrap();
            let stream = self
                .client
                .create_write_stream(&table, write_stream::Type::Committed)
                .await
                .unwrap()
                .name;
            let options = AppenderOptions {
                max_inflight_requests: inflight,
                max_inflight_bytes: 64 * 1024 * 1024,
                retry: RetryPolicy::none(),
            };
            let mut appender = Appender::new(self.client.clone(), stream, writer_schema(), options);
            let mut elapsed = Duration::ZERO;
            for i in 0..iters {
                let (requests, bytes) = batch((i as usize * REQUESTS * ROWS_PER_REQUEST) as i64);
                let started = Instant::now();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
                let outcomes = appender.append_all(requests, deadline).await;
                let took = started.elapsed();
                elapsed += took;
                assert!(
                    outcomes.iter().all(|o| matches!(o, AppendOutcome::Appended { .. })),
                    "{outcomes:?}"
                );
                let mbps = bytes as f64 / took.as_secs_f64() / 1e6;
                SAMPLES.lock().unwrap().push((label, mbps));
            }
            drop(appender);
            let url = format!(
                "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
                self.emulator.rest_endpoint(),
                table.project(),
                table.dataset(),
                table.table()
            );
            let _ = self.http.delete(url).send().await;
            elapsed
        })
    }
}

fn append(c: &mut Criterion) {
    let bench = Bench::new();
    let (_, bytes) = batch(0);
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Bytes(bytes as u64));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));
    group.bench_function("pipelined_16", |b| {
        b.iter_custom(|iters| bench.run("pipelined", 16, iters))
    });
    group.bench_function("one_at_a_time", |b| b.iter_custom(|iters| bench.run("serial", 1, iters)));
    group.finish();
    report(bytes);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(bytes: usize) {
    let samples = SAMPLES.lock().unwrap();
    let of = |l: &str| median(samples.iter().filter(|(k, _)| *k == l).map(|(_, v)| *v).collect());
    let (p, s) = (of("pipelined"), of("serial"));
    let rows_per_mb = (REQUESTS * ROWS_PER_REQUEST) as f64 / (bytes as f64 / 1e6);
    println!(
        "append medians per iteration ({REQUESTS} requests x {ROWS_PER_REQUEST} rows, {bytes} bytes):"
    );
    println!("  pipelined (16 in flight): {p:8.1} MB/s {:12.0} rows/s", p * rows_per_mb);
    println!("  one at a time:            {s:8.1} MB/s {:12.0} rows/s", s * rows_per_mb);
    println!("  ratio pipelined / one at a time: {:.2}x", p / s);
}

criterion_group!(benches, append);
criterion_main!(benches);
