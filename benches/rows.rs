//! JSON → row throughput (`cargo bench --bench rows`) on the record shapes
//! users send (`benches/shapes/mod.rs`): today's 1 KiB event, a common
//! analytics event (NUMERIC string, JSON object, multibyte text), 200-column
//! wide rows, NUMERIC/BIGNUMERIC strings, JSON columns holding objects and
//! arrays, multibyte text with escapes, null-heavy rows, and deeply nested
//! RECORDs with REPEATED fields. Each shape is its own criterion group
//! (`cargo bench --bench rows -- numeric`).
//!
//! In each group, on the same bytes: `serde_json` into `IgnoredAny`
//! (parse-only, the practical ceiling), JSON → proto with the [`Encoder`],
//! JSON → Arrow (encode plus the record batch and its IPC message for the
//! whole set, as one request), and a naive path (`serde_json::Value` →
//! `prost_reflect::DynamicMessage` → encode, each value converted by its
//! column's type). Targets (issue 16): proto ≥ 0.6× parse-only and ≥ 10×
//! naive, Arrow ≥ 0.4× parse-only. After each group it prints the median
//! throughput of each path and those ratios from criterion's samples, then
//! again from rounds that alternate the paths (the ones that count: on a
//! shared machine, load changes between criterion's per-path stretches),
//! and at the end a table of every shape's interleaved ratios.
//!
//! Then (filter `types`, or no filter) a per-type breakdown: ns per value
//! for each BigQuery column type, 20 columns of one type per row, medians
//! of interleaved rounds outside criterion.

#[path = "shapes/mod.rs"]
mod shapes;

use std::hint::black_box;
use std::time::{Duration, Instant};

use arrow_buffer::i256;
use base64::Engine as _;
use criterion::{Criterion, Throughput};
use kinesis_bigquery::pb::storage::table_field_schema::Type;
use kinesis_bigquery::pb::storage::{TableFieldSchema, TableSchema};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RecordMeta, RowFormat, UnknownFields};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use serde_json::Value as Json;

const BASELINE: &str = "serde_json_ignored_any";
const NAIVE: &str = "naive_value_dynamic_message";

/// The naive path: the encoder's own descriptor through prost-reflect, and
/// the table schema to convert each value by its column's type.
struct Naive {
    desc: MessageDescriptor,
    fields: Vec<TableFieldSchema>,
}

impl Naive {
    fn new(enc: &Encoder, schema: &TableSchema) -> Self {
        let file = FileDescriptorProto {
            name: Some("row.proto".into()),
            syntax: Some("proto2".into()),
            message_type: vec![enc.proto_schema().proto_descriptor.unwrap_or_default()],
            ..Default::default()
        };
        let pool = DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] })
            .unwrap();
        Naive { desc: pool.get_message_by_name("Row").unwrap(), fields: schema.fields.clone() }
    }

    /// JSON tree → dynamic message → bytes, as a straightforward writer
    /// would: TIMESTAMP, DATE, DATETIME, TIME with chrono, decimals through
    /// a big integer, JSON values re-serialized.
    fn encode(&self, json: &[u8]) -> Vec<u8> {
        let v: Json = serde_json::from_slice(json).unwrap();
        to_message(&self.desc, &self.fields, &v).encode_to_vec()
    }
}

fn to_message(desc: &MessageDescriptor, fields: &[TableFieldSchema], v: &Json) -> DynamicMessage {
    let mut m = DynamicMessage::new(desc.clone());
    let Json::Object(obj) = v else { return m };
    for (k, val) in obj {
        let Some(col) = fields.iter().find(|c| c.name.eq_ignore_ascii_case(k)) else { continue };
        let Some(f) = desc.get_field_by_name(&col.name.to_ascii_lowercase()) else { continue };
        let conv = |x: &Json| to_value(&f.kind(), col, x);
        let value = match val {
            Json::Null => continue,
            Json::Array(items) if f.is_list() => Value::List(items.iter().map(conv).collect()),
            x => conv(x),
        };
        m.set_field(&f, value);
    }
    m
}

