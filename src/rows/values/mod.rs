//! Per-type value parsing: the text of one JSON value → the integer, float
//! or bytes BigQuery stores. Pure functions; the encoder decides which JSON
//! kinds reach which parser (docs/coercions.md has the full table).

pub(crate) mod decimal;
pub(crate) mod digits;
pub(crate) mod time;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// An integer: optional sign, ASCII digits, within i64. JSON numbers with a
/// fraction or exponent are refused (JsonStreamWriter refuses doubles for
/// INT64); strings may carry a leading `+` as `Long.parseLong` allows.
#[inline]
pub(crate) fn parse_i64<S: AsRef<[u8]> + ?Sized>(s: &S) -> Option<i64> {
    let b = s.as_ref();
    let (neg, digits) = match b.first() {
        Some(b'-') => (true, b.get(1..)?),
        Some(b'+') => (false, b.get(1..)?),
        _ => (false, b),
    };
    if digits.is_empty() {
        return None;
    }
    // Up to 18 digits cannot overflow: no checks per digit.
    if digits.len() <= 18 {
        let mut acc: i64 = 0;
        for &d in digits {
            if !d.is_ascii_digit() {
                return None;
            }
            acc = acc * 10 + i64::from(d - b'0');
        }
        return Some(if neg { -acc } else { acc });
    }
    // Accumulate negatively so i64::MIN fits; one pass, checked.
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        acc = acc.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if neg { Some(acc) } else { acc.checked_neg() }
}

/// Why a FLOAT64 text was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FloatError {
    Syntax,
    Overflow,
}

/// A decimal number (JSON grammar, plus a leading `+` or `.` in strings) or,
/// in strings only, `NaN`, `Infinity`, `-Infinity` (`+Infinity`). Finite text
/// that overflows f64 is refused rather than stored as infinity.
pub(crate) fn parse_f64<S: AsRef<[u8]> + ?Sized>(
    s: &S,
    from_string: bool,
) -> Result<f64, FloatError> {
    if let Some(v) = short_decimal(s.as_ref()) {
        return Ok(v);
    }
    let s = std::str::from_utf8(s.as_ref()).map_err(|_| FloatError::Syntax)?;
    if from_string {
        match s {
            "NaN" => return Ok(f64::NAN),
            "Infinity" | "+Infinity" => return Ok(f64::INFINITY),
            "-Infinity" => return Ok(f64::NEG_INFINITY),
            _ => {}
        }
        // Rust's parser also takes "inf"/"nan" spellings: only digits get through.
        let ok =
            s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
                && s.bytes().any(|b| b.is_ascii_digit());
        if !ok {
            return Err(FloatError::Syntax);
        }
    }
    let v: f64 = s.parse().map_err(|_| FloatError::Syntax)?;
    if v.is_finite() { Ok(v) } else { Err(FloatError::Overflow) }
}

/// `-?D+(.D+)?` with at most 15 digits, exactly: the digits as an integer and
/// the power of ten dividing them are both exact in an f64, and IEEE division
/// rounds correctly, so the quotient is the correctly rounded value (Clinger's
/// fast path). `None` for anything else, which goes to the full parser.
fn short_decimal(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] =
        [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (neg, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, b),
    };
    if b.len() > 16 {
        return None;
    }
    // One pass: the digits as an integer, and where the fraction starts.
    let (mut m, mut dot) = (0u64, None);
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            m = m * 10 + u64::from(c - b'0');
        } else if c == b'.' && dot.is_none() && i > 0 {
            dot = Some(i);
        } else {
            return None;
        }
    }
    let frac_digits = match dot {
        Some(at) => b.len() - at - 1,
        None => 0,
    };
    let digits = b.len() - usize::from(dot.is_some());
    if digits == 0 || digits > 15 || (dot.is_some() && frac_digits == 0) {
        return None;
    }
    let v = m as f64 / POW10.get(frac_digits)?;
    Some(if neg { -v } else { v })
}

/// Standard or URL-safe alphabet, padding optional (product decision; Java's
/// writer takes no base64 at all, Go's protojson takes both alphabets).
pub(crate) fn decode_base64(s: &str, out: &mut Vec<u8>) -> bool {
    const CFG: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(false);
    const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CFG);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CFG);
    let url = s.bytes().any(|b| b == b'-' || b == b'_');
    let engine = if url { &URL } else { &STD };
    engine.decode_vec(s, out).is_ok()
}

/// GEOGRAPHY text, checked for shape only (BigQuery parses it fully): WKT
/// with a known geometry keyword and balanced parentheses (or `EMPTY`), or
/// GeoJSON text, an object with a string `type`.
pub(crate) fn is_geography(s: &str) -> bool {
    let t = s.trim();
    if t.starts_with('{') {
        return is_geojson(t.as_bytes());
    }
    const KINDS: [&str; 7] = [
        "POINT",
        "LINESTRING",
        "POLYGON",
        "MULTIPOINT",
        "MULTILINESTRING",
        "MULTIPOLYGON",
        "GEOMETRYCOLLECTION",
    ];
    let known = KINDS.iter().any(|k| t.get(..k.len()).is_some_and(|p| p.eq_ignore_ascii_case(k)));
    let mut depth = 0i64;
    for b in t.bytes() {
        depth += match b {
            b'(' => 1,
            b')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return false;
        }
    }
    let empty =
        t.len() >= 5 && t.get(t.len() - 5..).is_some_and(|e| e.eq_ignore_ascii_case("EMPTY"));
    known && depth == 0 && (t.contains('(') || empty)
}

