//! JSON → row throughput (`cargo bench --bench rows`), in bytes of JSON per
//! second, on a realistic ~1 KiB event schema (20 top-level fields, nested,
//! repeated, timestamps) and on 200-column wide rows.
//!
//! In the same run: `serde_json` into `IgnoredAny` (parse-only, the practical
//! ceiling), JSON → proto with the [`Encoder`], JSON → Arrow (encode plus the
//! record batch and its IPC message for the whole set, as one request), and a
//! naive path (`serde_json::Value` → `prost_reflect::DynamicMessage` →
//! encode). Targets (issue 3): proto ≥ 0.5× parse-only and ≥ 3× naive.
//! After each set it prints the median throughput of each path and the
//! ratios the targets are stated in, all from this run's samples.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{TableFieldSchema, TableSchema};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RecordMeta, RowFormat, UnknownFields};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use serde_json::Value as Json;

fn col(name: &str, t: Type, mode: Mode) -> TableFieldSchema {
    TableFieldSchema {
        name: name.into(),
        r#type: t as i32,
        mode: mode as i32,
        ..Default::default()
    }
}

fn rec(name: &str, mode: Mode, fields: Vec<TableFieldSchema>) -> TableFieldSchema {
    TableFieldSchema { fields, ..col(name, Type::Struct, mode) }
}

fn event_schema() -> TableSchema {
    use Mode::{Nullable as N, Repeated as R, Required as Q};
    TableSchema {
        fields: vec![
            col("event_id", Type::String, Q),
            col("event_type", Type::String, Q),
            col("ts", Type::Timestamp, Q),
            col("received_at", Type::Timestamp, N),
            rec(
                "user",
                N,
                vec![
                    col("id", Type::Int64, N),
                    col("email", Type::String, N),
                    col("name", Type::String, N),
                    col("country", Type::String, N),
                    col("segments", Type::String, R),
                ],
            ),
            rec(
                "session",
                N,
                vec![
                    col("id", Type::String, N),
                    col("started_at", Type::Timestamp, N),
                    col("duration_ms", Type::Int64, N),
                ],
            ),
            rec(
                "device",
                N,
                vec![
                    col("os", Type::String, N),
                    col("version", Type::String, N),
                    col("model", Type::String, N),
                    rec("screen", N, vec![col("w", Type::Int64, N), col("h", Type::Int64, N)]),
                ],
            ),
            rec(
                "page",
                N,
                vec![
                    col("url", Type::String, N),
                    col("referrer", Type::String, N),
                    col("title", Type::String, N),
                ],
            ),
            rec(
                "items",
                R,
                vec![
                    col("sku", Type::String, N),
                    col("qty", Type::Int64, N),
                    col("price", Type::Double, N),
                ],
            ),
            col("amount", Type::Double, N),
            col("currency", Type::String, N),
            col("consent", Type::Bool, N),
            col("tags", Type::String, R),
            col("ip", Type::String, N),
            rec("geo", N, vec![col("lat", Type::Double, N), col("lon", Type::Double, N)]),
            col("day", Type::Date, N),
            col("version", Type::Int64, N),
            col("experiments", Type::Int64, R),
            col("latency_ms", Type::Double, N),
            col("ok", Type::Bool, N),
        ],
    }
}

fn event(i: u64) -> String {
    format!(
        r#"{{"event_id":"3f6c2a1e-8b7d-4c2e-9a1b-{i:012}","event_type":"page_view","ts":"2024-05-06T07:08:{:02}.123456Z","received_at":{},"user":{{"id":{},"email":"user{i}@example.com","name":"Jane Q. Example","country":"DE","segments":["returning","newsletter","mobile-first"]}},"session":{{"id":"sess-{i:08x}","started_at":"2024-05-06T06:59:01.000001Z","duration_ms":{}}},"device":{{"os":"Android","version":"14.1.2","model":"Pixel 8 Pro","screen":{{"w":1344,"h":2992}}}},"page":{{"url":"https://shop.example.com/catalog/category/shoes/running?page={i}&sort=price_asc&utm_source=newsletter","referrer":"https://www.example.org/search?q=running+shoes","title":"Running shoes — Example Shop"}},"items":[{{"sku":"SKU-{i}-A","qty":1,"price":89.95}},{{"sku":"SKU-{i}-B","qty":2,"price":12.5}},{{"sku":"SKU-{i}-C","qty":1,"price":149.0}}],"amount":{}.95,"currency":"EUR","consent":true,"tags":["spring-sale","free-shipping","vip"],"ip":"203.0.113.{}","geo":{{"lat":52.520008,"lon":13.404954}},"day":"2024-05-06","version":{},"experiments":[101,205,377,412],"latency_ms":{}.25,"ok":true}}"#,
        i % 60,
        1_714_979_289_000_000 + i,
        1_000_000 + i,
        i * 37 % 100_000,
        i % 1000,
        i % 250,
        i % 7,
        i % 900,
    )
}