fn text(x: &Json) -> String {
    match x {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn to_value(kind: &Kind, col: &TableFieldSchema, x: &Json) -> Value {
    if let Kind::Message(d) = kind {
        return Value::Message(to_message(d, &col.fields, x));
    }
    let ty = Type::try_from(col.r#type).unwrap_or(Type::String);
    let civil = |fmt: &str| chrono::NaiveDateTime::parse_from_str(&text(x), fmt);
    match ty {
        Type::Bool => Value::Bool(x.as_bool().unwrap_or(false)),
        Type::Int64 => Value::I64(x.as_i64().unwrap_or_else(|| text(x).parse().unwrap_or(0))),
        Type::Double => Value::F64(x.as_f64().unwrap_or_else(|| text(x).parse().unwrap_or(0.0))),
        Type::Timestamp => Value::I64(match x {
            Json::String(s) => {
                chrono::DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_micros()).unwrap_or(0)
            }
            other => other.as_i64().unwrap_or(0),
        }),
        Type::Date => Value::I32(
            chrono::NaiveDate::parse_from_str(&text(x), "%Y-%m-%d")
                .map(|d| (d - chrono::NaiveDate::default()).num_days() as i32)
                .unwrap_or(0),
        ),
        Type::Datetime => Value::I64(civil("%Y-%m-%d %H:%M:%S%.f").map(pack_datetime).unwrap_or(0)),
        Type::Time => Value::I64(
            chrono::NaiveTime::parse_from_str(&text(x), "%H:%M:%S%.f")
                .map(|t| pack_time(&t))
                .unwrap_or(0),
        ),
        Type::Numeric => Value::Bytes(decimal_bytes(&text(x), 9).into()),
        Type::Bignumeric => Value::Bytes(decimal_bytes(&text(x), 38).into()),
        Type::Bytes => Value::Bytes(
            base64::engine::general_purpose::STANDARD.decode(text(x)).unwrap_or_default().into(),
        ),
        _ => Value::String(text(x)),
    }
}

fn pack_time(t: &chrono::NaiveTime) -> i64 {
    use chrono::Timelike;
    (i64::from(t.hour()) << 32)
        | (i64::from(t.minute()) << 26)
        | (i64::from(t.second()) << 20)
        | i64::from(t.nanosecond() / 1000)
}

fn pack_datetime(t: chrono::NaiveDateTime) -> i64 {
    use chrono::Datelike;
    (i64::from(t.year()) << 46)
        | (i64::from(t.month()) << 42)
        | (i64::from(t.day()) << 37)
        | pack_time(&t.time())
}

/// Decimal text → unscaled integer at `scale` → minimal little-endian
/// two's complement, the straightforward way (strings and a big integer).
fn decimal_bytes(s: &str, scale: usize) -> Vec<u8> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = frac.to_string();
    frac.truncate(scale);
    let digits = format!("{int}{frac:0<scale$}");
    let v = i256::from_string(&digits).unwrap_or(i256::ZERO);
    let mut bytes = v.to_le_bytes().to_vec();
    while bytes.len() > 1 {
        let (last, prev) = (bytes[bytes.len() - 1], bytes[bytes.len() - 2]);
        if (last == 0 && prev < 0x80) || (last == 0xff && prev >= 0x80) {
            bytes.pop();
        } else {
            break;
        }
    }
    bytes
}

fn encoder(schema: &TableSchema, format: RowFormat) -> Encoder {
    Encoder::new(schema, EncoderOptions { format, unknown_fields: UnknownFields::Reject }).unwrap()
}

/// One shape's paths over its records, each run once over the whole set.
struct Paths<'a> {
    records: &'a [String],
    proto: Encoder,
    arrow: Encoder,
    naive: Naive,
    meta: RecordMeta<'static>,
    out: Vec<u8>,
    /// The Arrow path's row buffer, kept across runs like `out`.
    batch: Vec<u8>,
    rows: Vec<bytes::Bytes>,
    /// Row ends in `batch` after [`Self::arrow_rows`].
    ends: Vec<usize>,
    /// A copy of those rows for [`Self::arrow_batch`].
    kept: Vec<bytes::Bytes>,
}

impl<'a> Paths<'a> {
    fn new(schema: &TableSchema, records: &'a [String]) -> Self {
        let proto = encoder(schema, RowFormat::Proto);
        let naive = Naive::new(&proto, schema);
        let paths = Paths {
            records,
            arrow: encoder(schema, RowFormat::Arrow),
            proto,
            naive,
            meta: RecordMeta::default(),
            out: Vec::with_capacity(4096),
            batch: Vec::new(),
            rows: Vec::new(),
            ends: Vec::new(),
            kept: Vec::new(),
        };
        // Sanity: every record encodes, and the naive path keeps the fields.
        for r in records {
            let mut check = Vec::new();
            if let Err(e) = paths.proto.encode(r.as_bytes(), &paths.meta, &mut check) {
                panic!("record does not encode: {e}: {r}");
            }
            let naive_len = paths.naive.encode(r.as_bytes()).len();
            assert!(
                naive_len > check.len() / 2,
                "naive path dropped fields: {naive_len} vs {} in {r}",
                check.len()
            );
        }
        paths
    }

