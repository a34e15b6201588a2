//! JSON records → Encoder → AppendRows over gRPC → emulator → read back:
//! what lands equals what the JSON said, for every type, both row formats,
//! edge values, and the Kinesis metadata columns.

use crate::rows_support;

use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::rows::{RecordMeta, RowFormat};
use rows_support::*;
use serde_json::{Value as Json, json};

const FORMATS: [RowFormat; 2] = [RowFormat::Proto, RowFormat::Arrow];

fn all_types() -> TableSchema {
    TableSchema {
        fields: vec![
            col("b", Type::Bool, Mode::Nullable),
            col("i", Type::Int64, Mode::Nullable),
            col("f", Type::Double, Mode::Nullable),
            col("s", Type::String, Mode::Nullable),
            col("by", Type::Bytes, Mode::Nullable),
            col("n", Type::Numeric, Mode::Nullable),
            col("bn", Type::Bignumeric, Mode::Nullable),
            col("ts", Type::Timestamp, Mode::Nullable),
            col("d", Type::Date, Mode::Nullable),
            col("t", Type::Time, Mode::Nullable),
            col("dt", Type::Datetime, Mode::Nullable),
            col("g", Type::Geography, Mode::Nullable),
            col("j", Type::Json, Mode::Nullable),
            range("r", Type::Timestamp),
            record(
                "user",
                Mode::Nullable,
                vec![
                    col("name", Type::String, Mode::Required),
                    record(
                        "address",
                        Mode::Repeated,
                        vec![col("zip", Type::Int64, Mode::Nullable)],
                    ),
                ],
            ),
            col("tags", Type::String, Mode::Repeated),
            col("req", Type::Int64, Mode::Required),
        ],
    }
}

fn recs(r: &[&str]) -> Vec<String> {
    r.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn every_type_lands_as_the_json_said() -> anyhow::Result<()> {
    let records = recs(&[
        r#"{"b":"TRUE","i":"-9223372036854775808","f":1.5,"s":"héllo ✓ 😀","by":"AQID","n":"-12.345",
            "bn":"0.00000000000000000000000000000000000001","ts":"2024-05-06T09:08:09.123456+02:00",
            "d":"2024-02-29","t":"23:59:59.999999","dt":"2019-11-27T12:34:56.789","g":"POINT(1 2)",
            "j":{"a":[1,true,null]},"r":{"start":"2024-01-01 00:00:00","end":null},
            "user":{"name":"ann","address":[{"zip":1},{"zip":"2"},{}]},"tags":["x",""],"req":1}"#,
        r#"{"req":2,"tags":null,"user":null,"f":"-Infinity"}"#,
        r#"{"req":3,"ts":1714979289123456,"d":-719162,"by":"-_8","tags":[]}"#,
    ]);
    for format in FORMATS {
        let rows = roundtrip(&all_types(), format, &records).await?;
        assert_eq!(rows.len(), 3, "{format:?}");
        let want0 = json!({
            "b": true, "i": "-9223372036854775808", "f": 1.5, "s": "héllo ✓ 😀", "by": "AQID",
            "n": "-12.345", "bn": "0.00000000000000000000000000000000000001",
            "ts": "2024-05-06T07:08:09.123456Z", "d": "2024-02-29", "t": "23:59:59.999999",
            "dt": "2019-11-27T12:34:56.789000", "g": "POINT(1 2)", "j": r#"{"a":[1,true,null]}"#,
            "r": {"start": "2024-01-01T00:00:00.000000Z", "end": null},
            "user": {"name": "ann", "address": [{"zip": "1"}, {"zip": "2"}, {"zip": null}]},
            "tags": ["x", ""], "req": "1"
        });
        assert_eq!(rows[0], want0, "{format:?}");
        assert_eq!(rows[1]["f"], json!("-Infinity"), "{format:?}");
        assert_eq!(rows[1]["user"], Json::Null);
        assert_eq!(rows[1]["tags"], json!([]));
        assert_eq!(rows[1]["b"], Json::Null);
        assert_eq!(rows[2]["ts"], json!("2024-05-06T07:08:09.123456Z"));
        assert_eq!(rows[2]["d"], json!("0001-01-01"));
        assert_eq!(rows[2]["by"], json!("+/8="));
    }
    Ok(())
}