/// A JSON object with a string member `type` (GeoJSON, RFC 7946 §3).
pub(crate) fn is_geojson(text: &[u8]) -> bool {
    use super::json::{Kind, Reader};
    let mut r = Reader::new(text);
    let mut scratch = Vec::new();
    let mut has_type = false;
    let mut first = true;
    let mut walk = || -> Result<(), super::json::JsonError> {
        r.begin_object()?;
        loop {
            let is_type = match r.next_key(&mut first, &mut scratch)? {
                None => break,
                Some(k) => k == b"type",
            };
            if is_type && r.peek()? == Kind::String {
                has_type = true;
            }
            r.skip_value()?;
        }
        r.finish()
    };
    walk().is_ok() && has_type
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geography_shapes() {
        for ok in [
            "POINT(1 2)",
            "point (1 2)",
            "POLYGON((0 0,1 0,1 1,0 0))",
            "POINT EMPTY",
            r#"{"type":"Point","coordinates":[1,2]}"#,
        ] {
            assert!(is_geography(ok), "{ok}");
        }
        for bad in [
            "abc",
            "POINT(1 2",
            "POINT)(",
            "CIRCLE(1)",
            r#"{"coordinates":[1,2]}"#,
            "{",
            r#"{"type":1}"#,
        ] {
            assert!(!is_geography(bad), "{bad}");
        }
    }

    #[test]
    fn integers() {
        assert_eq!(parse_i64("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64("+42"), Some(42));
        assert_eq!(parse_i64("9223372036854775808"), None);
        for bad in ["", "-", "1.0", "1e3", " 1", "0x1", "１"] {
            assert_eq!(parse_i64(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Both paths (up to 18 digits unchecked, longer checked) agree with
        /// the standard parser, on integers and on near-integer text.
        #[test]
        fn integers_match_the_standard_parser(s in "[+-]?[0-9]{0,21}[0-9a.]?") {
            let want = s.parse::<i64>().ok().filter(|_| s.bytes().skip(1).all(|b| b.is_ascii_digit()));
            proptest::prop_assert_eq!(parse_i64(&s), want, "{}", s);
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64("1.5e3", false), Ok(1500.0));
        assert!(parse_f64("NaN", true).unwrap().is_nan());
        assert_eq!(parse_f64("-Infinity", true), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_f64("inf", true), Err(FloatError::Syntax));
        assert_eq!(parse_f64("1e999", false), Err(FloatError::Overflow));
        assert_eq!(parse_f64(".5", true), Ok(0.5));
        assert_eq!(parse_f64("-0", false).map(f64::to_bits), Ok((-0.0f64).to_bits()));
    }

    proptest::proptest! {
        /// The fast path gives the standard parser's bits, or defers to it.
        #[test]
        fn short_decimals_match_the_standard_parser(
            int in 0u64..10_000_000_000,
            frac in proptest::option::of(0u64..100_000_000),
            frac_width in 1usize..9,
            neg in proptest::bool::ANY,
        ) {
            let sign = if neg { "-" } else { "" };
            let text = match frac {
                Some(f) => format!("{sign}{int}.{f:0frac_width$}"),
                None => format!("{sign}{int}"),
            };
            let want: f64 = text.parse().unwrap();
            if let Some(got) = short_decimal(text.as_bytes()) {
                proptest::prop_assert_eq!(got.to_bits(), want.to_bits(), "{}", text);
            }
            proptest::prop_assert_eq!(parse_f64(&text, false).map(f64::to_bits), Ok(want.to_bits()));
        }
    }

    #[test]
    fn short_decimal_takes_only_the_plain_form() {
        for (text, want) in [("89.95", Some(89.95)), ("-12.5", Some(-12.5)), ("7", Some(7.0))] {
            assert_eq!(short_decimal(text.as_bytes()), want, "{text}");
        }
        for text in ["", "-", ".5", "5.", "1e3", "1.2.3", "+1", "1234567890123456", "0x1", "1 "] {
            assert_eq!(short_decimal(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn base64_both_alphabets() {
        let mut out = vec![];
        assert!(decode_base64("+/8=", &mut out));
        assert_eq!(out, [0xfb, 0xff]);
        out.clear();
        assert!(decode_base64("-_8", &mut out));
        assert_eq!(out, [0xfb, 0xff]);
        out.clear();
        assert!(!decode_base64("a", &mut out));
        assert!(!decode_base64("a b=", &mut out));
    }
}
