//! The Arrow writer against arrow-rs' own checks and writers.

use super::*;

fn parts(strs: &[&[u8]]) -> (OffsetBuffer<i32>, Buffer) {
    let mut offsets = vec![0i32];
    let mut data = Vec::new();
    for s in strs {
        data.extend_from_slice(s);
        offsets.push(data.len() as i32);
    }
    (OffsetBuffer::new(ScalarBuffer::from(offsets)), Buffer::from_vec(data))
}

/// The one-copy message is byte for byte what `IpcDataGenerator::encode`
/// and `write_message` write (the reference it replaced), on a batch with
/// nulls, lists, structs, decimals and text.
#[test]
fn record_batch_message_matches_the_generator() {
    use crate::pb::storage::TableSchema;
    use crate::pb::storage::table_field_schema::{Mode as M, Type as T};
    use crate::rows::tests::col;
    let mut rec = col("r", T::Struct, M::Nullable);
    rec.fields = vec![col("x", T::Int64, M::Nullable), col("l", T::String, M::Repeated)];
    let table = TableSchema {
        fields: vec![
            col("s", T::String, M::Nullable),
            col("n", T::Numeric, M::Nullable),
            col("b", T::Bignumeric, M::Nullable),
            col("t", T::Timestamp, M::Nullable),
            col("f", T::Double, M::Repeated),
            col("ok", T::Bool, M::Nullable),
            rec,
        ],
    };
    let fields = super::super::schema::compile(&table).unwrap();
    let schema = schema(&fields);
    let schema_bytes = schema_message(&schema);
    let enc = super::super::Encoder::new(
        &table,
        super::super::EncoderOptions {
            format: super::super::RowFormat::Arrow,
            ..Default::default()
        },
    )
    .unwrap();
    let records = [
        r#"{"s":"Grüße","n":"1.5","b":"-2","t":1,"f":[1.5,2],"ok":true,"r":{"x":3,"l":["a","東"]}}"#,
        r#"{"s":null,"f":[],"r":null}"#,
        r#"{"n":"-99999.000000001","r":{"l":[]}}"#,
    ];
    let mut rows = Vec::new();
    for r in records {
        let mut row = Vec::new();
        enc.encode(r.as_bytes(), &super::super::RecordMeta::default(), &mut row).unwrap();
        rows.push(row);
    }
    let rows: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
    for n in [0, 1, rows.len()] {
        let mut cols: Vec<Col> = fields.fields.iter().map(|f| Col::new(f, n)).collect();
        let mut present = Vec::new();
        for row in &rows[..n] {
            assert!(push_message(&mut cols, &fields, row, &mut present).is_ok());
        }
        let arrays: Vec<ArrayRef> =
            cols.into_iter().zip(&fields.fields).map(|(c, f)| c.finish(f).unwrap()).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        let options = IpcWriteOptions::default();
        let mut context = arrow_ipc::writer::IpcWriteContext::default();
        let (_, encoded) = IpcDataGenerator::default()
            .encode(&batch, &mut DictionaryTracker::new(false), &options, &mut context)
            .unwrap();
        let mut reference = Vec::new();
        write_message(&mut reference, encoded, &options).unwrap();
        assert_eq!(record_batch_message(&batch, &schema_bytes).unwrap(), reference, "{n} rows");
    }
    assert!(record_batch_message(&RecordBatch::new_empty(schema.clone()), b"nope").is_err());
}

#[test]
fn string_array_refuses_what_try_new_refuses() {
    let cases: &[&[&[u8]]] = &[
        &[b"plain", "Grüße 東京 😀".as_bytes(), b""],
        &[b"ok", b"\xff\xfe"],
        // One valid character split across two strings.
        &[&[0xC3], &[0xA9]],
    ];
    for strs in cases {
        let (o, d) = parts(strs);
        let ours = string_array(o.clone(), d.clone(), None)
            .map(|a| a.iter().map(|s| s.map(str::to_owned)).collect::<Vec<_>>());
        let theirs = StringArray::try_new(o, d, None)
            .map(|a| a.iter().map(|s| s.map(str::to_owned)).collect::<Vec<_>>());
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{strs:?}");
        if let (Ok(a), Ok(b)) = (ours, theirs) {
            assert_eq!(a, b);
        }
    }
    let (o, d) = parts(&[b"a", b"b"]);
    assert!(string_array(o, d, Some(NullBuffer::from(vec![true]))).is_err(), "null count");
}
