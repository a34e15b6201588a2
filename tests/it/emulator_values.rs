//! Proto rows of every BigQuery type, decoded with proto2 semantics and
//! checked as BigQuery does; bad rows reject the whole request with
//! `row_errors` carrying their indexes.

use crate::emulator_support;

use emulator_support::*;
use kinesis_bigquery::pb::storage::row_error::RowErrorCode;
use kinesis_bigquery::pb::storage::table_field_schema::{FieldElementType, Mode, Type};
use kinesis_bigquery::pb::storage::{TableFieldSchema, TableSchema};
use prost_types::DescriptorProto;
use prost_types::field_descriptor_proto::{Label, Type as PType};
use serde_json::json;
use tonic::Code;

use Label::Optional as Opt;

fn all_types_schema() -> TableSchema {
    let range = TableFieldSchema {
        range_element_type: Some(FieldElementType { r#type: Type::Date as i32 }),
        ..col("rg", Type::Range, Mode::Nullable)
    };
    TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            col("b", Type::Bool, Mode::Nullable),
            col("f", Type::Double, Mode::Nullable),
            col("s", Type::String, Mode::Nullable),
            col("by", Type::Bytes, Mode::Nullable),
            col("n", Type::Numeric, Mode::Nullable),
            col("ns", Type::Numeric, Mode::Nullable),
            col("bn", Type::Bignumeric, Mode::Nullable),
            col("ts", Type::Timestamp, Mode::Nullable),
            col("d", Type::Date, Mode::Nullable),
            col("dt", Type::Datetime, Mode::Nullable),
            col("dts", Type::Datetime, Mode::Nullable),
            col("tm", Type::Time, Mode::Nullable),
            col("j", Type::Json, Mode::Nullable),
            col("g", Type::Geography, Mode::Nullable),
            record("rec", Mode::Nullable, vec![col("x", Type::Int64, Mode::Nullable)]),
            col("tags", Type::String, Mode::Repeated),
            range,
            col("wrapped", Type::Int64, Mode::Nullable),
            col("tsw", Type::Timestamp, Mode::Nullable),
            col("bi", Type::Bool, Mode::Nullable),
        ],
    }
}

fn all_types_descriptor() -> DescriptorProto {
    let mut d = message(
        "Row",
        vec![
            pfield("id", 1, PType::Int64, Opt),
            pfield("b", 2, PType::Bool, Opt),
            pfield("f", 3, PType::Double, Opt),
            pfield("s", 4, PType::String, Opt),
            pfield("by", 5, PType::Bytes, Opt),
            pfield("n", 6, PType::Bytes, Opt),
            pfield("ns", 7, PType::String, Opt),
            pfield("bn", 8, PType::String, Opt),
            pfield("ts", 9, PType::Int64, Opt),
            pfield("d", 10, PType::Int32, Opt),
            pfield("dt", 11, PType::Int64, Opt),
            pfield("dts", 12, PType::String, Opt),
            pfield("tm", 13, PType::String, Opt),
            pfield("j", 14, PType::String, Opt),
            pfield("g", 15, PType::String, Opt),
            pmsg_field("rec", 16, "Rec", Opt),
            pfield("tags", 17, PType::String, Label::Repeated),
            pmsg_field("rg", 18, "DateRange", Opt),
            pmsg_field("wrapped", 19, "Int64Value", Opt),
            pmsg_field("tsw", 20, "Timestamp", Opt),
            pfield("bi", 21, PType::Int32, Opt),
        ],
    );
    d.nested_type = vec![
        message("Rec", vec![pfield("x", 1, PType::Int64, Opt)]),
        message(
            "DateRange",
            vec![pfield("start", 1, PType::Int32, Opt), pfield("end", 2, PType::Int32, Opt)],
        ),
        message("Int64Value", vec![pfield("value", 1, PType::Int64, Opt)]),
        message(
            "Timestamp",
            vec![pfield("seconds", 1, PType::Int64, Opt), pfield("nanos", 2, PType::Int32, Opt)],
        ),
    ];
    d
}

