//! Rows → emulator through the client: pipelined AppendRows against one request at a
//! time (`max_inflight_requests = 1`), in the same run, over real TCP to the
//! in-process emulator — once directly on loopback, once through a proxy that
//! delays every byte by 5 ms each way (10 ms round trip, a same-region cloud link).
//! Pipelining exists to hide that round trip; loopback shows the CPU-bound ceiling.
//! Reports MB/s (criterion's throughput) and, at the end, the medians in rows/s
//! and MB/s and their ratios.
//!
//! `cargo bench --bench append`

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use kinesis_bigquery::bigquery::{
    AppendOutcome, AppendRequest, Appender, AppenderOptions, Endpoint, RetryPolicy, WriteClient,
    write_stream,
};
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::append_rows_request::{ProtoData, Rows};
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{ProtoRows, ProtoSchema, TableFieldSchema, TableSchema};
use kinesis_bigquery::table::TableName;
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type as PType};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// ~256-byte rows, 2,000 per request (~0.5 MB), 16 requests per iteration (~8 MB).
const ROWS_PER_REQUEST: usize = 2_000;
const REQUESTS: usize = 16;
const NAME_BYTES: usize = 240;
/// One-way delay of the proxy.
const ONE_WAY: Duration = Duration::from_millis(5);

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
            let serialized_rows: Vec<bytes::Bytes> = (start..start + ROWS_PER_REQUEST as i64)
                .map(|id| {
                    let mut row = Vec::with_capacity(NAME_BYTES + 16);
                    prost::encoding::int64::encode(1, &id, &mut row);
                    prost::encoding::string::encode(2, &name, &mut row);
                    row.into()
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
    /// The same emulator behind the latency proxy.
    far: WriteClient,
    http: reqwest::Client,
}

/// A TCP proxy that delivers every chunk `one_way` after it was read, in order,
/// in both directions: latency without a bandwidth cap.
async fn latency_proxy(upstream: SocketAddr, one_way: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(upstream).await else { continue };
            let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(delayed_pipe(ri, wo, one_way));
            tokio::spawn(delayed_pipe(ro, wi, one_way));
        }
    });
    addr
}

async fn delayed_pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let mut buf = vec![0u8; 256 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        let _ = tx.send((tokio::time::Instant::now() + delay, buf[..n].to_vec()));
    }
}

impl Bench {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let (emulator, client, far) = rt.block_on(async {
            let emulator = emulator::start(EmulatorConfig::default()).await.unwrap();
            let config = emulator.endpoint();
            let proxy = latency_proxy(emulator.grpc_addr(), ONE_WAY).await;
            let far = Endpoint::Emulator { url: format!("http://{proxy}") };
            let far = WriteClient::connect(&far).await.unwrap();
            (emulator, WriteClient::connect(&config).await.unwrap(), far)
        });
        Self { rt, emulator, client, far, http: reqwest::Client::new() }
    }

    /// Runs `iters` iterations into a fresh table (deleted afterwards, so memory stays flat).
    fn run(&self, label: &'static str, far: bool, inflight: usize, iters: u64) -> Duration {
        let client = if far { &self.far } else { &self.client };
        self.rt.block_on(async {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let table = TableName::new("bench", "ds", &format!("t_{id}")).unwrap();
            self.emulator.create_table(&table, table_schema()).unwrap();
            let stream = client
                .create_write_stream(&table, write_stream::Type::Committed)
                .await
                .unwrap()
                .name;
            let options = AppenderOptions {
                max_inflight_requests: inflight,
                max_inflight_bytes: 64 * 1024 * 1024,
                retry: RetryPolicy::none(),
            };
            let mut appender = Appender::new(client.clone(), stream, writer_schema(), options);
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
    group.bench_function("loopback/pipelined_16", |b| {
        b.iter_custom(|iters| bench.run("loopback pipelined", false, 16, iters))
    });
    group.bench_function("loopback/one_at_a_time", |b| {
        b.iter_custom(|iters| bench.run("loopback serial", false, 1, iters))
    });
    group.finish();
    let mut group = c.benchmark_group("append_10ms_rtt");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    group.bench_function("pipelined_16", |b| {
        b.iter_custom(|iters| bench.run("10ms pipelined", true, 16, iters))
    });
    group.bench_function("one_at_a_time", |b| {
        b.iter_custom(|iters| bench.run("10ms serial", true, 1, iters))
    });
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
    let rows_per_mb = (REQUESTS * ROWS_PER_REQUEST) as f64 / (bytes as f64 / 1e6);
    println!(
        "append medians per iteration ({REQUESTS} requests x {ROWS_PER_REQUEST} rows, {bytes} bytes):"
    );
    for link in ["loopback", "10ms"] {
        let (p, s) = (of(&format!("{link} pipelined")), of(&format!("{link} serial")));
        println!(
            "  {link:8} pipelined (16 in flight): {p:8.1} MB/s {:10.0} rows/s",
            p * rows_per_mb
        );
        println!(
            "  {link:8} one at a time:            {s:8.1} MB/s {:10.0} rows/s",
            s * rows_per_mb
        );
        println!("  {link:8} ratio pipelined / one at a time: {:.2}x", p / s);
    }
}

criterion_group!(benches, append);
criterion_main!(benches);