fn wide_schema() -> TableSchema {
    let types = [Type::Int64, Type::String, Type::Double, Type::Bool, Type::Timestamp];
    TableSchema {
        fields: (0..200).map(|c| col(&format!("c{c}"), types[c % 5], Mode::Nullable)).collect(),
    }
}

fn wide(i: u64) -> String {
    let cells: Vec<String> = (0..200u64)
        .map(|c| {
            let v = match c % 5 {
                0 => format!("{}", i * 1000 + c),
                1 => format!("\"value {i} of column {c}\""),
                2 => format!("{}.5", i + c),
                3 => (c % 2 == 0).to_string(),
                _ => format!("\"2024-05-06T07:{:02}:{:02}.5Z\"", c % 60, i % 60),
            };
            format!("\"c{c}\":{v}")
        })
        .collect();
    format!("{{{}}}", cells.join(","))
}

/// The naive path's descriptor: the encoder's own, through prost-reflect.
fn descriptor(enc: &Encoder) -> MessageDescriptor {
    let file = FileDescriptorProto {
        name: Some("row.proto".into()),
        syntax: Some("proto2".into()),
        message_type: vec![enc.proto_schema().proto_descriptor.unwrap_or_default()],
        ..Default::default()
    };
    let pool =
        DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] }).unwrap();
    pool.get_message_by_name("Row").unwrap()
}

/// JSON tree → dynamic message, converting by the field's proto kind; TIMESTAMP
/// and DATE strings parsed with chrono, as a straightforward writer would.
fn naive(desc: &MessageDescriptor, json: &[u8]) -> Vec<u8> {
    let v: Json = serde_json::from_slice(json).unwrap();
    to_message(desc, &v).encode_to_vec()
}

fn to_message(desc: &MessageDescriptor, v: &Json) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    let Json::Object(obj) = v else { return m };
    for (k, val) in obj {
        let Some(f) = desc.get_field_by_name(&k.to_ascii_lowercase()) else { continue };
        let conv = |x: &Json| to_value(&f.kind(), k, x);
        let value = match val {
            Json::Null => continue,
            Json::Array(items) if f.is_list() => Value::List(items.iter().map(conv).collect()),
            x => conv(x),
        };
        m.set_field(&f, value);
    }
    m
}

fn to_value(kind: &Kind, name: &str, x: &Json) -> Value {
    match kind {
        Kind::Message(d) => Value::Message(to_message(d, x)),
        Kind::String => Value::String(match x {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        }),
        Kind::Bool => Value::Bool(x.as_bool().unwrap_or(false)),
        Kind::Double => Value::F64(x.as_f64().unwrap_or(0.0)),
        Kind::Int32 => Value::I32(match x {
            Json::String(s) => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32)
                .unwrap_or(0),
            other => other.as_i64().unwrap_or(0) as i32,
        }),
        Kind::Int64 => Value::I64(match x {
            Json::String(s)
                if name.contains("ts") || name.contains("_at") || name.starts_with('c') =>
            {
                chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_micros()).unwrap_or(0)
            }
            Json::String(s) => s.parse().unwrap_or(0),
            other => other.as_i64().unwrap_or(0),
        }),
        _ => Value::Bytes(Default::default()),
    }
}