    fn baseline(&mut self) {
        for r in self.records {
            black_box(serde_json::from_slice::<serde::de::IgnoredAny>(r.as_bytes()).unwrap());
        }
    }

    fn proto(&mut self) {
        for r in self.records {
            self.out.clear();
            self.proto.encode(r.as_bytes(), &self.meta, &mut self.out).unwrap();
            black_box(&self.out);
        }
    }

    /// As the handler does it: every row into one buffer, rows sliced out
    /// of it (no copy), one record batch for the set. The row buffer is
    /// reused across runs (its allocation taken back once the rows are
    /// dropped), as the proto path reuses `out`: allocating a fresh buffer
    /// of the whole set per run charged only this path with page faults
    /// for memory the other paths get outside the timed loop.
    fn arrow(&mut self) {
        self.arrow_rows();
        let all = bytes::Bytes::from(std::mem::take(&mut self.batch));
        self.rows.clear();
        let mut start = 0;
        for &end in &self.ends {
            self.rows.push(all.slice(start..end));
            start = end;
        }
        black_box(self.arrow.request_rows(&self.rows, false).unwrap());
        self.rows.clear();
        // The slices are gone: the buffer is unique again and comes back
        // whole (cleared first, so nothing is copied).
        self.batch = match all.try_into_mut() {
            Ok(mut m) => {
                m.clear();
                m.into()
            }
            Err(_) => Vec::new(),
        };
    }

    /// The Arrow path's first half alone: every row encoded into the row
    /// buffer (as [`Self::arrow`] does), and the rows kept for
    /// [`Self::arrow_batch`]: where the Arrow path's time goes.
    fn arrow_rows(&mut self) {
        let mut buf = std::mem::take(&mut self.batch);
        buf.clear();
        let mut ends = Vec::with_capacity(self.records.len());
        for r in self.records {
            self.arrow.encode(r.as_bytes(), &self.meta, &mut buf).unwrap();
            ends.push(buf.len());
        }
        black_box(&buf);
        self.batch = buf;
        self.ends = ends;
    }

    /// The Arrow path's second half alone: the record batch and its IPC
    /// message from the rows [`Self::arrow_rows`] left.
    fn arrow_batch(&mut self) {
        if self.kept.is_empty() {
            let all = bytes::Bytes::copy_from_slice(&self.batch);
            let mut start = 0;
            for &end in &self.ends {
                self.kept.push(all.slice(start..end));
                start = end;
            }
        }
        black_box(self.arrow.request_rows(&self.kept, false).unwrap());
    }

    fn naive(&mut self) {
        for r in self.records {
            black_box(self.naive.encode(r.as_bytes()));
        }
    }

    fn run(&mut self, path: &str) {
        match path {
            BASELINE => self.baseline(),
            "proto" => self.proto(),
            "arrow" => self.arrow(),
            ARROW_ROWS => self.arrow_rows(),
            ARROW_BATCH => self.arrow_batch(),
            _ => self.naive(),
        }
    }
}

const PATHS: [&str; 4] = [BASELINE, "proto", "arrow", NAIVE];

/// The Arrow path's two halves, timed apart in the interleaved rounds only.
const ARROW_ROWS: &str = "arrow: rows only";
const ARROW_BATCH: &str = "arrow: batch only";

/// One shape's ratios, for the closing table.
struct Ratios {
    shape: &'static str,
    mib_s: f64,
    proto_vs_parse: f64,
    proto_vs_naive: f64,
    arrow_vs_parse: f64,
}

fn bench_shape(c: &mut Criterion, shape: &shapes::Shape, n: u64) -> Option<Ratios> {
    let records = shape.records(n);
    let bytes: usize = records.iter().map(String::len).sum();
    eprintln!(
        "{}: {} records, {} bytes of JSON each on average: {}",
        shape.name,
        records.len(),
        bytes / records.len(),
        shape.about
    );
    let mut paths = Paths::new(&shape.schema, &records);
    let mut g = c.benchmark_group(shape.name);
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut samples = Samples::default();
    for path in PATHS {
        g.bench_function(path, |b| {
            b.iter_custom(|iters| samples.time(path, iters, || paths.run(path)))
        });
    }
    g.finish();
    samples.report(shape.name, "criterion's samples, each path in one stretch", bytes);
    // The ratios that count come from rounds that alternate the paths: on a
    // shared machine, load that comes and goes then hits every path alike,
    // where criterion times each path in its own stretch of seconds (ratios
    // of the same code moved up to 2x between runs that way).
    let mut rounds = Samples::default();
    for _ in 0..INTERLEAVED_ROUNDS {
        for path in PATHS.into_iter().chain([ARROW_ROWS, ARROW_BATCH]) {
            rounds.time(path, 1, || paths.run(path));
        }
    }
    rounds.report(shape.name, "interleaved rounds", bytes)
}

