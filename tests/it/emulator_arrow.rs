//! Arrow rows: an IPC schema message once per connection, one record batch
//! message per request, decoded with the §5 type mapping and the same checks.

use crate::emulator_support;

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Decimal256Array,
    Float64Array, Int64Array, RecordBatch, StringArray, StructArray, Time64MicrosecondArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::i256;
use arrow_ipc::writer::{
    DictionaryTracker, IpcDataGenerator, IpcWriteContext, IpcWriteOptions, write_message,
};
use arrow_schema::{DataType, Field, Fields, Schema};
use emulator_support::*;
use kinesis_bigquery::pb::storage::append_rows_request::{ArrowData, Rows};
use kinesis_bigquery::pb::storage::storage_error::StorageErrorCode;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{
    AppendRowsRequest, ArrowRecordBatch, ArrowSchema, TableSchema,
};
use serde_json::json;
use tonic::Code;

fn schema_bytes(schema: &Schema) -> Vec<u8> {
    let opts = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let enc = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &opts,
    );
    let mut out = Vec::new();
    write_message(&mut out, enc, &opts).unwrap();
    out
}

fn batch_bytes(batch: &RecordBatch) -> Vec<u8> {
    let opts = IpcWriteOptions::default();
    let mut tracker = DictionaryTracker::new(false);
    let (dicts, enc) = IpcDataGenerator::default()
        .encode(batch, &mut tracker, &opts, &mut IpcWriteContext::default())
        .unwrap();
    assert!(dicts.is_empty());
    let mut out = Vec::new();
    write_message(&mut out, enc, &opts).unwrap();
    out
}

fn arrow_request(
    stream: &str,
    schema: Option<&Schema>,
    offset: Option<i64>,
    batch: &RecordBatch,
) -> AppendRowsRequest {
    AppendRowsRequest {
        write_stream: stream.into(),
        offset,
        rows: Some(Rows::ArrowRows(ArrowData {
            writer_schema: schema.map(|s| ArrowSchema { serialized_schema: schema_bytes(s) }),
            rows: Some(ArrowRecordBatch {
                serialized_record_batch: batch_bytes(batch),
                ..Default::default()
            }),
        })),
        ..Default::default()
    }
}

fn table() -> TableSchema {
    TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            col("ok", Type::Bool, Mode::Nullable),
            col("x", Type::Double, Mode::Nullable),
            col("s", Type::String, Mode::Nullable),
            col("raw", Type::Bytes, Mode::Nullable),
            col("n", Type::Numeric, Mode::Nullable),
            col("bn", Type::Bignumeric, Mode::Nullable),
            col("d", Type::Date, Mode::Nullable),
            col("ts", Type::Timestamp, Mode::Nullable),
            col("dt", Type::Datetime, Mode::Nullable),
            col("tm", Type::Time, Mode::Nullable),
            col("tags", Type::String, Mode::Repeated),
            record("rec", Mode::Nullable, vec![col("y", Type::Int64, Mode::Nullable)]),
        ],
    }
}

fn writer_schema() -> Schema {
    Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("x", DataType::Float64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("raw", DataType::Binary, true),
        Field::new("n", DataType::Decimal128(38, 9), true),
        Field::new("bn", DataType::Decimal256(76, 38), true),
        Field::new("d", DataType::Date32, true),
        Field::new(
            "ts",
            DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("dt", DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None), true),
        Field::new("tm", DataType::Time64(arrow_schema::TimeUnit::Microsecond), true),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        ),
        Field::new(
            "rec",
            DataType::Struct(Fields::from(vec![Field::new("y", DataType::Int64, true)])),
            true,
        ),
    ])
}

fn batch(schema: &Schema, ids: Vec<Option<i64>>, dates: Vec<i32>) -> RecordBatch {
    let n = ids.len();
    let mut tags = ListBuilder::new(StringBuilder::new());
    for _ in 0..n {
        tags.values().append_value("a");
        tags.values().append_value("b");
        tags.append(true);
    }
    let rec = StructArray::from(vec![(
        Arc::new(Field::new("y", DataType::Int64, true)),
        Arc::new(Int64Array::from(vec![7; n])) as ArrayRef,
    )]);
    let cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids)),
        Arc::new(BooleanArray::from(vec![Some(true); n])),
        Arc::new(Float64Array::from(vec![0.25; n])),
        Arc::new(StringArray::from(vec![Some("s"); n])),
        Arc::new(BinaryArray::from(vec![Some(&b"\x01\x02"[..]); n])),
        Arc::new(
            Decimal128Array::from(vec![1_500_000_000i128; n])
                .with_precision_and_scale(38, 9)
                .unwrap(),
        ),
        Arc::new(
            Decimal256Array::from(vec![i256::from_i128(-25); n])
                .with_precision_and_scale(76, 38)
                .unwrap(),
        ),
        Arc::new(Date32Array::from(dates)),
        Arc::new(TimestampMicrosecondArray::from(vec![1_000_001i64; n]).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(vec![86_400_000_000i64; n])),
        Arc::new(Time64MicrosecondArray::from(vec![3_600_000_001i64; n])),
        Arc::new(tags.finish()),
        Arc::new(rec),
    ];
    RecordBatch::try_new(Arc::new(schema.clone()), cols).unwrap()
}

