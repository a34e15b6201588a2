//! The record shapes users send, shared by `benches/rows.rs` and
//! `benches/handler.rs` (included by path): each a table schema and a
//! generator of ~1 KiB JSON records for it, plus the per-type sets of the
//! rows bench's breakdown (one BigQuery type per table).

// Each bench uses a part of this module.
#![allow(dead_code)]

use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{TableFieldSchema, TableSchema};

/// A table schema and the JSON records of one shape.
pub struct Shape {
    pub name: &'static str,
    /// What the shape is, for the printed report.
    pub about: &'static str,
    pub schema: TableSchema,
    pub record: fn(u64) -> String,
}

impl Shape {
    pub fn records(&self, n: u64) -> Vec<String> {
        (0..n).map(self.record).collect()
    }
}

pub fn col(name: &str, t: Type, mode: Mode) -> TableFieldSchema {
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

use Mode::{Nullable as N, Repeated as R, Required as Q};

/// The name filter criterion was given (first argument that is not an
/// option or an option's value), if any.
pub fn filter() -> Option<String> {
    const WITH_VALUE: [&str; 14] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--profile-time",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--output-format",
        "--color",
        "--plotting-backend",
    ];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if WITH_VALUE.contains(&a.as_str()) {
            args.next();
        } else if !a.starts_with('-') {
            return Some(a);
        }
    }
    None
}

/// Every shape, in report order.
pub fn all() -> Vec<Shape> {
    vec![
        Shape {
            name: "event_1k",
            about: "ASCII strings, integers, doubles, timestamps, nested and repeated",
            schema: event_schema(),
            record: event,
        },
        Shape {
            name: "analytics_1k",
            about: "NUMERIC string, JSON object, REPEATED STRING, 2-level RECORD, \
                    µs TIMESTAMPs, DATE, accented/CJK text, a few nulls",
            schema: analytics_schema(),
            record: analytics,
        },
        Shape {
            name: "wide_200",
            about: "200 scalar columns: INT64, STRING, FLOAT64, BOOL, TIMESTAMP",
            schema: wide_schema(),
            record: wide,
        },
        Shape {
            name: "numeric",
            about: "NUMERIC and BIGNUMERIC as decimal strings (and a few numbers)",
            schema: numeric_schema(),
            record: numeric,
        },
        Shape {
            name: "json_columns",
            about: "JSON columns holding objects and arrays",
            schema: json_schema(),
            record: json_columns,
        },
        Shape {
            name: "text_multibyte",
            about: "long strings: accents, CJK, emoji, escapes",
            schema: text_schema(),
            record: text,
        },
        Shape {
            name: "null_heavy",
            about: "40 nullable columns, ~80% explicit nulls",
            schema: null_schema(),
            record: nulls,
        },
        Shape {
            name: "nested_repeated",
            about: "RECORDs four levels deep with REPEATED RECORDs and scalars",
            schema: nested_schema(),
            record: nested,
        },
    ]
}

pub fn event_schema() -> TableSchema {
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

pub fn event(i: u64) -> String {
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

/// The shape issue 16 measured: a common analytics event.
pub fn analytics_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("event_id", Type::String, Q),
            col("ts", Type::Timestamp, Q),
            col("ingested_at", Type::Timestamp, N),
            col("day", Type::Date, N),
            col("amount", Type::Numeric, N),
            col("currency", Type::String, N),
            col("properties", Type::Json, N),
            col("labels", Type::String, R),
            rec(
                "customer",
                N,
                vec![
                    col("id", Type::Int64, N),
                    col("name", Type::String, N),
                    rec(
                        "address",
                        N,
                        vec![
                            col("street", Type::String, N),
                            col("city", Type::String, N),
                            col("postcode", Type::String, N),
                            col("country", Type::String, N),
                        ],
                    ),
                ],
            ),
            col("product_name", Type::String, N),
            col("description", Type::String, N),
            col("review", Type::String, N),
            col("coupon", Type::String, N),
            col("referrer", Type::String, N),
            col("score", Type::Double, N),
        ],
    }
}

