//! Fast paths of the per-type encoding against the general path, through
//! the public encoder: the same bytes for the same value however spelled.

use crate::pb::storage::TableSchema;
use crate::pb::storage::table_field_schema::{Mode, Type};
use crate::rows::tests::col;
use crate::rows::{Encoder, EncoderOptions, RecordMeta, RowFormat, UnknownFields};

fn encoder(schema: &TableSchema, format: RowFormat) -> Encoder {
    let opts = EncoderOptions { format, unknown_fields: UnknownFields::Reject };
    Encoder::new(schema, opts).unwrap()
}

fn row(e: &Encoder, json: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match e.encode(json.as_bytes(), &RecordMeta::default(), &mut out) {
        Ok(()) => out,
        Err(err) => panic!("{json}: {err}"),
    }
}

/// A decimal string read in one pass where it stands writes the bytes the
/// general path writes for the same value spelled with an escape, an
/// exponent, or as a JSON number; both formats, both decimal types.
#[test]
fn quoted_decimals_match_the_general_path() {
    let schema = TableSchema {
        fields: vec![
            col("n", Type::Numeric, Mode::Nullable),
            col("bn", Type::Bignumeric, Mode::Nullable),
        ],
    };
    let big = "123456789012345678.12345678901234567890123456789012345678";
    for format in [RowFormat::Proto, RowFormat::Arrow] {
        let e = encoder(&schema, format);
        for (name, fast, general) in [
            ("n", r#""-12.5""#, r#""-1\u0032.5""#.to_string()),
            ("n", r#""12.50""#, r#""1.25e1""#.to_string()),
            ("n", r#""+0.000000001""#, "1e-9".to_string()),
            ("bn", &format!(r#""-{big}""#), format!(r#""-{big}\u0030""#)),
            ("bn", r#""-.5""#, "-0.5".to_string()),
        ] {
            let at = |v: &str| format!(r#"{{"{name}":{v}}}"#);
            assert_eq!(row(&e, &at(fast)), row(&e, &at(&general)), "{fast} {general}");
        }
    }
}

/// A date or time string read in one pass where it stands writes the bytes
/// the general path writes for the same text with an escape in it (which
/// the one-pass reader declines), and the general path's errors stay.
#[test]
fn quoted_dates_and_times_match_the_general_path() {
    let schema = TableSchema {
        fields: vec![
            col("ts", Type::Timestamp, Mode::Nullable),
            col("d", Type::Date, Mode::Nullable),
            col("dt", Type::Datetime, Mode::Nullable),
            col("t", Type::Time, Mode::Nullable),
        ],
    };
    let e = encoder(&schema, RowFormat::Proto);
    for (name, text) in [
        ("ts", "2024-05-06T07:08:09.123456Z"),
        ("ts", "2024-05-06 09:08:09.5+02:00"),
        ("ts", "2024-05-06t07:08:09"),
        ("ts", "0001-01-01T00:00:00.000000001-00:00"),
        ("d", "2024-02-29"),
        ("dt", "2019-11-27T12:34:56.789"),
        ("t", "23:59:59.999999"),
    ] {
        // The escape spells the text's last character.
        let (head, last) = text.split_at(text.len() - 1);
        let escaped = format!("{head}\\u00{:02x}", last.as_bytes()[0]);
        let at = |v: &str| format!(r#"{{"{name}":"{v}"}}"#);
        assert_eq!(row(&e, &at(text)), row(&e, &at(&escaped)), "{text}");
    }
    let mut out = Vec::new();
    for bad in [r#"{"ts":"2024-02-30T00:00:00Z"}"#, r#"{"d":"2024-13-01"}"#, r#"{"t":"24:00:00"}"#]
    {
        let err = e.encode(bad.as_bytes(), &RecordMeta::default(), &mut out).unwrap_err();
        assert!(err.to_string().contains("invalid"), "{bad}: {err}");
    }
}

/// A JSON number read where it stands writes what the general path writes
/// for the same number as a string (read through `parse_i64` and
/// `parse_f64`), up to the one-pass reads' digit limits and past them.
#[test]
fn numbers_read_in_one_pass_match_the_general_path() {
    let schema = TableSchema {
        fields: vec![
            col("i", Type::Int64, Mode::Nullable),
            col("ts", Type::Timestamp, Mode::Nullable),
            col("f", Type::Double, Mode::Nullable),
        ],
    };
    let e = encoder(&schema, RowFormat::Proto);
    for x in ["0.1", "-0.0", "12.5", "123456789.123456", "1234567890.1234567", "7", "1e300"] {
        let at = |v: &str| format!(r#"{{"f":{v}}}"#);
        assert_eq!(row(&e, &at(x)), row(&e, &at(&format!("\"{x}\""))), "{x}");
    }
    for n in [
        "0",
        "-0",
        "7",
        "-42",
        "1234567",
        "12345678",
        "-123456789",
        "999999999999999999",
        "-9223372036854775808",
        "9223372036854775807",
    ] {
        let at = |v: &str| format!(r#"{{"i":{v}}}"#);
        assert_eq!(row(&e, &at(n)), row(&e, &at(&format!("\"{n}\""))), "{n}");
        // Epoch microseconds: inside TIMESTAMP's range (below 2.5e17).
        if n.trim_start_matches('-').len() > 17 {
            continue;
        }
        let at = |v: &str| format!(r#"{{"ts": {v} , "i":1}}"#);
        assert_eq!(row(&e, &at(n)), row(&e, &at(&format!("\"{n}\""))), "{n}");
    }
    let mut out = Vec::new();
    for bad in [
        r#"{"i":01}"#,
        r#"{"i":1.5}"#,
        r#"{"i":9223372036854775808}"#,
        r#"{"ts":1.5}"#,
        r#"{"ts":999999999999999999}"#,
    ] {
        assert!(e.encode(bad.as_bytes(), &RecordMeta::default(), &mut out).is_err(), "{bad}");
    }
}
