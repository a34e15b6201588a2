//! Encoder unit tests: rows decoded back with prost-reflect through the
//! descriptor the encoder built (so the descriptor and the bytes are checked
//! together), Arrow batches read back with arrow-ipc.

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use serde_json::{Value as Json, json};

use super::*;
use crate::pb::storage::table_field_schema::{FieldElementType, Mode as M, Type as T};
use crate::pb::storage::{TableFieldSchema, TableSchema};

/// A column of a table schema, for the crate's unit tests.
pub(crate) fn col(name: &str, ty: T, mode: M) -> TableFieldSchema {
    TableFieldSchema {
        name: name.into(),
        r#type: ty as i32,
        mode: mode as i32,
        ..Default::default()
    }
}

fn strukt(name: &str, mode: M, fields: Vec<TableFieldSchema>) -> TableFieldSchema {
    TableFieldSchema { fields, ..col(name, T::Struct, mode) }
}

fn range(name: &str, elem: T) -> TableFieldSchema {
    TableFieldSchema {
        range_element_type: Some(FieldElementType { r#type: elem as i32 }),
        ..col(name, T::Range, M::Nullable)
    }
}

fn all_types() -> TableSchema {
    TableSchema {
        fields: vec![
            col("b", T::Bool, M::Nullable),
            col("i", T::Int64, M::Nullable),
            col("f", T::Double, M::Nullable),
            col("s", T::String, M::Nullable),
            col("by", T::Bytes, M::Nullable),
            col("n", T::Numeric, M::Nullable),
            col("bn", T::Bignumeric, M::Nullable),
            col("ts", T::Timestamp, M::Nullable),
            col("d", T::Date, M::Nullable),
            col("t", T::Time, M::Nullable),
            col("dt", T::Datetime, M::Nullable),
            col("g", T::Geography, M::Nullable),
            col("j", T::Json, M::Nullable),
            col("iv", T::Interval, M::Nullable),
            range("r", T::Date),
            strukt(
                "user",
                M::Nullable,
                vec![
                    col("name", T::String, M::Required),
                    strukt("address", M::Repeated, vec![col("zip", T::Int64, M::Nullable)]),
                ],
            ),
            col("tags", T::String, M::Repeated),
        ],
    }
}

fn enc(schema: &TableSchema, format: RowFormat, unknown: UnknownFields) -> Encoder {
    Encoder::new(schema, EncoderOptions { format, unknown_fields: unknown }).unwrap()
}

fn encode(e: &Encoder, json: &str) -> Result<Vec<u8>, RowError> {
    let mut out = Vec::new();
    e.encode(json.as_bytes(), &RecordMeta::default(), &mut out).map(|()| out)
}

/// Decodes a row with the encoder's own descriptor, as the service would.
fn decode(e: &Encoder, row: &[u8]) -> Json {
    let file = FileDescriptorProto {
        name: Some("row.proto".into()),
        syntax: Some("proto2".into()),
        message_type: vec![e.proto_schema().proto_descriptor.unwrap()],
        ..Default::default()
    };
    let pool =
        DescriptorPool::from_file_descriptor_set(FileDescriptorSet { file: vec![file] }).unwrap();
    let msg = DynamicMessage::decode(pool.get_message_by_name("Row").unwrap(), row).unwrap();
    to_json(&msg)
}

fn to_json(m: &DynamicMessage) -> Json {
    let mut obj = serde_json::Map::new();
    for (f, v) in m.fields() {
        obj.insert(f.name().to_string(), value_json(v));
    }
    Json::Object(obj)
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::I32(i) => json!(i),
        Value::I64(i) => json!(i),
        Value::F64(f) => json!(f),
        Value::String(s) => json!(s),
        Value::Bytes(b) => json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        Value::Message(m) => to_json(m),
        Value::List(l) => Json::Array(l.iter().map(value_json).collect()),
        other => json!(format!("{other:?}")),
    }
}

fn err(e: &Encoder, json: &str) -> RowError {
    encode(e, json).expect_err(json)
}

#[test]
fn every_type_encodes_and_decodes() {
    let e = enc(&all_types(), RowFormat::Proto, UnknownFields::Reject);
    let row = encode(
        &e,
        r#"{"b":true,"i":"-42","f":"NaN","s":"h\u00e9","by":"AQID","n":"1.5","bn":-2,
            "ts":"2024-05-06T09:08:09.123456+02:00","d":"2024-02-29","t":"12:34:56.789",
            "dt":"2019-11-27 12:34:56.789","g":"POINT(1 2)","j":{"a":[1, 2]},"iv":"1-2 3 4:5:6",
            "r":{"start":"2024-01-01","end":null},
            "user":{"name":"ann","address":[{"zip":1},{"zip":"2"}]},"tags":["x","y"]}"#,
    )
    .unwrap();
    let v = decode(&e, &row);
    assert_eq!(v["b"], json!(true));
    assert_eq!(v["i"], json!(-42));
    assert!(v["f"].is_null(), "NaN has no JSON form: {}", v["f"]);
    assert_eq!(v["s"], json!("hé"));
    assert_eq!(v["by"], json!("010203"));
    assert_eq!(v["n"], json!("002f6859")); // 1.5e9 little-endian, minimal
    assert_eq!(v["ts"], json!(1_714_979_289_123_456i64));
    assert_eq!(v["d"], json!(19_782));
    assert_eq!(v["t"], json!((12i64 << 32) | (34 << 26) | (56 << 20) | 789_000));
    assert_eq!(v["j"], json!(r#"{"a":[1, 2]}"#));
    assert_eq!(v["r"], json!({"start": 19_723}));
    assert_eq!(v["user"], json!({"name":"ann","address":[{"zip":1},{"zip":2}]}));
    assert_eq!(v["tags"], json!(["x", "y"]));
    // -2 × 10^38 as BIGNUMERIC bytes.
    let bn = crate::rows::values::decimal::from_wire(&row_field_bytes(&e, &row, "bn")).unwrap();
    assert_eq!(
        bn,
        arrow_buffer::i256::from_i128(-2)
            .wrapping_mul(arrow_buffer::i256::from_i128(10).checked_pow(38).unwrap())
    );
}

fn row_field_bytes(e: &Encoder, row: &[u8], name: &str) -> Vec<u8> {
    let hex = decode(e, row)[name].as_str().unwrap().to_string();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn coercions() {
    let e = enc(&all_types(), RowFormat::Proto, UnknownFields::Reject);
    let v = |json: &str| decode(&e, &encode(&e, json).unwrap());
    assert_eq!(v(r#"{"b":"FALSE"}"#)["b"], json!(false));
    assert_eq!(v(r#"{"i":9223372036854775807}"#)["i"], json!(i64::MAX));
    assert_eq!(v(r#"{"f":"-Infinity"}"#)["f"], Json::Null); // -inf: no JSON form either
    assert_eq!(v(r#"{"f":"1.25"}"#)["f"], json!(1.25));
    assert_eq!(v(r#"{"s":12}"#)["s"], json!("12"));
    assert_eq!(v(r#"{"s":true}"#)["s"], json!("true"));
    assert_eq!(v(r#"{"by":"-_8"}"#)["by"], json!("fbff"));
    assert_eq!(v(r#"{"by":[1,255]}"#)["by"], json!("01ff"));
    assert_eq!(v(r#"{"n":0.1234567895}"#)["n"], json!(hex_le(123_456_790)));
    assert_eq!(v(r#"{"ts":1714979289123456}"#)["ts"], json!(1_714_979_289_123_456i64));
    assert_eq!(v(r#"{"ts":"1714979289123456"}"#)["ts"], json!(1_714_979_289_123_456i64));
    assert_eq!(v(r#"{"ts":1.7e15}"#)["ts"], json!(1_700_000_000_000_000i64));
    assert_eq!(v(r#"{"d":-719162}"#)["d"], json!(-719_162));
    assert_eq!(v(r#"{"j":"{\"k\": 1}"}"#)["j"], json!(r#"{"k": 1}"#));
    assert_eq!(v(r#"{"j":[1,"x",null]}"#)["j"], json!(r#"[1,"x",null]"#));
    assert_eq!(v(r#"{"j":3}"#)["j"], json!("3"));
    assert_eq!(
        v(r#"{"g":{"type":"Point","coordinates":[1,2]}}"#)["g"],
        json!(r#"{"type":"Point","coordinates":[1,2]}"#)
    );
    assert_eq!(v(r#"{"r":"[2024-01-01, UNBOUNDED)"}"#)["r"], json!({"start": 19_723}));
    assert_eq!(v(r#"{"tags":null,"user":null}"#), json!({}));
    assert_eq!(v(r#"{"TAGS":[],"User":{"NAME":"x"}}"#), json!({"user":{"name":"x"}}));
}

fn hex_le(v: i64) -> String {
    let mut out = Vec::new();
    crate::rows::values::decimal::to_wire(arrow_buffer::i256::from_i128(v.into()), &mut out);
    out.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn errors_name_the_field_path() {
    let e = enc(&all_types(), RowFormat::Proto, UnknownFields::Reject);
    let cases: &[(&str, &str, RowErrorKind)] = &[
        (
            r#"{"user":{"name":"a","address":[{"zip":1},{"zip":2},{"zip":"abc"}]}}"#,
            r#"user.address[2].zip: expected INT64, got "abc""#,
            RowErrorKind::TypeMismatch,
        ),
        (r#"{"i":1.5}"#, "i: expected INT64, got 1.5", RowErrorKind::TypeMismatch),
        (
            r#"{"i":9223372036854775808}"#,
            "i: invalid INT64 \"9223372036854775808\": outside the INT64 range",
            RowErrorKind::OutOfRange,
        ),
        (r#"{"nope":1}"#, "nope: the table has no such column", RowErrorKind::UnknownField),
        (
            r#"{"user":{"nme":"a"}}"#,
            "user.nme: the table has no such column",
            RowErrorKind::UnknownField,
        ),
        (r#"{"user":{}}"#, "user.name: REQUIRED column is missing", RowErrorKind::MissingRequired),
        (
            r#"{"user":{"name":null}}"#,
            "user.name: REQUIRED column is null",
            RowErrorKind::MissingRequired,
        ),
        (
            r#"{"b":true,"B":false}"#,
            "b: column given twice (names are case-insensitive)",
            RowErrorKind::DuplicateField,
        ),
        (
            r#"{"tags":["a",null]}"#,
            "tags[1]: null element in an array (BigQuery arrays cannot hold NULL)",
            RowErrorKind::TypeMismatch,
        ),
        (
            r#"{"tags":"a"}"#,
            "tags: expected an array of STRING, got a string",
            RowErrorKind::TypeMismatch,
        ),
        (r#"{"s":1.5}"#, "s: expected STRING, got 1.5", RowErrorKind::TypeMismatch),
        (
            r#"{"f":1e999}"#,
            "f: invalid FLOAT64 \"1e999\": overflows FLOAT64",
            RowErrorKind::OutOfRange,
        ),
        (
            r#"{"by":"***"}"#,
            "by: invalid BYTES \"***\": not base64 (standard or URL-safe)",
            RowErrorKind::InvalidValue,
        ),
        (
            r#"{"n":"0.0000000001"}"#,
            "n: invalid NUMERIC \"0.0000000001\": more than 9 fractional digits",
            RowErrorKind::InvalidValue,
        ),
        (
            r#"{"n":1e29}"#,
            "n: invalid NUMERIC \"1e29\": more than 29 integer digits",
            RowErrorKind::OutOfRange,
        ),
        (
            r#"{"d":"2023-02-29"}"#,
            "d: invalid DATE \"2023-02-29\": no such date",
            RowErrorKind::InvalidValue,
        ),
        (
            r#"{"d":2932897}"#,
            "d: invalid DATE \"2932897\": outside 0001-01-01 .. 9999-12-31",
            RowErrorKind::OutOfRange,
        ),
        (
            r#"{"ts":"10000-01-01T00:00:00Z"}"#,
            "ts: invalid TIMESTAMP \"10000-01-01T00:00:00Z\": expected YYYY-MM-DD",
            RowErrorKind::InvalidValue,
        ),
        (
            r#"{"ts":253402300800000000}"#,
            "ts: invalid TIMESTAMP \"253402300800000000\": outside 0001-01-01 .. 9999-12-31 UTC",
            RowErrorKind::OutOfRange,
        ),
        (
            r#"{"j":"not json"}"#,
            "j: invalid JSON \"not json\": a string for a JSON column must hold JSON text",
            RowErrorKind::InvalidValue,
        ),
        (r#"{"user":[]}"#, "user: expected STRUCT, got an array", RowErrorKind::TypeMismatch),
        (r#"[1]"#, "a record must be a JSON object", RowErrorKind::InvalidJson),
        (
            r#"{"b":true"#,
            "invalid JSON at byte 9: unexpected end of input",
            RowErrorKind::InvalidJson,
        ),
        (
            r#"{"b":true} {}"#,
            "invalid JSON at byte 11: trailing data after the JSON value",
            RowErrorKind::InvalidJson,
        ),
        (
            r#"{"r":{"start":"2024-01-01","stop":1}}"#,
            "r.stop: the table has no such column",
            RowErrorKind::UnknownField,
        ),
    ];
    for (json, want, kind) in cases {
        let got = err(&e, json);
        assert_eq!(&got.to_string(), want, "{json}");
        assert_eq!(got.kind, *kind, "{json}");
    }
}

#[test]
fn failed_encode_leaves_out_untouched_and_ignore_drops_unknown() {
    let e = enc(&all_types(), RowFormat::Proto, UnknownFields::Reject);
    let mut out = vec![7, 7];
    assert!(e.encode(br#"{"b":true,"zz":1}"#, &RecordMeta::default(), &mut out).is_err());
    assert_eq!(out, vec![7, 7]);
    let e = enc(&all_types(), RowFormat::Proto, UnknownFields::Ignore);
    let row = encode(&e, r#"{"zz":{"deep":[1,{"x":null}]},"b":true,"user":{"name":"a","q":[]}}"#)
        .unwrap();
    assert_eq!(decode(&e, &row), json!({"b":true,"user":{"name":"a"}}));
    // Ignoring still checks the skipped value is JSON, and keys are UTF-8.
    assert_eq!(err(&e, r#"{"zz":[1,}"#).kind, RowErrorKind::InvalidJson);
    for bad in [&b"{\"\xff\":1}"[..], b"{\"s\":\"\xc3\"}", b"{\"zz\":{\"\xff\":1}}"] {
        let got = e.encode(bad, &RecordMeta::default(), &mut Vec::new()).unwrap_err();
        assert_eq!(got.kind, RowErrorKind::InvalidJson, "{got}");
    }
}

#[test]
fn kinesis_metadata_columns_come_from_the_record() {
    let schema = TableSchema {
        fields: vec![
            col("v", T::Int64, M::Nullable),
            col("_kinesis_sequence_number", T::String, M::Required),
            col("_KINESIS_sub_sequence_number", T::Int64, M::Nullable),
            col("_kinesis_partition_key", T::String, M::Nullable),
            col("_kinesis_shard_id", T::String, M::Nullable),
            col("_kinesis_approximate_arrival", T::Timestamp, M::Nullable),
        ],
    };
    let e = enc(&schema, RowFormat::Proto, UnknownFields::Reject);
    let meta = RecordMeta {
        sequence_number: "4959",
        sub_sequence_number: 3,
        partition_key: "pk",
        shard_id: "shardId-000000000001",
        arrival_micros: Some(1_700_000_000_000_000),
    };
    let mut out = Vec::new();
    // The JSON's own value for a metadata column is ignored.
    e.encode(br#"{"v":1,"_kinesis_shard_id":"fake"}"#, &meta, &mut out).unwrap();
    assert_eq!(
        decode(&e, &out),
        json!({"v":1,"_kinesis_sequence_number":"4959","_kinesis_sub_sequence_number":3,
               "_kinesis_partition_key":"pk","_kinesis_shard_id":"shardId-000000000001",
               "_kinesis_approximate_arrival":1_700_000_000_000_000i64})
    );
    let big = RecordMeta { sub_sequence_number: u64::MAX, ..meta };
    let got = e.encode(b"{}", &big, &mut Vec::new()).unwrap_err();
    assert_eq!(got.kind, RowErrorKind::Metadata);
    assert_eq!(got.path, "_KINESIS_sub_sequence_number");
}

#[test]
fn request_bytes_is_exact_for_proto() {
    use crate::pb::storage::AppendRowsRequest;
    let e = enc(&all_types(), RowFormat::Proto, UnknownFields::Reject);
    let rows: Vec<Vec<u8>> = (0..300)
        .map(|i| encode(&e, &format!(r#"{{"i":{i},"s":"{}"}}"#, "x".repeat(i))).unwrap())
        .collect();
    let refs: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
    let req = |with_schema| AppendRowsRequest {
        rows: Some(e.request_rows(&owned(&refs), with_schema).unwrap()),
        ..Default::default()
    };
    let real = req(false).encoded_len();
    let est = e.request_bytes(refs.iter().map(|r| r.len()));
    assert!(est >= real && est <= real + 8, "{est} vs {real}");
    let with = req(true).encoded_len();
    assert!(with <= est + e.schema_bytes() && with + 8 >= est + e.schema_bytes());
}

fn owned(rows: &[&[u8]]) -> Vec<bytes::Bytes> {
    rows.iter().map(|r| bytes::Bytes::copy_from_slice(r)).collect()
}

fn read_arrow(e: &Encoder, rows: &[&[u8]]) -> arrow_array::RecordBatch {
    let Some(append_rows_request::Rows::ArrowRows(data)) = e.request_rows(&owned(rows), true).ok()
    else {
        panic!()
    };
    let mut stream = data.writer_schema.unwrap().serialized_schema;
    stream.extend(data.rows.unwrap().serialized_record_batch);
    let mut reader = arrow_ipc::reader::StreamReader::try_new(stream.as_slice(), None).unwrap();
    let batch = reader.next().unwrap().unwrap();
    assert!(reader.next().is_none());
    batch
}

use crate::pb::storage::append_rows_request;

#[test]
fn arrow_rows_carry_the_same_values() {
    use arrow_array::Array as _;
    use arrow_array::cast::AsArray;
    use arrow_array::types::*;
    let e = enc(&all_types(), RowFormat::Arrow, UnknownFields::Reject);
    let r1 = encode(
        &e,
        r#"{"b":true,"i":7,"n":"-1.5","bn":"1e-38","ts":"1970-01-01T00:00:01Z","d":"1970-01-03",
            "t":"00:00:01.5","dt":"1970-01-01 00:00:02","r":{"end":"2024-01-02"},
            "user":{"name":"a","address":[{"zip":1},{}]},"tags":["x"],"by":"AQ=="}"#,
    )
    .unwrap();
    let r2 = encode(&e, r#"{"tags":null,"s":"z"}"#).unwrap();
    let batch = read_arrow(&e, &[&r1, &r2]);
    assert_eq!(batch.num_rows(), 2);
    let c = |n: &str| batch.column_by_name(n).unwrap().clone();
    assert!(c("b").as_boolean().value(0));
    assert!(c("b").is_null(1));
    assert_eq!(c("i").as_primitive::<Int64Type>().value(0), 7);
    assert_eq!(c("n").as_primitive::<Decimal128Type>().value(0), -1_500_000_000);
    assert_eq!(c("bn").as_primitive::<Decimal256Type>().value(0), arrow_buffer::i256::ONE);
    assert_eq!(c("ts").as_primitive::<TimestampMicrosecondType>().value(0), 1_000_000);
    assert_eq!(c("d").as_primitive::<Date32Type>().value(0), 2);
    assert_eq!(c("t").as_primitive::<Time64MicrosecondType>().value(0), 1_500_000);
    assert_eq!(c("dt").as_primitive::<TimestampMicrosecondType>().value(0), 2_000_000);
    assert_eq!(c("s").as_string::<i32>().value(1), "z");
    assert_eq!(c("by").as_binary::<i32>().value(0), &[1]);
    let r = c("r");
    let r = r.as_struct();
    assert!(r.column(0).is_null(0));
    assert_eq!(r.column(1).as_primitive::<Date32Type>().value(0), 19_724);
    assert!(r.is_null(1));
    let user = c("user");
    let user = user.as_struct();
    assert_eq!(user.column(0).as_string::<i32>().value(0), "a");
    let addr = user.column(1).as_list::<i32>().value(0);
    let zips = addr.as_struct().column(0).as_primitive::<Int64Type>().clone();
    assert_eq!((zips.value(0), zips.is_null(1)), (1, true));
    assert!(user.is_null(1));
    let tags = c("tags");
    assert_eq!(tags.as_list::<i32>().value(0).len(), 1);
    assert_eq!(tags.as_list::<i32>().value(1).len(), 0);
    // The bound holds.
    let AppendRowsRequestRows(real) = arrow_request_len(&e, &[&r1, &r2]);
    assert!(e.request_bytes([r1.len(), r2.len()].into_iter()) >= real);
}

struct AppendRowsRequestRows(usize);

fn arrow_request_len(e: &Encoder, rows: &[&[u8]]) -> AppendRowsRequestRows {
    let req = crate::pb::storage::AppendRowsRequest {
        rows: Some(e.request_rows(&owned(rows), false).unwrap()),
        ..Default::default()
    };
    AppendRowsRequestRows(req.encoded_len())
}

#[test]
fn bignumeric_beyond_decimal256_is_a_row_error_in_arrow_mode_only() {
    let max = r#"{"bn":"578960446186580977117854925043439539266.34992332820282019728792003956564819967"}"#;
    let proto = enc(&all_types(), RowFormat::Proto, UnknownFields::Reject);
    assert!(encode(&proto, max).is_ok());
    let arrow = enc(&all_types(), RowFormat::Arrow, UnknownFields::Reject);
    assert_eq!(err(&arrow, max).kind, RowErrorKind::NotRepresentable);
    let ok = r#"{"bn":"-99999999999999999999999999999999999999.99999999999999999999999999999999999999"}"#;
    let row = encode(&arrow, ok).unwrap();
    assert_eq!(read_arrow(&arrow, &[&row]).num_rows(), 1);
}

#[test]
fn foreign_rows_are_an_error_not_a_panic() {
    let e = enc(&all_types(), RowFormat::Arrow, UnknownFields::Reject);
    for junk in [&[0xff_u8, 0xff][..], &[0x08, 0x01, 0x08, 0x01], &[0x0a]] {
        assert!(e.request_rows(&owned(&[junk]), false).is_err());
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for format in [RowFormat::Proto, RowFormat::Arrow] {
                let e = enc(&all_types(), format, UnknownFields::Ignore);
                let mut out = Vec::new();
                if e.encode(&bytes, &RecordMeta::default(), &mut out).is_ok() {
                    prop_assert!(e.request_rows(&owned(&[&out]), true).is_ok());
                }
            }
        }

        #[test]
        fn random_json_never_panics(json in arb_json(4)) {
            let text = json.to_string();
            for key in ["b","i","f","s","by","n","bn","ts","d","t","dt","g","j","iv","r","user","tags"] {
                let record = format!(r#"{{"{key}":{text}}}"#);
                for format in [RowFormat::Proto, RowFormat::Arrow] {
                    let e = enc(&all_types(), format, UnknownFields::Reject);
                    let mut out = Vec::new();
                    if e.encode(record.as_bytes(), &RecordMeta::default(), &mut out).is_ok() {
                        prop_assert!(e.request_rows(&owned(&[&out]), true).is_ok(), "{}", record);
                    }
                }
            }
        }
    }

    pub(super) fn arb_json(depth: u32) -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Json::from),
            "[ -~]{0,12}".prop_map(Json::from),
            prop_oneof![
                Just("2024-01-01"),
                Just("NaN"),
                Just("true"),
                Just("12:00"),
                Just("AQID"),
                Just("1e5"),
                Just("-0.5"),
                Just("2024-01-01T00:00:00Z"),
                Just("[2024-01-01, NULL)")
            ]
            .prop_map(Json::from),
        ];
        leaf.prop_recursive(depth, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("name".to_string()),
                        Just("zip".to_string()),
                        Just("address".to_string()),
                        Just("start".to_string()),
                        "[a-z]{1,3}"
                    ],
                    inner,
                    0..4,
                )
                .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }
}

#[test]
fn encoder_is_send_and_sync() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Encoder>();
    shared::<std::sync::Arc<Encoder>>();
}