#[tokio::test]
async fn edge_values() -> anyhow::Result<()> {
    let schema = TableSchema {
        fields: vec![
            col("ts", Type::Timestamp, Mode::Nullable),
            col("d", Type::Date, Mode::Nullable),
            col("dt", Type::Datetime, Mode::Nullable),
            col("t", Type::Time, Mode::Nullable),
            col("n", Type::Numeric, Mode::Nullable),
            col("bn", Type::Bignumeric, Mode::Nullable),
            col("i", Type::Int64, Mode::Nullable),
        ],
    };
    let lo = r#"{"ts":"0001-01-01T00:00:00Z","d":"0001-01-01","dt":"0001-01-01 00:00:00","t":"00:00:00",
        "n":"-99999999999999999999999999999.999999999",
        "bn":"-99999999999999999999999999999999999999.99999999999999999999999999999999999999","i":-9223372036854775808}"#;
    let hi = r#"{"ts":"9999-12-31T23:59:59.999999Z","d":"9999-12-31","dt":"9999-12-31T23:59:59.999999","t":"23:59:59.999999",
        "n":99999999999999999999999999999.999999999,
        "bn":"99999999999999999999999999999999999999.99999999999999999999999999999999999999","i":9223372036854775807}"#;
    for format in FORMATS {
        let rows = roundtrip(&schema, format, &recs(&[lo, hi])).await?;
        assert_eq!(
            rows[0],
            json!({"ts":"0001-01-01T00:00:00.000000Z","d":"0001-01-01","dt":"0001-01-01T00:00:00.000000",
                   "t":"00:00:00.000000","n":"-99999999999999999999999999999.999999999",
                   "bn":"-99999999999999999999999999999999999999.99999999999999999999999999999999999999",
                   "i":"-9223372036854775808"}),
            "{format:?}"
        );
        assert_eq!(rows[1]["ts"], json!("9999-12-31T23:59:59.999999Z"));
        assert_eq!(rows[1]["n"], json!("99999999999999999999999999999.999999999"));
        assert_eq!(rows[1]["i"], json!("9223372036854775807"));
    }
    // BIGNUMERIC's true extremes travel only as proto rows.
    let big = TableSchema { fields: vec![col("bn", Type::Bignumeric, Mode::Nullable)] };
    let max = "578960446186580977117854925043439539266.34992332820282019728792003956564819967";
    let min = "-578960446186580977117854925043439539266.34992332820282019728792003956564819968";
    let rows = roundtrip(
        &big,
        RowFormat::Proto,
        &[format!(r#"{{"bn":"{max}"}}"#), format!(r#"{{"bn":"{min}"}}"#)],
    )
    .await?;
    assert_eq!(rows, vec![json!({"bn": max}), json!({"bn": min})]);
    Ok(())
}

#[tokio::test]
async fn deep_nesting_and_empty_arrays() -> anyhow::Result<()> {
    // 14 nested STRUCT levels below the root (BigQuery allows 15 in all).
    let mut field = col("leaf", Type::Int64, Mode::Repeated);
    let mut json = r#"{"leaf":[1,2]}"#.to_string();
    let mut want = json!({"leaf": ["1", "2"]});
    for level in (0..14).rev() {
        let name = format!("l{level}");
        field = record(&name, Mode::Nullable, vec![field]);
        json = format!(r#"{{"{name}":{json}}}"#);
        want = json!({ name: want });
    }
    let schema = TableSchema { fields: vec![field] };
    let empty = r#"{"l0":{"l1":{}}}"#;
    for format in FORMATS {
        let rows = roundtrip(&schema, format, &[json.clone(), empty.to_string()]).await?;
        assert_eq!(rows[0], want, "{format:?}");
        assert_eq!(rows[1]["l0"]["l1"]["l2"], Json::Null, "{format:?}");
    }
    Ok(())
}

#[tokio::test]
async fn kinesis_metadata_columns() -> anyhow::Result<()> {
    let schema = TableSchema {
        fields: vec![
            col("v", Type::String, Mode::Nullable),
            col("_kinesis_sequence_number", Type::String, Mode::Required),
            col("_kinesis_sub_sequence_number", Type::Int64, Mode::Nullable),
            col("_kinesis_partition_key", Type::String, Mode::Nullable),
            col("_kinesis_shard_id", Type::String, Mode::Nullable),
            col("_kinesis_approximate_arrival", Type::Timestamp, Mode::Nullable),
        ],
    };
    let meta = RecordMeta {
        sequence_number: "49590338271490256608559692538361571095921575989136588898",
        sub_sequence_number: 2,
        partition_key: "user-7",
        shard_id: "shardId-000000000006",
        arrival_micros: Some(1_700_000_000_123_456),
    };
    for format in FORMATS {
        let rows = roundtrip_meta(
            &schema,
            format,
            &recs(&[r#"{"v":"x","_kinesis_partition_key":"ignored"}"#]),
            &meta,
        )
        .await?;
        assert_eq!(
            rows,
            vec![
                json!({"v":"x","_kinesis_sequence_number":meta.sequence_number,"_kinesis_sub_sequence_number":"2",
                        "_kinesis_partition_key":"user-7","_kinesis_shard_id":"shardId-000000000006",
                        "_kinesis_approximate_arrival":"2023-11-14T22:13:20.123456Z"})
            ],
            "{format:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn case_insensitive_columns_and_flexible_names_in_arrow() -> anyhow::Result<()> {
    let schema = TableSchema {
        fields: vec![
            col("UserId", Type::Int64, Mode::Nullable),
            col("event-type", Type::String, Mode::Nullable),
        ],
    };
    // Arrow carries names verbatim; proto needs the column_name option (see report).
    let rows =
        roundtrip(&schema, RowFormat::Arrow, &recs(&[r#"{"userid":5,"EVENT-TYPE":"click"}"#]))
            .await?;
    assert_eq!(rows, vec![json!({"UserId":"5","event-type":"click"})]);
    let plain = TableSchema { fields: vec![col("UserId", Type::Int64, Mode::Nullable)] };
    let rows = roundtrip(&plain, RowFormat::Proto, &recs(&[r#"{"USERID":"6"}"#])).await?;
    assert_eq!(rows, vec![json!({"UserId":"6"})]);
    Ok(())
}

#[tokio::test]
async fn bad_records_fail_alone_and_good_ones_land() -> anyhow::Result<()> {
    let schema = TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            record(
                "user",
                Mode::Nullable,
                vec![record(
                    "address",
                    Mode::Repeated,
                    vec![col("zip", Type::Int64, Mode::Nullable)],
                )],
            ),
        ],
    };
    for format in FORMATS {
        let emu = start().await;
        let table = table_name();
        emu.create_table(&table, schema.clone())?;
        let enc = encoder(&schema, format);
        let inputs = [
            r#"{"id":1}"#,
            r#"{"id":2,"user":{"address":[{"zip":1},{"zip":2},{"zip":"abc"}]}}"#,
            r#"{"user":{}}"#,
            r#"{"id":4,"user":{"address":[{"zip":"5"}]}}"#,
            "not json",
        ];
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for input in inputs {
            let mut out = Vec::new();
            match enc.encode(input.as_bytes(), &RecordMeta::default(), &mut out) {
                Ok(()) => rows.push(out),
                Err(e) => errors.push(e.to_string()),
            }
        }
        assert_eq!(
            errors,
            vec![
                r#"user.address[2].zip: expected INT64, got "abc""#.to_string(),
                "id: REQUIRED column is missing".to_string(),
                "invalid JSON at byte 0: invalid literal".to_string(),
            ]
        );
        let resp = append(&emu, &table, &enc, &rows).await?;
        assert!(resp.row_errors.is_empty(), "{resp:?}");
        let got = emu.read_rows(&table)?;
        assert_eq!(
            got,
            vec![json!({"id":"1","user":null}), json!({"id":"4","user":{"address":[{"zip":"5"}]}})],
            "{format:?}"
        );
        emu.shutdown().await;
    }
    Ok(())
}