#[tokio::test]
async fn arrow_batches_land_with_the_type_mapping() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, table())?;
    let mut c = client(&emu).await;
    let s = writer_schema();
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn
        .append(arrow_request(
            &t.default_stream(),
            Some(&s),
            None,
            &batch(&s, vec![Some(1), Some(2)], vec![0, 19_723]),
        ))
        .await?;
    assert_eq!(outcome(&r), Ok(None), "{r:?}");
    // The schema is sent once per connection.
    let r = conn.append(arrow_request("", None, None, &batch(&s, vec![Some(3)], vec![1]))).await?;
    assert_eq!(outcome(&r), Ok(None), "{r:?}");
    let rows = emu.read_rows(&t)?;
    assert_eq!(ids(&rows), ["1", "2", "3"]);
    assert_eq!(
        rows[1],
        json!({
            "id": "2", "ok": true, "x": 0.25, "s": "s", "raw": "AQI=", "n": "1.5",
            "bn": "-0.00000000000000000000000000000000000025", "d": "2024-01-01",
            "ts": "1970-01-01T00:00:01.000001Z", "dt": "1970-01-02T00:00:00.000000", "tm": "01:00:00.000001",
            "tags": ["a", "b"], "rec": {"y": "7"}
        })
    );
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn arrow_bad_rows_extra_fields_and_garbage_are_refused() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, table())?;
    let mut c = client(&emu).await;
    let s = writer_schema();

    // Row 1 misses the REQUIRED id, row 2 has a DATE beyond 9999-12-31.
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn
        .append(arrow_request(
            &t.default_stream(),
            Some(&s),
            None,
            &batch(&s, vec![Some(1), None, Some(3)], vec![0, 0, 3_000_000]),
        ))
        .await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);
    assert_eq!(r.row_errors.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2]);
    assert!(emu.read_rows(&t)?.is_empty());

    let mut extra = writer_schema().fields().to_vec();
    extra.push(Arc::new(Field::new("nope", DataType::Utf8, true)));
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn
        .append(arrow_request(
            &t.default_stream(),
            Some(&Schema::new(extra)),
            None,
            &batch(&s, vec![Some(1)], vec![0]),
        ))
        .await?;
    assert_eq!(storage_code(&r), Some(StorageErrorCode::SchemaMismatchExtraFields));

    let wrong = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let one = RecordBatch::try_new(
        Arc::new(wrong.clone()),
        vec![Arc::new(StringArray::from(vec!["1"])) as ArrayRef],
    )?;
    let r = conn.append(arrow_request(&t.default_stream(), Some(&wrong), None, &one)).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);

    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let mut req =
        arrow_request(&t.default_stream(), Some(&s), None, &batch(&s, vec![Some(1)], vec![0]));
    if let Some(Rows::ArrowRows(a)) = req.rows.as_mut() {
        a.rows = Some(ArrowRecordBatch {
            serialized_record_batch: vec![0xFF, 0xFF, 0xFF, 0xFF, 0x10, 0, 0, 0, 1, 2, 3],
            ..Default::default()
        });
    }
    let r = conn.append(req).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);
    assert!(emu.read_rows(&t)?.is_empty());
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn arrow_struct_feeds_a_range_column() -> anyhow::Result<()> {
    use kinesis_bigquery::pb::storage::TableFieldSchema;
    use kinesis_bigquery::pb::storage::table_field_schema::FieldElementType;
    let emu = start().await;
    let t = table_name();
    let range = TableFieldSchema {
        range_element_type: Some(FieldElementType { r#type: Type::Date as i32 }),
        ..col("p", Type::Range, Mode::Nullable)
    };
    emu.create_table(
        &t,
        TableSchema { fields: vec![col("id", Type::Int64, Mode::Required), range] },
    )?;
    let bounds = Fields::from(vec![
        Field::new("start", DataType::Date32, true),
        Field::new("end", DataType::Date32, true),
    ]);
    let s = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("p", DataType::Struct(bounds.clone()), true),
    ]);
    let p = StructArray::try_new(
        bounds,
        vec![
            Arc::new(Date32Array::from(vec![Some(0), None])) as ArrayRef,
            Arc::new(Date32Array::from(vec![Some(31), Some(1)])),
        ],
        None,
    )?;
    let b = RecordBatch::try_new(
        Arc::new(s.clone()),
        vec![Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef, Arc::new(p)],
    )?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    assert_eq!(
        outcome(&conn.append(arrow_request(&t.default_stream(), Some(&s), None, &b)).await?),
        Ok(None)
    );
    assert_eq!(
        emu.read_rows(&t)?,
        vec![
            json!({"id": "1", "p": {"start": "1970-01-01", "end": "1970-02-01"}}),
            json!({"id": "2", "p": {"start": null, "end": "1970-01-02"}}),
        ]
    );
    emu.shutdown().await;
    Ok(())
}