pub fn analytics(i: u64) -> String {
    let coupon = if i.is_multiple_of(3) { format!("\"SPRING{}\"", i % 100) } else { "null".into() };
    format!(
        r#"{{"event_id":"evt-{i:016x}","ts":"2024-05-06T07:08:{:02}.{:06}Z","ingested_at":"2024-05-06T07:09:00.000001Z","day":"2024-05-06","amount":"{}.{:02}","currency":"EUR","properties":{{"campaign":"spring_sale","variant":"B","position":{},"fresh":true}},"labels":["checkout","mobile","returning-customer"],"customer":{{"id":{},"name":"Zoë Müller-Lüdenscheidt","address":{{"street":"Königstraße {}","city":"München","postcode":"80331","country":"DE"}}}},"product_name":"Wanderschuhe „Alpenglühen“ — 東京モデル","description":"Leichte Wanderschuhe für Damen und Herren, wasserabweisend, mit Vibram-Sohle. 軽量で防水性に優れたハイキングシューズ。快適な履き心地で長時間の歩行にも最適です。Idéal pour la randonnée légère.","review":"Très confortables, taille un peu petite. Würde ich wieder kaufen! 非常に満足しています。","coupon":{coupon},"referrer":null,"score":{}.5}}"#,
        i % 60,
        i * 7919 % 1_000_000,
        i * 37 % 10_000,
        i % 100,
        i % 10,
        1_000_000 + i,
        i % 200 + 1,
        i % 5,
    )
}

pub fn wide_schema() -> TableSchema {
    let types = [Type::Int64, Type::String, Type::Double, Type::Bool, Type::Timestamp];
    TableSchema { fields: (0..200).map(|c| col(&format!("c{c}"), types[c % 5], N)).collect() }
}

pub fn wide(i: u64) -> String {
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

fn numeric_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("id", Type::String, Q),
            col("ts", Type::Timestamp, N),
            col("amount", Type::Numeric, N),
            col("tax", Type::Numeric, N),
            col("discount", Type::Numeric, N),
            col("unit_price", Type::Numeric, N),
            col("fx_rate", Type::Numeric, N),
            col("balance", Type::Numeric, N),
            col("quantity", Type::Numeric, N),
            col("ledger_total", Type::Bignumeric, N),
            col("precise_rate", Type::Bignumeric, N),
            col("tiny", Type::Bignumeric, N),
            col("line_amounts", Type::Numeric, R),
            col("risk", Type::Bignumeric, N),
        ],
    }
}

fn numeric(i: u64) -> String {
    format!(
        r#"{{"id":"txn-{i:010}","ts":"2024-05-06T07:08:09.{:06}Z","amount":"{}.{:02}","tax":"{}.{:02}","discount":"-{}.5","unit_price":"{}.9900","fx_rate":"1.0{:07}","balance":"{}.{:09}","quantity":{},"ledger_total":"{}{:010}.{:020}","precise_rate":"0.{:030}7","tiny":"0.{:012}","line_amounts":["{}.10","{}.25","0.99","{}"],"risk":"{}.{:04}"}}"#,
        i * 7919 % 1_000_000,
        i * 37 % 100_000,
        i % 100,
        i * 3 % 1000,
        i % 97,
        i % 20,
        i % 1000,
        i * 104_729 % 10_000_000,
        i * 1_000_003 % 1_000_000_000_000,
        i * 7 % 1_000_000,
        i % 500 + 1,
        i * 982_451_653,
        i * 1_000_000_007,
        i * 15_485_863 % 10_000_000_000_000,
        i * 31 % 1_000_000_000_000,
        i % 300,
        i % 40,
        i % 9,
        i % 10,
        i % 50,
        i * 13 % 10_000,
    )
}

fn json_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("id", Type::String, Q),
            col("ts", Type::Timestamp, N),
            col("payload", Type::Json, N),
            col("context", Type::Json, N),
            col("items", Type::Json, N),
            col("flags", Type::Json, N),
            col("raw", Type::Json, N),
        ],
    }
}

fn json_columns(i: u64) -> String {
    format!(
        r#"{{"id":"req-{i:08}","ts":"2024-05-06T07:08:09.{:06}Z","payload":{{"action":"add_to_cart","product":{{"sku":"SKU-{i}","name":"Trail runner","price":89.95,"sizes":[38,39,40,41,42]}},"quantity":{},"gift":false,"note":null}},"context":{{"app":{{"name":"shop","version":"5.12.0","build":{}}},"device":{{"os":"iOS","model":"iPhone15,3","locale":"de_DE"}},"network":{{"type":"wifi","carrier":null}}}},"items":[{{"sku":"A-{i}","qty":1}},{{"sku":"B-{i}","qty":3}},{{"sku":"C-{i}","qty":2}},{{"sku":"D-{i}","qty":1}}],"flags":["beta","dark_mode","push_enabled",{},true,null],"raw":"{{\"source\":\"webhook\",\"attempt\":{}}}"}}"#,
        i * 7919 % 1_000_000,
        i % 5 + 1,
        i % 9000,
        i % 1000,
        i % 4,
    )
}

