//! Property tests through the emulator: random table schemas with random
//! conforming JSON records (encode → AppendRows → read back → the values the
//! JSON said), and random non-conforming values (→ a RowError, or — when the
//! encoder accepts a coercion — a row the emulator accepts too; never a panic).

use crate::rows_support;

use base64::Engine as _;
use chrono::{DateTime, FixedOffset, NaiveDate};
use kinesis_bigquery::emulator::Emulator;
use kinesis_bigquery::pb::storage::append_rows_response::Response;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{AppendRowsRequest, TableFieldSchema, TableSchema};
use kinesis_bigquery::rows::{RecordMeta, RowFormat};
use proptest::prelude::*;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rows_support::*;
use serde_json::{Map, Value as Json, json};

const SCALARS: &[Type] = &[
    Type::Bool,
    Type::Int64,
    Type::Double,
    Type::String,
    Type::Bytes,
    Type::Numeric,
    Type::Bignumeric,
    Type::Timestamp,
    Type::Date,
    Type::Time,
    Type::Datetime,
    Type::Geography,
    Type::Json,
    Type::Range,
];

fn random_fields(rng: &mut StdRng, depth: u32) -> Vec<TableFieldSchema> {
    let n = rng.random_range(1..=5);
    (0..n)
        .map(|i| {
            let name = format!("c{i}_{}", rng.random_range(0..100));
            let mode = match rng.random_range(0..4) {
                0 => Mode::Required,
                1 => Mode::Repeated,
                _ => Mode::Nullable,
            };
            if depth < 3 && rng.random_bool(0.2) {
                return record(&name, mode, random_fields(rng, depth + 1));
            }
            let t = SCALARS[rng.random_range(0..SCALARS.len())];
            if t == Type::Range {
                let elem = [Type::Date, Type::Datetime, Type::Timestamp][rng.random_range(0..3)];
                return TableFieldSchema { mode: Mode::Nullable as i32, ..range(&name, elem) };
            }
            col(&name, t, mode)
        })
        .collect()
}

/// A random record for `fields` and the canonical JSON the emulator should return.
fn random_record(rng: &mut StdRng, fields: &[TableFieldSchema]) -> (Json, Json) {
    let mut input = Map::new();
    let mut want = Map::new();
    for f in fields {
        // Keys match case-insensitively: sometimes shout.
        let key = if rng.random_bool(0.2) { f.name.to_uppercase() } else { f.name.clone() };
        let (i, w) = match Mode::try_from(f.mode).unwrap() {
            Mode::Repeated => {
                if rng.random_bool(0.1) {
                    (Some(Json::Null), json!([]))
                } else {
                    let (is, ws): (Vec<_>, Vec<_>) =
                        (0..rng.random_range(0..3)).map(|_| random_value(rng, f)).unzip();
                    (Some(Json::Array(is)), Json::Array(ws))
                }
            }
            Mode::Required => {
                let (i, w) = random_value(rng, f);
                (Some(i), w)
            }
            _ => match rng.random_range(0..4) {
                0 => (None, Json::Null),
                1 => (Some(Json::Null), Json::Null),
                _ => {
                    let (i, w) = random_value(rng, f);
                    (Some(i), w)
                }
            },
        };
        if let Some(i) = i {
            input.insert(key, i);
        }
        want.insert(f.name.clone(), w);
    }
    (Json::Object(input), Json::Object(want))
}

fn decimal_text(v: i128, scale: u32) -> (String, String) {
    let neg = v < 0;
    let digits = v.unsigned_abs().to_string();
    let digits = format!("{:0>width$}", digits, width = scale as usize + 1);
    let (int, frac) = digits.split_at(digits.len() - scale as usize);
    let sign = if neg { "-" } else { "" };
    let full = format!("{sign}{int}.{frac}");
    let trimmed = frac.trim_end_matches('0');
    let norm =
        if trimmed.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{trimmed}") };
    (full, if v == 0 { "0".into() } else { norm })
}