/// Rounds of every path in turn, per shape, for the reported ratios.
const INTERLEAVED_ROUNDS: usize = 41;

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

    /// `b`'s median time over `a`'s: how many times faster `a` is.
    fn ratio(&self, a: &str, b: &str) -> Option<f64> {
        Some(self.median(b)?.as_secs_f64() / self.median(a)?.as_secs_f64())
    }

    fn report(&self, set: &'static str, how: &str, bytes: usize) -> Option<Ratios> {
        let mib_s = |d: Duration| bytes as f64 / d.as_secs_f64() / (1024.0 * 1024.0);
        println!("{set}: median throughput (MiB/s of JSON) and ratios, this run, {how}:");
        for (path, _) in &self.0 {
            if let Some(d) = self.median(path) {
                println!("  {path:30} {:8.1} MiB/s", mib_s(d));
            }
        }
        let r = Ratios {
            shape: set,
            mib_s: mib_s(self.median("proto")?),
            proto_vs_parse: self.ratio("proto", BASELINE)?,
            proto_vs_naive: self.ratio("proto", NAIVE)?,
            arrow_vs_parse: self.ratio("arrow", BASELINE)?,
        };
        for (what, v, target) in [
            ("proto / parse-only", r.proto_vs_parse, 0.6),
            ("proto / naive", r.proto_vs_naive, 10.0),
            ("arrow / parse-only", r.arrow_vs_parse, 0.4),
        ] {
            println!("  {what:20} {v:6.2}x  target >= {target}  {}", verdict(v, target));
        }
        Some(r)
    }
}

fn verdict(v: f64, target: f64) -> &'static str {
    if v >= target { "ok" } else { "BELOW" }
}

fn summary(all: &[Ratios]) {
    if all.is_empty() {
        return;
    }
    println!(
        "\nrows: every shape, medians of this run's interleaved rounds (x = times the other path's speed)"
    );
    println!(
        "  {:18} {:>10} {:>14} {:>14} {:>14}",
        "shape", "proto MiB/s", "proto/parse", "proto/naive", "arrow/parse"
    );
    for r in all {
        println!(
            "  {:18} {:>10.1} {:>8.2}x {:5} {:>8.1}x {:5} {:>8.2}x {:5}",
            r.shape,
            r.mib_s,
            r.proto_vs_parse,
            verdict(r.proto_vs_parse, 0.6),
            r.proto_vs_naive,
            verdict(r.proto_vs_naive, 10.0),
            r.arrow_vs_parse,
            verdict(r.arrow_vs_parse, 0.4),
        );
    }
}

/// ns per value by column type: each path over 200 rows of 20 columns of
/// one type, rounds interleaved across paths, medians.
fn type_breakdown() {
    const ROWS: u64 = 200;
    const ROUNDS: usize = 21;
    let values = (ROWS * shapes::TYPE_COLUMNS) as f64;
    println!(
        "\ntypes: ns per value by BigQuery column type ({ROWS} rows x 20 columns, medians of {ROUNDS} rounds)"
    );
    println!(
        "  {:18} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "type", "parse", "proto", "arrow", "naive", "proto/parse"
    );
    for set in shapes::type_sets() {
        let records: Vec<String> = (0..ROWS).map(|i| set.record(i)).collect();
        let mut paths = Paths::new(&set.schema(), &records);
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); PATHS.len()];
        for _ in 0..ROUNDS {
            for (path, t) in PATHS.iter().zip(&mut times) {
                let started = Instant::now();
                paths.run(path);
                t.push(started.elapsed().as_nanos() as f64 / values);
            }
        }
        let med: Vec<f64> = times
            .into_iter()
            .map(|mut t| {
                t.sort_by(f64::total_cmp);
                t[t.len() / 2]
            })
            .collect();
        println!(
            "  {:18} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>11.2}x",
            set.label,
            med[0],
            med[1],
            med[2],
            med[3],
            med[0] / med[1]
        );
    }
}

fn main() {
    let filter = shapes::filter();
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let mut c = Criterion::default().configure_from_args();
    let mut all = Vec::new();
    for shape in shapes::all() {
        if !wanted(shape.name) {
            continue;
        }
        let n = if shape.name.starts_with("wide") { 200 } else { 1000 };
        all.extend(bench_shape(&mut c, &shape, n));
    }
    summary(&all);
    if wanted("types") {
        type_breakdown();
    }
    c.final_summary();
}