fn text_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("id", Type::String, Q),
            col("title", Type::String, N),
            col("body_ja", Type::String, N),
            col("body_zh", Type::String, N),
            col("comment", Type::String, N),
            col("quote", Type::String, N),
            col("author", Type::String, N),
            col("city", Type::String, N),
        ],
    }
}

fn text(i: u64) -> String {
    format!(
        r#"{{"id":"msg-{i:08}","title":"Crème brûlée à la française — recette n°{}","body_ja":"東京の天気は晴れ。明日は雨の予報です。週末には気温が下がる見込みなので、暖かい服装でお出かけください。","body_zh":"今天天气很好，我们去公园散步吧。这家餐厅的菜非常好吃，价格也很合理，推荐大家来尝试。","comment":"Loved it 😍🔥👍 — would buy again 🎉 ({} stars ⭐)","quote":"He said \"ça va?\"\nand left.\tTab\\slash \u00e9t\u00e9 \ud83d\ude00 end","author":"Łukasz Żółć-Øyvind Ærøskøbing","city":"São Paulo, Zürich, Kraków, Ōsaka, Reykjavík"}}"#,
        i % 1000,
        i % 5 + 1,
    )
}

fn null_schema() -> TableSchema {
    let types = [Type::String, Type::Int64, Type::Double, Type::Timestamp, Type::Bool];
    let mut fields = vec![col("id", Type::String, Q)];
    fields.extend((0..40).map(|c| col(&format!("attr_{c:02}"), types[c % 5], N)));
    TableSchema { fields }
}

fn nulls(i: u64) -> String {
    let mut s = format!(r#"{{"id":"row-{i:08}""#);
    for c in 0..40u64 {
        let v = if (c + i).is_multiple_of(5) {
            match c % 5 {
                0 => format!("\"value {c}\""),
                1 => format!("{}", i * 31 + c),
                2 => format!("{}.25", c),
                3 => "\"2024-05-06T07:08:09Z\"".into(),
                _ => "true".into(),
            }
        } else {
            "null".into()
        };
        s.push_str(&format!(",\"attr_{c:02}\":{v}"));
    }
    s.push('}');
    s
}

fn nested_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("order_id", Type::String, Q),
            col("ts", Type::Timestamp, N),
            rec(
                "customer",
                N,
                vec![
                    col("id", Type::Int64, N),
                    rec(
                        "profile",
                        N,
                        vec![
                            col("tier", Type::String, N),
                            rec(
                                "address",
                                N,
                                vec![
                                    col("city", Type::String, N),
                                    rec(
                                        "geo",
                                        N,
                                        vec![
                                            col("lat", Type::Double, N),
                                            col("lon", Type::Double, N),
                                        ],
                                    ),
                                ],
                            ),
                            col("emails", Type::String, R),
                        ],
                    ),
                ],
            ),
            rec(
                "lines",
                R,
                vec![
                    col("sku", Type::String, N),
                    col("qty", Type::Int64, N),
                    col("price", Type::Double, N),
                    rec(
                        "discounts",
                        R,
                        vec![col("code", Type::String, N), col("pct", Type::Double, N)],
                    ),
                    col("attrs", Type::String, R),
                ],
            ),
            col("scores", Type::Int64, R),
        ],
    }
}

fn nested(i: u64) -> String {
    let lines: Vec<String> = (0..4u64)
        .map(|l| {
            format!(
                r#"{{"sku":"SKU-{i}-{l}","qty":{},"price":{}.5,"discounts":[{{"code":"D{l}","pct":{}.5}},{{"code":"VIP","pct":2.5}}],"attrs":["size-{}","color-{}"]}}"#,
                l + 1,
                10 + l * 7,
                l * 3,
                38 + l,
                l
            )
        })
        .collect();
    format!(
        r#"{{"order_id":"ord-{i:010}","ts":"2024-05-06T07:08:09.{:06}Z","customer":{{"id":{},"profile":{{"tier":"gold","address":{{"city":"Berlin","geo":{{"lat":52.520008,"lon":13.404954}}}},"emails":["a{i}@example.com","b{i}@example.org"]}}}},"lines":[{}],"scores":[{},{},{},{}]}}"#,
        i * 7919 % 1_000_000,
        1_000_000 + i,
        lines.join(","),
        i % 100,
        i % 37,
        i % 11,
        i % 5,
    )
}

