//! The Arrow writer against arrow-rs' own checks and writers.

use super::*;
use arrow_buffer::ScalarBuffer;

mod reference;

fn parts(strs: &[&[u8]]) -> (OffsetBuffer<i32>, Buffer) {
    let mut offsets = vec![0i32];
    let mut data = Vec::new();
    for s in strs {
        data.extend_from_slice(s);
        offsets.push(data.len() as i32);
    }
    (OffsetBuffer::new(ScalarBuffer::from(offsets)), Buffer::from_vec(data))
}

/// The compiled table, its Arrow schema, and an Arrow-mode encoder for it.
fn arrow_parts(
    table: &crate::pb::storage::TableSchema,
) -> (Fields, SchemaRef, super::super::Encoder) {
    let fields = super::super::schema::compile(table).unwrap();
    let schema = schema(&fields);
    let options = super::super::EncoderOptions {
        format: super::super::RowFormat::Arrow,
        ..Default::default()
    };
    (fields, schema, super::super::Encoder::new(table, options).unwrap())
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
    let (fields, schema, enc) = arrow_parts(&table);
    let schema_bytes = schema_message(&schema);
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
        let mut cols = Columns::new(&fields, n, 1 << 16);
        for (slot, row) in rows[..n].iter().enumerate() {
            assert!(cols.push_row(row, slot).is_ok());
        }
        let arrays = cols.finish(&fields, n).unwrap();
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

/// A schema with every type, nulls at each level, REPEATED scalars, and
/// REPEATED RECORDs holding REPEATED fields and RECORDs, three levels deep.
fn lazy_schema() -> crate::pb::storage::TableSchema {
    use crate::pb::storage::table_field_schema::{FieldElementType, Mode as M, Type as T};
    use crate::rows::tests::col;
    let rec = |name: &str, mode: M, fields| crate::pb::storage::TableFieldSchema {
        fields,
        ..col(name, T::Struct, mode)
    };
    let mut range = col("r", T::Range, M::Nullable);
    range.range_element_type = Some(FieldElementType { r#type: T::Date as i32 });
    crate::pb::storage::TableSchema {
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
            col("j", T::Json, M::Nullable),
            range,
            col("tags", T::String, M::Repeated),
            col("nums", T::Int64, M::Repeated),
            rec(
                "user",
                M::Nullable,
                vec![
                    col("name", T::String, M::Required),
                    rec(
                        "addr",
                        M::Repeated,
                        vec![
                            col("zip", T::Int64, M::Nullable),
                            col("lines", T::String, M::Repeated),
                            rec("geo", M::Nullable, vec![col("lat", T::Double, M::Nullable)]),
                        ],
                    ),
                    col("score", T::Numeric, M::Nullable),
                    col("ok", T::Bool, M::Required),
                ],
            ),
            rec(
                "ev",
                M::Repeated,
                vec![col("kind", T::String, M::Nullable), col("at", T::Timestamp, M::Nullable)],
            ),
        ],
    }
}

/// A xorshift stream of choices for [`lazy_record`].
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// An object of the given members: each NULLABLE one absent, null or
    /// set (REQUIRED ones always set), in shuffled order, so fields arrive
    /// out of column order as JSON allows.
    fn object(&mut self, members: Vec<(&str, serde_json::Value, bool)>) -> serde_json::Value {
        let mut kept = Vec::new();
        for (k, v, required) in members {
            match if required { 2 } else { self.below(6) } {
                0 | 1 => {}
                2..=4 => kept.push((k.to_string(), v)),
                _ => kept.push((k.to_string(), serde_json::Value::Null)),
            }
        }
        for i in (1..kept.len()).rev() {
            kept.swap(i, self.below(i as u64 + 1) as usize);
        }
        serde_json::Value::Object(kept.into_iter().collect())
    }

    /// An array of 0–3 elements.
    fn array(&mut self, mut elem: impl FnMut(&mut Self) -> serde_json::Value) -> serde_json::Value {
        let n = self.below(4);
        serde_json::Value::Array((0..n).map(|_| elem(self)).collect())
    }

    fn text(&mut self) -> serde_json::Value {
        let texts = ["", "plain", "Grüße", "東京 😀", "a\"b"];
        serde_json::json!(texts[self.below(texts.len() as u64) as usize])
    }
}

/// A record of [`lazy_schema`] from a seed.
fn lazy_record(seed: u64) -> String {
    use serde_json::json;
    let mut p = Pick(seed | 1);
    let addrs = p.array(|p| {
        let lines = p.array(Pick::text);
        let lat = json!(p.below(360) as f64 / 4.0);
        let geo = p.object(vec![("lat", lat, false)]);
        let zip = json!(p.below(99_999));
        p.object(vec![("zip", zip, false), ("lines", lines, false), ("geo", geo, false)])
    });
    let name = p.text();
    let user = p.object(vec![
        ("name", name, true),
        ("addr", addrs, false),
        ("score", json!(format!("-{}.5", seed % 1000)), false),
        ("ok", json!(seed.is_multiple_of(2)), true),
    ]);
    let evs = p.array(|p| {
        let kind = p.text();
        let at = json!(p.below(1 << 40));
        p.object(vec![("kind", kind, false), ("at", at, false)])
    });
    let tags = p.array(Pick::text);
    let nums = p.array(|p| json!(p.below(1000) as i64 - 500));
    let s = p.text();
    p.object(vec![
        ("b", json!(seed.is_multiple_of(3)), false),
        ("i", json!(seed as i64 >> 3), false),
        ("f", json!((seed % 1000) as f64 / 8.0), false),
        ("s", s, false),
        ("by", json!("AAEC"), false),
        ("n", json!(format!("{}.{:09}", seed % 100_000, seed % 1_000_000_007)), false),
        ("bn", json!(format!("-{}.{:038}", seed % 7, seed)), false),
        ("ts", json!(seed % (1 << 50)), false),
        ("d", json!("2024-02-29"), false),
        ("t", json!("23:59:58.123456"), false),
        ("dt", json!("2024-05-06T07:08:09.5"), false),
        ("j", json!({"k": [1, {"x": null}]}), false),
        ("r", json!("[2024-01-01, UNBOUNDED)"), false),
        ("tags", tags, false),
        ("nums", nums, false),
        ("user", user, false),
        ("ev", evs, false),
    ])
    .to_string()
}

proptest::proptest! {
    /// The lazy transposer builds the same batch as the row-at-a-time
    /// reference, on every type, nesting and pattern of nulls and arrays.
    #[test]
    fn lazy_columns_match_the_row_at_a_time_reference(
        seeds in proptest::collection::vec(proptest::num::u64::ANY, 0..24)
    ) {
        let table = lazy_schema();
        let (fields, schema, enc) = arrow_parts(&table);
        let mut rows = Vec::new();
        for seed in &seeds {
            let record = lazy_record(*seed);
            let mut row = Vec::new();
            enc.encode(record.as_bytes(), &super::super::RecordMeta::default(), &mut row)
                .unwrap_or_else(|e| panic!("{e}: {record}"));
            rows.push(row);
        }
        let rows: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let mut cols = Columns::new(&fields, rows.len(), 1 << 16);
        for (slot, row) in rows.iter().enumerate() {
            proptest::prop_assert!(cols.push_row(row, slot).is_ok());
        }
        let lazy = RecordBatch::try_new(schema.clone(), cols.finish(&fields, rows.len()).unwrap()).unwrap();
        let want = reference::batch(&fields, &schema, &rows);
        // The same message, byte for byte (validity bits, padding values
        // of null slots and all), not only equal arrays.
        let schema_bytes = schema_message(&schema);
        let ours = batch_message(&fields, &schema, &schema_bytes, &rows).ok().unwrap();
        proptest::prop_assert_eq!(ours, record_batch_message(&want, &schema_bytes).unwrap());
        proptest::prop_assert_eq!(lazy, want);
    }
}

/// A scalar column given twice in one row is refused, as before.
#[test]
fn a_scalar_twice_in_a_row_is_foreign() {
    use crate::pb::storage::table_field_schema::{Mode as M, Type as T};
    use crate::rows::tests::col;
    let table = crate::pb::storage::TableSchema { fields: vec![col("i", T::Int64, M::Nullable)] };
    let fields = super::super::schema::compile(&table).unwrap();
    let mut cols = Columns::new(&fields, 2, 64);
    // Field 1, varint 5, twice.
    assert!(cols.push_row(&[8, 5], 0).is_ok());
    assert_eq!(cols.push_row(&[8, 5, 8, 6], 1).err(), Some("field repeated in a row"));
}
