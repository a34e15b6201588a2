//! The quoted fast paths against the general parsers: on every text they
//! take, the same value; on the common spellings, taken whenever the
//! general parser accepts them.

use proptest::prelude::*;

use super::super::{parse_date, parse_datetime, parse_time, parse_timestamp};
use super::{date_days, datetime, time_of_day, timestamp};

type Fast = fn(&[u8]) -> Option<(i64, usize)>;
type General = fn(&str) -> Result<i64, &'static str>;

/// What a fast path must give for the JSON string body `body`: the general
/// parser's value for the string's text (the bytes before the quote it
/// stopped at), on plain ASCII without escapes.
fn agrees(fast: Fast, general: General, body: &[u8]) -> Result<Option<i64>, TestCaseError> {
    let Some((v, len)) = fast(body) else { return Ok(None) };
    prop_assert_eq!(body.get(len), Some(&b'"'));
    let text = &body[..len];
    prop_assert!(text.iter().all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\'));
    let text = std::str::from_utf8(text).unwrap_or_default();
    prop_assert_eq!(general(text), Ok(v), "{:?}", text);
    Ok(Some(v))
}

fn general_timestamp(s: &str) -> Result<i64, &'static str> {
    parse_timestamp(s)
}
fn general_datetime(s: &str) -> Result<i64, &'static str> {
    parse_datetime(s)
}
fn general_date(s: &str) -> Result<i64, &'static str> {
    parse_date(s)
}
fn general_time(s: &str) -> Result<i64, &'static str> {
    parse_time(s)
}

/// A date-time in the common spelling, with fields near and past their
/// ranges, 0 to 11 fractional digits and every zone spelling.
fn date_time_text() -> impl Strategy<Value = String> {
    (
        (0u32..=10_000, 0u32..=13, 0u32..=32, prop::sample::select(vec!['T', 't', ' '])),
        (0u32..=24, 0u32..=60, 0u32..=60, prop::option::of("[0-9]{0,11}")),
        prop::sample::select(vec![
            "", "Z", "z", "+05:30", "-08:00", "+00:00", "+24:00", "-23:60", " UTC", "+0530", "+05",
            " Z", "UTC",
        ]),
    )
        .prop_map(|((y, mo, d, sep), (h, mi, s, frac), zone)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{zone}")
        })
}

fn time_text() -> impl Strategy<Value = String> {
    (0u32..=24, 0u32..=60, 0u32..=60, prop::option::of("[0-9]{0,11}")).prop_map(
        |(h, mi, s, frac)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{h:02}:{mi:02}:{s:02}{frac}")
        },
    )
}

fn date_text() -> impl Strategy<Value = String> {
    (0u32..=10_000, 0u32..=13, 0u32..=32).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"))
}

/// `text` with up to three bytes replaced by characters timestamps are
/// made of (and a quote or backslash), or cut short.
fn mutated(text: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (any::<prop::sample::Index>(), prop::sample::select(b"0123459:-.Tt Zz+\"\\x/".to_vec())),
        0..3,
    );
    (text, edits, prop::option::of(any::<prop::sample::Index>())).prop_map(|(t, edits, cut)| {
        let mut b = t.into_bytes();
        for (at, c) in edits {
            if !b.is_empty() {
                let i = at.index(b.len());
                b[i] = c;
            }
        }
        if let Some(cut) = cut {
            b.truncate(cut.index(b.len() + 1));
        }
        String::from_utf8(b).unwrap_or_default()
    })
}

/// The JSON after a string's body: its closing quote and what follows.
fn tail() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["\"}", "\",\"next\":12345678}", "\"]}"])
}

fn body(text: &str, tail: &str) -> Vec<u8> {
    format!("{text}{tail}").into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn common_spellings_read_as_the_general_parsers_do(
        dt in date_time_text(), t in time_text(), d in date_text(), tail in tail(),
    ) {
        // Unmutated, the fast path takes what the general parser accepts
        // in the spellings it covers (no zone after a space, `±HH:MM` only).
        let covered = !dt.contains(' ') || dt.find(' ') == Some(10) && !dt.ends_with(" UTC") && !dt.ends_with(" Z");
        let zone_covered = !(dt.ends_with("+0530") || dt.ends_with("+05") || dt.ends_with("UTC"));
        let ts = agrees(timestamp, general_timestamp, &body(&dt, tail))?;
        if covered && zone_covered {
            prop_assert_eq!(ts.is_some(), parse_timestamp(&dt).is_ok(), "{}", dt);
        }
        let naive = agrees(datetime, general_datetime, &body(&dt, tail))?;
        prop_assert_eq!(naive.is_some(), parse_datetime(&dt).is_ok(), "{}", dt);
        let tod = agrees(time_of_day, general_time, &body(&t, tail))?;
        prop_assert_eq!(tod.is_some(), parse_time(&t).is_ok(), "{}", t);
        let days = agrees(date_days, general_date, &body(&d, tail))?;
        prop_assert_eq!(days.is_some(), parse_date(&d).is_ok(), "{}", d);
    }

    #[test]
    fn mutated_text_reads_as_the_general_parsers_do_or_is_declined(
        dt in mutated(date_time_text()), t in mutated(time_text()), d in mutated(date_text()),
        tail in tail(),
    ) {
        agrees(timestamp, general_timestamp, &body(&dt, tail))?;
        agrees(datetime, general_datetime, &body(&dt, tail))?;
        agrees(time_of_day, general_time, &body(&t, tail))?;
        agrees(date_days, general_date, &body(&d, tail))?;
        // Bodies that end early (the record's last bytes) are declined, not read past.
        for cut in 0..dt.len() {
            agrees(timestamp, general_timestamp, &dt.as_bytes()[..cut])?;
        }
    }
}

#[test]
fn examples() {
    let utc = 1_714_979_289_123_456;
    assert_eq!(timestamp(b"2024-05-06T07:08:09.123456Z\"}"), Some((utc, 27)));
    assert_eq!(timestamp(b"2024-05-06T09:08:09.123456+02:00\""), Some((utc, 32)));
    assert_eq!(timestamp(b"2024-05-06 07:08:09.123456789\""), Some((utc, 29)));
    assert_eq!(
        timestamp(b"9999-12-31T23:59:59.999999Z\""),
        Some((super::super::MAX_TIMESTAMP, 27))
    );
    assert_eq!(timestamp(b"9999-12-31T23:59:59-01:00\""), None);
    assert_eq!(timestamp(b"2024-05-06T07:08:09.1234567890Z\""), None);
    assert_eq!(date_days(b"1970-01-02\""), Some((1, 10)));
    assert_eq!(date_days(b"2023-02-29\""), None);
    assert_eq!(
        time_of_day(b"12:34:56.789\""),
        Some(((12 << 32) | (34 << 26) | (56 << 20) | 789_000, 12))
    );
    assert_eq!(
        datetime(b"2019-11-27T12:34:56\"").map(|(v, _)| v),
        parse_datetime("2019-11-27T12:34:56").ok()
    );
}