/// One BigQuery type per set: 20 NULLABLE columns `v00`..`v19` of it, and a
/// generator of one value's JSON text (row `i`, column `c`).
pub struct TypeSet {
    pub label: &'static str,
    pub ty: Type,
    pub value: fn(u64, u64) -> String,
}

pub const TYPE_COLUMNS: u64 = 20;

pub fn type_sets() -> Vec<TypeSet> {
    vec![
        TypeSet { label: "BOOL", ty: Type::Bool, value: |i, c| ((i + c) % 2 == 0).to_string() },
        TypeSet {
            label: "INT64",
            ty: Type::Int64,
            value: |i, c| (i * 7919 + c * 104_729).to_string(),
        },
        TypeSet {
            label: "FLOAT64",
            ty: Type::Double,
            value: |i, c| format!("{}.{:03}", i + c, c * 7),
        },
        TypeSet {
            label: "STRING ascii",
            ty: Type::String,
            value: |i, c| format!("\"value {i} of column {c}, plain text\""),
        },
        TypeSet {
            label: "STRING multibyte",
            ty: Type::String,
            value: |i, c| format!("\"Grüße aus München {i} 東京の天気 {c} 😀\""),
        },
        TypeSet {
            label: "STRING escaped",
            ty: Type::String,
            value: |i, c| format!("\"line {i}\\nsaid \\\"hi\\\" \\u00e9 {c}\""),
        },
        TypeSet {
            label: "BYTES base64",
            ty: Type::Bytes,
            value: |i, c| {
                use base64::Engine as _;
                let b64 = base64::engine::general_purpose::STANDARD;
                format!("\"{}\"", b64.encode(format!("payload {i} of column {c}")))
            },
        },
        TypeSet {
            label: "NUMERIC string",
            ty: Type::Numeric,
            value: |i, c| format!("\"{}.{:02}\"", i * 37 % 100_000, c),
        },
        TypeSet {
            label: "BIGNUMERIC string",
            ty: Type::Bignumeric,
            value: |i, c| format!("\"{}.{:020}\"", i * 982_451_653, c * 1_000_003),
        },
        TypeSet {
            label: "TIMESTAMP string",
            ty: Type::Timestamp,
            value: |i, c| format!("\"2024-05-06T07:{:02}:{:02}.{:06}Z\"", c, i % 60, i),
        },
        TypeSet {
            label: "TIMESTAMP number",
            ty: Type::Timestamp,
            value: |i, c| (1_714_979_289_000_000 + i * 1000 + c).to_string(),
        },
        TypeSet {
            label: "DATE",
            ty: Type::Date,
            value: |i, c| format!("\"2024-{:02}-{:02}\"", c % 12 + 1, i % 28 + 1),
        },
        TypeSet {
            label: "DATETIME",
            ty: Type::Datetime,
            value: |i, c| format!("\"2024-05-06 07:{:02}:{:02}.{:06}\"", c, i % 60, i),
        },
        TypeSet {
            label: "TIME",
            ty: Type::Time,
            value: |i, c| format!("\"07:{:02}:{:02}.{:03}\"", c, i % 60, i % 1000),
        },
        TypeSet {
            label: "JSON object",
            ty: Type::Json,
            value: |i, c| format!(r#"{{"k":"v{c}","n":{i},"a":[1,2,3],"o":{{"x":true}}}}"#),
        },
        TypeSet {
            label: "GEOGRAPHY WKT",
            ty: Type::Geography,
            value: |i, c| format!("\"POINT({}.5 {}.25)\"", i % 180, c),
        },
    ]
}

impl TypeSet {
    pub fn schema(&self) -> TableSchema {
        TableSchema {
            fields: (0..TYPE_COLUMNS).map(|c| col(&format!("v{c:02}"), self.ty, N)).collect(),
        }
    }

    pub fn record(&self, i: u64) -> String {
        let cells: Vec<String> =
            (0..TYPE_COLUMNS).map(|c| format!("\"v{c:02}\":{}", (self.value)(i, c))).collect();
        format!("{{{}}}", cells.join(","))
    }
}