fn bench_set(c: &mut Criterion, name: &str, schema: &TableSchema, records: &[String]) {
    let bytes: usize = records.iter().map(String::len).sum();
    eprintln!(
        "{name}: {} records, {} bytes of JSON each on average",
        records.len(),
        bytes / records.len()
    );
    let proto = Encoder::new(
        schema,
        EncoderOptions { format: RowFormat::Proto, unknown_fields: UnknownFields::Reject },
    )
    .unwrap();
    let arrow = Encoder::new(
        schema,
        EncoderOptions { format: RowFormat::Arrow, unknown_fields: UnknownFields::Reject },
    )
    .unwrap();
    let desc = descriptor(&proto);
    let meta = RecordMeta::default();
    // Sanity: the naive path and the encoder agree on the first record's size class.
    let mut check = Vec::new();
    proto.encode(records[0].as_bytes(), &meta, &mut check).unwrap();
    let naive_len = naive(&desc, records[0].as_bytes()).len();
    assert!(
        naive_len > check.len() / 2,
        "naive path dropped fields: {naive_len} vs {}",
        check.len()
    );

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut samples = Samples::default();
    g.bench_function("serde_json_ignored_any", |b| {
        b.iter_custom(|iters| {
            samples.time("serde_json_ignored_any", iters, || {
                for r in records {
                    black_box(
                        serde_json::from_slice::<serde::de::IgnoredAny>(r.as_bytes()).unwrap(),
                    );
                }
            })
        })
    });
    let mut out = Vec::with_capacity(4096);
    g.bench_function("proto", |b| {
        b.iter_custom(|iters| {
            samples.time("proto", iters, || {
                for r in records {
                    out.clear();
                    proto.encode(r.as_bytes(), &meta, &mut out).unwrap();
                    black_box(&out);
                }
            })
        })
    });
    let mut rows: Vec<bytes::Bytes> = Vec::new();
    g.bench_function("arrow", |b| {
        b.iter_custom(|iters| {
            samples.time("arrow", iters, || {
                rows.clear();
                for r in records {
                    let mut out = Vec::new();
                    arrow.encode(r.as_bytes(), &meta, &mut out).unwrap();
                    rows.push(out.into());
                }
                black_box(arrow.request_rows(&rows, false).unwrap());
            })
        })
    });
    g.bench_function("naive_value_dynamic_message", |b| {
        b.iter_custom(|iters| {
            samples.time("naive_value_dynamic_message", iters, || {
                for r in records {
                    black_box(naive(&desc, r.as_bytes()));
                }
            })
        })
    });
    g.finish();
    samples.report(name, bytes);
}

/// Per-iteration times of each path, as criterion's samples ran them.
#[derive(Default)]
struct Samples(Vec<(&'static str, Vec<Duration>)>);

impl Samples {
    /// Runs `f` `iters` times; records and returns the elapsed time.
    fn time(&mut self, path: &'static str, iters: u64, mut f: impl FnMut()) -> Duration {
        let started = Instant::now();
        for _ in 0..iters {
            f();
        }
        let elapsed = started.elapsed();
        let per = elapsed / u32::try_from(iters.max(1)).unwrap_or(u32::MAX);
        match self.0.iter_mut().find(|(p, _)| *p == path) {
            Some((_, v)) => v.push(per),
            None => self.0.push((path, vec![per])),
        }
        elapsed
    }

    fn median(&self, path: &str) -> Option<Duration> {
        let (_, v) = self.0.iter().find(|(p, _)| *p == path)?;
        let mut v = v.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    }

    fn report(&self, set: &str, bytes: usize) {
        let mib_s = |d: Duration| bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0);
        println!("{set}: median throughput (MiB/s of JSON) and ratios, this run:");
        for (path, _) in &self.0 {
            if let Some(d) = self.median(path) {
                println!("  {path:30} {:8.1} MiB/s", mib_s(d));
            }
        }
        let ratio =
            |a: &str, b: &str| Some(self.median(b)?.as_secs_f64() / self.median(a)?.as_secs_f64());
        for (a, b, target) in [
            ("proto", "serde_json_ignored_any", "target >= 0.5"),
            ("proto", "naive_value_dynamic_message", "target >= 3"),
            ("arrow", "serde_json_ignored_any", ""),
        ] {
            if let Some(r) = ratio(a, b) {
                println!("  {a} / {b}: {r:.2}x {target}");
            }
        }
    }
}

fn benches(c: &mut Criterion) {
    let events: Vec<String> = (0..1000).map(event).collect();
    let wides: Vec<String> = (0..200).map(wide).collect();
    bench_set(c, "event_1k", &event_schema(), &events);
    bench_set(c, "wide_200", &wide_schema(), &wides);
}

criterion_group!(rows, benches);
criterion_main!(rows);