fn random_value(rng: &mut StdRng, f: &TableFieldSchema) -> (Json, Json) {
    let as_string = rng.random_bool(0.3);
    match Type::try_from(f.r#type).unwrap() {
        Type::Struct => random_record(rng, &f.fields),
        Type::Bool => {
            let b = rng.random_bool(0.5);
            (if as_string { json!(b.to_string()) } else { json!(b) }, json!(b))
        }
        Type::Int64 => {
            let v: i64 = rng.random();
            (if as_string { json!(v.to_string()) } else { json!(v) }, json!(v.to_string()))
        }
        Type::Double => match rng.random_range(0..10) {
            0 => (json!("NaN"), json!("NaN")),
            1 => (json!("Infinity"), json!("Infinity")),
            _ => {
                let v = f64::from_bits(rng.random());
                let v = if v.is_finite() { v } else { rng.random::<f64>() * 1e10 };
                (json!(v), json!(v))
            }
        },
        Type::String => {
            let len = rng.random_range(0..12);
            let s: String = (0..len)
                .map(|_| match rng.random_range(0..6) {
                    0 => char::from_u32(rng.random_range(0x80..0xD7FF)).unwrap_or('x'),
                    1 => ['"', '\\', '\n', '\t', '/', '\u{1}'][rng.random_range(0..6)],
                    2 => '😀',
                    _ => rng.random_range(b' '..=b'~') as char,
                })
                .collect();
            (json!(s), json!(s))
        }
        Type::Bytes => {
            let b: Vec<u8> = (0..rng.random_range(0..10)).map(|_| rng.random()).collect();
            let std = base64::engine::general_purpose::STANDARD.encode(&b);
            let sent = if rng.random_bool(0.5) {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b)
            } else {
                std.clone()
            };
            (json!(sent), json!(std))
        }
        Type::Numeric | Type::Bignumeric => {
            let big = f.r#type == Type::Bignumeric as i32;
            let v: i128 = rng.random::<i128>() % 99_999_999_999_999_999_999_999_999_999_999_999_999;
            let (full, norm) = decimal_text(v, if big { 38 } else { 9 });
            // A JSON number must keep every digit: serde_json's Value would go
            // through f64, so a marker is spliced out of the text (see `unmark`).
            let sent = if as_string { json!(full) } else { json!(format!("{NUM}{full}")) };
            (sent, json!(norm))
        }
        Type::Timestamp => {
            let us = rng.random_range(-62_104_000_000_000_000i64..253_370_000_000_000_000);
            random_timestamp(rng, us)
        }
        Type::Date => {
            let d = rng.random_range(-719_162i64..=2_932_896);
            let text = date_text(d);
            (if as_string { json!(text) } else { json!(d) }, json!(text))
        }
        Type::Time => {
            let us = rng.random_range(0..86_400_000_000i64);
            let text = time_text(us);
            (json!(text), json!(text))
        }
        Type::Datetime => {
            let (d, us) =
                (rng.random_range(-719_162i64..=2_932_896), rng.random_range(0..86_400_000_000i64));
            let sep = if rng.random_bool(0.5) { "T" } else { " " };
            (
                json!(format!("{}{sep}{}", date_text(d), time_text(us))),
                json!(format!("{}T{}", date_text(d), time_text(us))),
            )
        }
        Type::Geography => {
            let t = format!("POINT({} {})", rng.random_range(-180..180), rng.random_range(-90..90));
            (json!(t), json!(t))
        }
        Type::Json => {
            let v = json!({"k": rng.random::<i32>(), "a": [true, null, "s"]});
            let text = v.to_string();
            if as_string { (json!(text), json!(text)) } else { (v, json!(text)) }
        }
        Type::Range => {
            let elem = TableFieldSchema {
                r#type: f.range_element_type.unwrap().r#type,
                ..col("e", Type::Int64, Mode::Nullable)
            };
            let (s, sw) = if rng.random_bool(0.3) {
                (Json::Null, Json::Null)
            } else {
                random_value(rng, &elem)
            };
            let (mut e, mut ew) = if rng.random_bool(0.3) {
                (Json::Null, Json::Null)
            } else {
                random_value(rng, &elem)
            };
            // BigQuery needs start < end; canonical texts order chronologically.
            let (mut s, mut sw) = (s, sw);
            if let (Some(a), Some(b)) = (sw.as_str(), ew.as_str()) {
                if a == b {
                    (e, ew) = (Json::Null, Json::Null);
                } else if a > b {
                    std::mem::swap(&mut s, &mut e);
                    std::mem::swap(&mut sw, &mut ew);
                }
            }
            (json!({"start": s, "end": e}), json!({"start": sw, "end": ew}))
        }
        other => panic!("not generated: {other:?}"),
    }
}

fn date_text(days: i64) -> String {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    (epoch + chrono::Duration::days(days)).format("%Y-%m-%d").to_string()
}

fn time_text(us: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        us / 3_600_000_000,
        us / 60_000_000 % 60,
        us / 1_000_000 % 60,
        us % 1_000_000
    )
}

