//! The decimal parsers against the general parser and the standard library.

use super::*;

/// Every byte value at every position of an eight-byte run around
/// valid digits: the SWAR parse agrees with the byte loop.
#[test]
fn eight_digits_matches_the_byte_loop() {
    let reference = |w: [u8; 8]| -> Option<u64> {
        w.iter()
            .try_fold(0u64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0')))
    };
    for base in [*b"00000000", *b"12345678", *b"99999999", *b"90817263"] {
        assert_eq!(eight_digits(base), reference(base));
        for at in 0..8 {
            for byte in 0..=255u8 {
                let mut w = base;
                w[at] = byte;
                assert_eq!(eight_digits(w), reference(w), "{w:?}");
            }
        }
    }
}

/// `digits` with `stray`'s byte inserted at its place (wrapped to the run).
fn with_stray(digits: String, stray: Option<(usize, u8)>) -> Vec<u8> {
    let mut b = digits.into_bytes();
    if let Some((at, byte)) = stray {
        let at = at % (b.len() + 1);
        b.insert(at, byte);
    }
    b
}

proptest::proptest! {
    /// digits_u64 (eight at a time, then bytes) agrees with the standard
    /// parser on digit runs of every length and on runs with one stray byte.
    #[test]
    fn digits_u64_matches_the_standard_parser(
        digits in "[0-9]{0,21}",
        stray in proptest::option::of((0usize..21, proptest::num::u8::ANY)),
    ) {
        let b = with_stray(digits, stray);
        let want = if b.is_empty() || b.len() > 19 || !b.iter().all(u8::is_ascii_digit) {
            None
        } else {
            std::str::from_utf8(&b).ok().and_then(|s| s.parse::<u64>().ok())
        };
        // The empty run is zero for digits_u64 (callers check emptiness).
        let want = if b.is_empty() { Some(0) } else { want };
        proptest::prop_assert_eq!(digits_u64(&b), want, "{:?}", b);
    }
}

proptest::proptest! {
    /// digits_u128 agrees with the standard parser on runs up to 40
    /// digits, with and without one stray byte.
    #[test]
    fn digits_u128_matches_the_standard_parser(
        digits in "[0-9]{0,40}",
        stray in proptest::option::of((0usize..40, proptest::num::u8::ANY)),
    ) {
        let b = with_stray(digits, stray);
        let want = if b.is_empty() {
            Some(0)
        } else if b.len() > 38 || !b.iter().all(u8::is_ascii_digit) {
            None
        } else {
            std::str::from_utf8(&b).ok().and_then(|s| s.parse::<u128>().ok())
        };
        proptest::prop_assert_eq!(digits_u128(&b), want, "{:?}", b);
    }
}

const NUMERIC: DecimalSpec = DecimalSpec { wire_scale: 9, scale: 9, int_digits: 29, big: false };
const BIG: DecimalSpec = DecimalSpec { wire_scale: 38, scale: 38, int_digits: 39, big: true };

fn n(s: &str) -> Result<i256, DecError> {
    parse(s, NUMERIC, false)
}

#[test]
fn numeric_values() {
    assert_eq!(n("1"), Ok(i256::from_i128(1_000_000_000)));
    assert_eq!(n("-1.5"), Ok(i256::from_i128(-1_500_000_000)));
    assert_eq!(n("0.1"), Ok(i256::from_i128(100_000_000)));
    assert_eq!(n("1e3"), Ok(i256::from_i128(1_000_000_000_000)));
    assert_eq!(n("12.5E-1"), Ok(i256::from_i128(1_250_000_000)));
    assert_eq!(n(".5"), Ok(i256::from_i128(500_000_000)));
    assert_eq!(n("0.0000000010000"), Ok(i256::from_i128(1)));
    assert_eq!(n("-0"), Ok(i256::ZERO));
    assert_eq!(n("99999999999999999999999999999.999999999"), Ok(max_numeric()));
    assert_eq!(n("100000000000000000000000000000"), Err(DecError::IntDigits));
    assert_eq!(n("0.0000000001"), Err(DecError::FracDigits));
    assert_eq!(parse("0.0000000015", NUMERIC, true), Ok(i256::from_i128(2)));
    assert_eq!(parse("-0.0000000015", NUMERIC, true), Ok(i256::from_i128(-2)));
    assert_eq!(parse("1e-100", NUMERIC, true), Ok(i256::ZERO));
    assert_eq!(n("1e999999999999999"), Err(DecError::IntDigits));
    for bad in ["", "-", "1.2.3", "1e", "abc", "1 ", "0x10", "."] {
        assert_eq!(n(bad), Err(DecError::Syntax), "{bad}");
    }
}

#[test]
fn bignumeric_edges() {
    let max = "578960446186580977117854925043439539266.34992332820282019728792003956564819967";
    let min = "-578960446186580977117854925043439539266.34992332820282019728792003956564819968";
    assert_eq!(parse(max, BIG, false), Ok(i256::MAX));
    assert_eq!(parse(min, BIG, false), Ok(i256::MIN));
    let over = "578960446186580977117854925043439539266.34992332820282019728792003956564819968";
    assert_eq!(parse(over, BIG, false), Err(DecError::Range));
    assert!(!fits_decimal256(i256::MAX));
    let v = parse(
        "99999999999999999999999999999999999999.99999999999999999999999999999999999999",
        BIG,
        false,
    );
    assert!(fits_decimal256(v.unwrap()));
}

const NUMERIC_10_2: DecimalSpec =
    DecimalSpec { wire_scale: 9, scale: 2, int_digits: 8, big: false };

proptest::proptest! {
    /// The plain-form fast path gives the general parser's value, or defers to it.
    #[test]
    fn plain_matches_the_general_parser(
        s in "[+-]?[0-9]{0,45}(\\.[0-9]{0,42})?",
        which in 0usize..3,
        round in proptest::bool::ANY,
    ) {
        let spec = [NUMERIC, BIG, NUMERIC_10_2][which];
        let general = general(s.as_bytes(), spec, round);
        if let Some(fast) = plain(s.as_bytes(), spec) {
            proptest::prop_assert_eq!(Ok(fast), general, "{}", s);
        }
        proptest::prop_assert_eq!(parse(&s, spec, round), general, "{}", s);
    }
}

proptest::proptest! {
    /// The short fast path gives the general parser's value, or defers,
    /// on valid and malformed text alike.
    #[test]
    fn short_matches_the_general_parser(
        s in "[+-]?[0-9]{0,41}(\\.[0-9]{0,40})?|[+-]?[0-9.eE+x -]{0,12}",
        which in 0usize..4,
        round in proptest::bool::ANY,
    ) {
        let spec = [NUMERIC, BIG, NUMERIC_10_2, NUMERIC_5_0][which];
        let general = general(s.as_bytes(), spec, round);
        if let Some(fast) = short(s.as_bytes(), spec) {
            proptest::prop_assert_eq!(Ok(fast), general, "{}", s);
        }
        proptest::prop_assert_eq!(parse(&s, spec, round), general, "{}", s);
    }

    /// The counted wire length is the byte walk's.
    #[test]
    fn wire_len_matches_the_byte_walk(lo in proptest::num::u128::ANY, hi in proptest::num::i128::ANY, shift in 0u8..=255) {
        let v = i256::from_parts(lo, hi) >> shift;
        proptest::prop_assert_eq!(wire_len(v), wire_len_by_walking(v), "{:?}", v);
        let (mut put, mut want) = (vec![7], vec![7, wire_len(v) as u8]);
        put_wire(v, &mut put);
        to_wire_by_walking(v, &mut want);
        proptest::prop_assert_eq!(put, want, "{:?}", v);
    }
}

proptest::proptest! {
    /// The one-pass quoted form gives the general parser's exact value for
    /// the text before the closing quote, or defers, on valid and
    /// malformed text (escapes, stray quotes, bytes past the quote) alike.
    #[test]
    fn parse_quoted_matches_the_general_parser(
        s in "[+-]?[0-9]{0,41}(\\.[0-9]{0,40})?|[+-]?[0-9.eE+x\\\\ -]{0,12}",
        which in 0usize..4,
        tail in "\"?[0-9\"}]{0,3}",
    ) {
        let spec = [NUMERIC, BIG, NUMERIC_10_2, NUMERIC_5_0][which];
        let body = format!("{s}{tail}");
        if let Some((fast, len)) = parse_quoted(body.as_bytes(), spec) {
            proptest::prop_assert_eq!(body.as_bytes().get(len), Some(&b'"'), "{}", body);
            let text = &body.as_bytes()[..len];
            proptest::prop_assert!(!text.contains(&b'"') && !text.contains(&b'\\'), "{}", body);
            proptest::prop_assert_eq!(Ok(fast), general(text, spec, false), "{}", body);
        }
    }

    /// digit_run (eight at a time, then bytes) counts what a byte walk does.
    #[test]
    fn digit_run_matches_the_byte_walk(
        digits in "[0-9]{0,30}",
        stray in proptest::option::of((0usize..30, proptest::num::u8::ANY)),
    ) {
        let b = with_stray(digits, stray);
        let want = b.iter().take_while(|c| c.is_ascii_digit()).count();
        proptest::prop_assert_eq!(digit_run(&b), want, "{:?}", b);
    }
}

#[test]
fn parse_quoted_takes_only_its_form() {
    for (body, spec, want) in [
        ("12.5\"", NUMERIC, "12.5"),
        ("-0.000000001\",", NUMERIC, "-0.000000001"),
        ("5.\"", NUMERIC, "5."),
        (".5\"}", BIG, ".5"),
        ("+0000000000000000001\"", NUMERIC_5_0, "+0000000000000000001"),
    ] {
        let (v, len) = parse_quoted(body.as_bytes(), spec).expect(body);
        assert_eq!(len, want.len(), "{body}");
        assert_eq!(Ok(v), general(want.as_bytes(), spec, false), "{body}");
    }
    // Digit runs past 38 at the very end of the input (no whole word left).
    let nines = "9".repeat(39);
    assert_eq!(parse_quoted(nines.as_bytes(), BIG), None);
    assert_eq!(parse_quoted(format!("1.{nines}").as_bytes(), BIG), None);
    for (body, spec) in [
        ("12.5", NUMERIC),
        ("1e3\"", NUMERIC),
        ("1\\u0032\"", NUMERIC),
        ("0.0000000001\"", NUMERIC),
        ("\"", NUMERIC),
        (".\"", NUMERIC),
        ("-\"", NUMERIC),
        ("1.2.3\"", NUMERIC),
        (" 1\"", NUMERIC),
        ("123456\"", NUMERIC_5_0),
    ] {
        assert_eq!(parse_quoted(body.as_bytes(), spec), None, "{body}");
    }
}

/// The value's bytes as the original code wrote them: little-endian, cut
/// to the byte walk's length.
fn to_wire_by_walking(v: i256, out: &mut Vec<u8>) {
    out.extend_from_slice(&v.to_le_bytes()[..wire_len_by_walking(v)]);
}

proptest::proptest! {
    /// The 64-bit shortcut multiplies as u128's checked multiply does.
    #[test]
    fn mul_u128_is_checked_mul(a in proptest::num::u128::ANY, b in proptest::num::u128::ANY, sa in 0u32..128, sb in 0u32..128) {
        let (a, b) = (a >> sa, b >> sb);
        proptest::prop_assert_eq!(mul_u128(a, b), a.checked_mul(b));
    }

    /// The limb product is the exact 256-bit product.
    #[test]
    fn mul_wide_is_the_full_product(a in proptest::num::u128::ANY, b in proptest::num::u128::ANY) {
        let (low, high) = mul_wide(a, b);
        // The true product is below 2^256: i256's wrapping product has its bits.
        let want = i256::from_parts(a, 0).wrapping_mul(i256::from_parts(b, 0));
        proptest::prop_assert_eq!(i256::from_parts(low, high as i128), want);
    }
}

/// The original byte walk: drop a top byte while it only repeats the sign.
fn wire_len_by_walking(v: i256) -> usize {
    let bytes = v.to_le_bytes();
    let mut n = bytes.len();
    while n > 1 {
        let (top, below) = (bytes[n - 1], bytes[n - 2]);
        let redundant = (top == 0x00 && below & 0x80 == 0) || (top == 0xFF && below & 0x80 != 0);
        if !redundant {
            break;
        }
        n -= 1;
    }
    n
}

const NUMERIC_5_0: DecimalSpec = DecimalSpec { wire_scale: 9, scale: 0, int_digits: 5, big: false };

#[test]
fn short_takes_only_its_form() {
    let twenty = "1".repeat(20);
    let big_int = format!("-{}.5", "9".repeat(38));
    for (s, spec) in [
        ("12.5", NUMERIC),
        ("-0.000000001", NUMERIC),
        ("5.", NUMERIC),
        (".5", BIG),
        ("0000000000000000001", NUMERIC_5_0),
        (twenty.as_str(), NUMERIC),
        (big_int.as_str(), BIG),
    ] {
        assert_eq!(
            short(s.as_bytes(), spec).map(Ok),
            Some(general(s.as_bytes(), spec, false)),
            "{s}"
        );
    }
    let thirty = "1".repeat(30);
    let thirty_nine = "1".repeat(39);
    for (s, spec) in [
        (thirty.as_str(), NUMERIC),
        (thirty_nine.as_str(), BIG),
        ("123456", NUMERIC_5_0),
        ("1e3", NUMERIC),
        ("0.0000000001", NUMERIC),
        ("", NUMERIC),
        (".", NUMERIC),
        ("-", NUMERIC),
        ("1.2.3", NUMERIC),
        ("1:", NUMERIC),
    ] {
        assert_eq!(short(s.as_bytes(), spec), None, "{s}");
    }
}

#[test]
fn plain_takes_only_the_plain_form() {
    for (s, spec) in [("12.5", NUMERIC), ("-0.000000001", NUMERIC), ("5.", NUMERIC), (".5", BIG)] {
        assert_eq!(
            plain(s.as_bytes(), spec).map(Ok),
            Some(general(s.as_bytes(), spec, false)),
            "{s}"
        );
    }
    let long_int = "1".repeat(30);
    for (s, spec) in [
        ("1e3", NUMERIC),
        ("0.0000000001", NUMERIC),
        ("1.234", NUMERIC_10_2),
        (long_int.as_str(), NUMERIC),
        ("", NUMERIC),
        (".", NUMERIC),
        ("-", NUMERIC),
        ("1.2.3", NUMERIC),
        (" 1", NUMERIC),
    ] {
        assert_eq!(plain(s.as_bytes(), spec), None, "{s}");
    }
}

#[test]
fn wire_bytes_are_minimal_twos_complement() {
    let w = |v: i128| {
        let mut out = vec![];
        put_wire(i256::from_i128(v), &mut out);
        assert_eq!(usize::from(out.remove(0)), out.len());
        out
    };
    assert_eq!(w(0), vec![0]);
    assert_eq!(w(1), vec![1]);
    assert_eq!(w(-1), vec![0xFF]);
    assert_eq!(w(127), vec![0x7F]);
    assert_eq!(w(128), vec![0x80, 0x00]);
    assert_eq!(w(-128), vec![0x80]);
    assert_eq!(w(-129), vec![0x7F, 0xFF]);
    assert_eq!(w(1_000_000_000), vec![0x00, 0xCA, 0x9A, 0x3B]);
    for v in [0i128, 1, -1, 128, -129, i128::MAX, i128::MIN] {
        assert_eq!(from_wire(&w(v)), Some(i256::from_i128(v)));
    }
    let mut out = vec![];
    put_wire(i256::MIN, &mut out);
    assert_eq!(out.remove(0), 32);
    assert_eq!(out.len(), 32);
    assert_eq!(from_wire(&out), Some(i256::MIN));
}
