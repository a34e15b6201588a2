//! Fast paths of the per-type encoding against the general path, through
//! the public encoder: the same bytes for the same value however spelled.

use crate::pb::storage::TableSchema;
use crate::pb::storage::table_field_schema::{Mode, Type};
use crate::rows::tests::col;
use crate::rows::{Encoder, EncoderOptions, RecordMeta, RowFormat, UnknownFields};

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
        let opts = EncoderOptions { format, unknown_fields: UnknownFields::Reject };
        let e = Encoder::new(&schema, opts).unwrap();
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