fn random_timestamp(rng: &mut StdRng, us: i64) -> (Json, Json) {
    let utc = DateTime::from_timestamp_micros(us).unwrap();
    let want = json!(utc.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
    let sent = match rng.random_range(0..4) {
        0 => json!(us),
        1 => json!(us.to_string()),
        2 => {
            let off = FixedOffset::east_opt(
                rng.random_range(-14..=14) * 3600 + 30 * 60 * rng.random_range(0..2),
            )
            .unwrap();
            json!(utc.with_timezone(&off).format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string())
        }
        _ => json!(utc.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
    };
    (sent, want)
}

const NUM: &str = "@@num@@";

/// Serializes a generated record, turning marked strings into raw JSON numbers.
fn unmark(v: &Json) -> String {
    let text = v.to_string();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let marker = format!("\"{NUM}");
    while let Some(i) = rest.find(&marker) {
        out.push_str(&rest[..i]);
        let after = &rest[i + marker.len()..];
        let end = after.find('"').unwrap_or(after.len());
        out.push_str(&after[..end]);
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// Values that fit no or only some column types.
const TRICKY: &[&str] = &[
    "null",
    "true",
    "0",
    "-1",
    "1.5",
    "1e400",
    "\"\"",
    "\"abc\"",
    "\"2024-13-01\"",
    "\"NaN\"",
    "[]",
    "[null]",
    "{}",
    "{\"x\":1}",
    "\"12:60\"",
    "\"AQ==\"",
    "9223372036854775808",
    "[[1]]",
    "\"1e-10\"",
    "-0",
];

fn mutate(rng: &mut StdRng, record: &mut Json, fields: &[TableFieldSchema]) {
    let f = &fields[rng.random_range(0..fields.len())];
    let v: Json =
        serde_json::from_str(TRICKY[rng.random_range(0..TRICKY.len())]).unwrap_or(Json::Null);
    if let Json::Object(m) = record {
        m.retain(|k, _| !k.eq_ignore_ascii_case(&f.name));
        m.insert(f.name.clone(), v);
    }
}

async fn check_case(emu: &Emulator, seed: u64, format: RowFormat) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = TableSchema { fields: random_fields(&mut rng, 0) };
    let table = table_name();
    emu.create_table(&table, schema.clone())?;
    let enc = encoder(&schema, format);
    let (mut rows, mut wants) = (Vec::new(), Vec::new());
    for _ in 0..rng.random_range(1..5) {
        let (input, want) = random_record(&mut rng, &schema.fields);
        let mut out = Vec::new();
        let text = unmark(&input);
        enc.encode(text.as_bytes(), &RecordMeta::default(), &mut out)
            .map_err(|e| anyhow::anyhow!("conforming record refused: {e}\n{text}\n{schema:?}"))?;
        rows.push(out);
        wants.push(want);
    }
    // Non-conforming variants: an error, or (an accepted coercion) a row the service takes.
    for _ in 0..3 {
        let (mut input, _) = random_record(&mut rng, &schema.fields);
        mutate(&mut rng, &mut input, &schema.fields);
        let mut out = Vec::new();
        if enc.encode(unmark(&input).as_bytes(), &RecordMeta::default(), &mut out).is_ok() {
            let probe = table_name();
            emu.create_table(&probe, schema.clone())?;
            let resp = append(emu, &probe, &enc, &[out]).await?;
            anyhow::ensure!(
                resp.row_errors.is_empty() && !matches!(resp.response, Some(Response::Error(_))),
                "encoder accepted what the service refuses: {input}\n{resp:?}"
            );
        }
    }
    // The batcher's size estimate never undercounts (proto: exact up to the envelope).
    let shared: Vec<bytes::Bytes> = rows.iter().map(|r| r.clone().into()).collect();
    let real =
        AppendRowsRequest { rows: Some(enc.request_rows(&shared, true)?), ..Default::default() }
            .encoded_len();
    let est = enc.request_bytes(shared.iter().map(|r| r.len())) + enc.schema_bytes();
    anyhow::ensure!(est >= real, "request_bytes {est} < real {real} ({format:?})");
    if format == RowFormat::Proto {
        anyhow::ensure!(est <= real + 12, "proto estimate {est} not exact for {real}");
    }
    let resp = append(emu, &table, &enc, &rows).await?;
    anyhow::ensure!(
        resp.row_errors.is_empty() && !matches!(resp.response, Some(Response::Error(_))),
        "append refused: {resp:?}\n{schema:?}"
    );
    let got = emu.read_rows(&table)?;
    anyhow::ensure!(got == wants, "read back differs:\n got {got:?}\nwant {wants:?}\n{schema:?}");
    Ok(())
}

#[test]
fn random_schemas_roundtrip_through_the_emulator() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emu = rt.block_on(start());
    // ROWS_PROP_CASES raises the count for a longer soak.
    let cases = std::env::var("ROWS_PROP_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(96);
    let config = ProptestConfig { cases, ..ProptestConfig::default() };
    proptest!(config, |(seed in any::<u64>(), arrow in any::<bool>())| {
        let format = if arrow { RowFormat::Arrow } else { RowFormat::Proto };
        let res = rt.block_on(check_case(&emu, seed, format));
        prop_assert!(res.is_ok(), "seed {seed} {format:?}: {:?}", res.err());
    });
    rt.block_on(emu.shutdown());
}