fn packed_datetime(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, us: i64) -> i64 {
    (y << 46) | (mo << 42) | (d << 37) | (h << 32) | (mi << 26) | (s << 20) | us
}

#[tokio::test]
async fn every_type_round_trips_to_canonical_json() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, all_types_schema())?;
    let mut c = client(&emu).await;
    let full = Enc::new()
        .int64(1, 1)
        .boolean(2, true)
        .double(3, 2.5)
        .string(4, "héllo")
        .bytes(5, b"\x00\x01")
        .bytes(6, &(-1_500_000_000i64).to_le_bytes()) // -1.5
        .string(7, "123.450")
        .string(8, "-0.00000000000000000000000000000000000001")
        .int64(9, 1_704_067_200_000_001)
        .int32(10, 19_723)
        .int64(11, packed_datetime(2024, 2, 29, 23, 59, 58, 5))
        .string(12, "2024-01-02 03:04:05")
        .string(13, "12:34:56.5")
        .string(14, r#"{"a":[1,2]}"#)
        .string(15, "POINT(1 2)")
        .message(16, Enc::new().int64(1, -3))
        .string(17, "x")
        .string(17, "y")
        .message(18, Enc::new().int32(1, 0))
        .message(19, Enc::new().int64(1, 42))
        .message(20, Enc::new().int64(1, 1).int32(2, 2_000))
        .int32(21, 5)
        .done();
    let sparse = Enc::new().int64(1, 2).done();
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn
        .append(request(
            &t.default_stream(),
            Some(&all_types_descriptor()),
            None,
            vec![full, sparse],
        ))
        .await?;
    assert_eq!(outcome(&r), Ok(None), "{r:?}");
    let rows = emu.read_rows(&t)?;
    assert_eq!(
        rows[0],
        json!({
            "id": "1", "b": true, "f": 2.5, "s": "héllo", "by": "AAE=", "n": "-1.5", "ns": "123.45",
            "bn": "-0.00000000000000000000000000000000000001",
            "ts": "2024-01-01T00:00:00.000001Z", "d": "2024-01-01",
            "dt": "2024-02-29T23:59:58.000005", "dts": "2024-01-02T03:04:05.000000", "tm": "12:34:56.500000",
            "j": "{\"a\":[1,2]}", "g": "POINT(1 2)", "rec": {"x": "-3"}, "tags": ["x", "y"],
            "rg": {"start": "1970-01-01", "end": null}, "wrapped": "42", "tsw": "1970-01-01T00:00:01.000002Z",
            "bi": true
        })
    );
    // proto2: an absent field is NULL (never zero); an unset repeated field is empty.
    assert_eq!(rows[1]["b"], json!(null));
    assert_eq!(rows[1]["f"], json!(null));
    assert_eq!(rows[1]["tags"], json!([]));
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn bad_rows_reject_the_whole_request_with_their_indexes() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, all_types_schema())?;
    let mut c = client(&emu).await;
    let good = || Enc::new().int64(1, 1);
    let bad_rows: Vec<(Vec<u8>, &str)> = vec![
        (good().int32(10, 2_932_897).done(), "DATE after 9999-12-31"),
        (good().int64(9, 253_402_300_800_000_000).done(), "TIMESTAMP after 9999"),
        (good().string(7, "1.0000000001").done(), "NUMERIC scale 10"),
        (good().string(7, "100000000000000000000000000000").done(), "NUMERIC precision"),
        (good().bytes(6, &[0u8; 33]).done(), "NUMERIC bytes too long"),
        (good().int64(11, packed_datetime(2023, 2, 29, 0, 0, 0, 0)).done(), "DATETIME Feb 29 2023"),
        (good().string(13, "25:00:00").done(), "TIME hour 25"),
        (good().string(14, "{not json").done(), "JSON"),
        (good().string(15, "POINT(1 2").done(), "GEOGRAPHY"),
        (Enc::new().string(4, "no id").done(), "REQUIRED id missing"),
        (good().bytes(4, b"\xff\xfe").done(), "invalid UTF-8"),
        (vec![0xFF, 0xFF, 0xFF, 0xFF], "not a protobuf"),
        (good().message(18, Enc::new().int32(1, 5).int32(2, 1)).done(), "RANGE start after end"),
    ];
    let mut rows = Vec::new();
    let mut expected = Vec::new();
    for (i, (bad, _)) in bad_rows.iter().enumerate() {
        rows.push(good().done());
        rows.push(bad.clone());
        expected.push((2 * i + 1) as i64);
    }
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn
        .append(request(&t.default_stream(), Some(&all_types_descriptor()), None, rows))
        .await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);
    let got: Vec<i64> = r.row_errors.iter().map(|e| e.index).collect();
    for (i, (_, what)) in bad_rows.iter().enumerate() {
        assert!(got.contains(&expected[i]), "{what} was not reported: {:?}", r.row_errors);
    }
    assert_eq!(got, expected);
    assert!(
        r.row_errors
            .iter()
            .all(|e| e.code == RowErrorCode::FieldsError as i32 && !e.message.is_empty())
    );
    assert!(emu.read_rows(&t)?.is_empty(), "no row of a rejected request is written");

    // The good rows alone go through on the same connection.
    let goods = (0..3).map(|_| good().done()).collect();
    assert_eq!(outcome(&conn.append(request("", None, None, goods)).await?), Ok(None));
    assert_eq!(emu.read_rows(&t)?.len(), 3);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn missing_values_take_column_defaults_when_asked() -> anyhow::Result<()> {
    use kinesis_bigquery::pb::storage::append_rows_request::MissingValueInterpretation as Mvi;
    let emu = start().await;
    let t = table_name();
    let with_default = |name: &str, ty: Type, mode: Mode, expr: &str| TableFieldSchema {
        default_value_expression: expr.into(),
        ..col(name, ty, mode)
    };
    let schema = TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            with_default("source", Type::String, Mode::Required, "'kinesis'"),
            with_default("n", Type::Int64, Mode::Nullable, "7"),
        ],
    };
    emu.create_table(&t, schema)?;
    let d =
        message("Row", vec![pfield("id", 1, PType::Int64, Opt), pfield("n", 3, PType::Int64, Opt)]);
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;

    // Without an interpretation a missing value is NULL, so the REQUIRED column fails.
    let r = conn
        .append(request(&t.default_stream(), Some(&d), None, vec![Enc::new().int64(1, 1).done()]))
        .await?;
    assert_eq!(r.row_errors.len(), 1);

    let mut req = request(
        "",
        None,
        None,
        vec![Enc::new().int64(1, 2).done(), Enc::new().int64(1, 3).int64(3, 0).done()],
    );
    req.default_missing_value_interpretation = Mvi::DefaultValue as i32;
    assert_eq!(outcome(&conn.append(req).await?), Ok(None));
    // Sticky default, overridden per column for this request only.
    let mut req = request("", None, None, vec![Enc::new().int64(1, 4).done()]);
    req.missing_value_interpretations.insert("n".into(), Mvi::NullValue as i32);
    assert_eq!(outcome(&conn.append(req).await?), Ok(None));
    let r = conn.append(request("", None, None, vec![Enc::new().int64(1, 5).done()])).await?;
    assert_eq!(outcome(&r), Ok(None));

    assert_eq!(
        emu.read_rows(&t)?,
        vec![
            json!({"id": "2", "source": "kinesis", "n": "7"}),
            json!({"id": "3", "source": "kinesis", "n": "0"}),
            json!({"id": "4", "source": "kinesis", "n": null}),
            json!({"id": "5", "source": "kinesis", "n": "7"}),
        ]
    );
    emu.shutdown().await;
    Ok(())
}
