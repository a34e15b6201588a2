//! Dates and times read where they stand in the JSON, from the body of
//! their string (the bytes after the opening quote): the common spellings
//! (`2024-05-06T07:08:09.123456Z`, `2024-05-06`, `07:08:09.5`), checked
//! eight bytes at a time, and the closing quote found in the same pass.
//! The general way scanned the string for its quote, tried it as an
//! integer (epoch microseconds), then parsed it byte by byte: a TIMESTAMP
//! string cost three times what the parse-only baseline spends on it.
//!
//! Each returns the wire value and the body's length, or `None` for any
//! other spelling and for invalid values; the caller then takes the general
//! way, which gives the same value or the error message (property-tested
//! below). What they take is digits and `-:.Tt Zz+`: printable ASCII.

use super::{
    Civil, check_date_fields, check_time_fields, check_timestamp, days_from_civil, pack_datetime,
    pack_time,
};

use crate::rows::values::digits::{ZEROS, combine_eight, not_digit_flags, word_at};

/// The little-endian word of `b[at..at + 8]`.
#[inline]
fn word(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(*b.get(at..)?.first_chunk::<8>()?))
}

/// `w` with its bytes outside `digits` (a mask of whole bytes) made `'0'`,
/// minus `'0'` from every byte: the digits' values, or `None` if a byte
/// inside the mask is not an ASCII digit.
#[inline]
fn digit_values(w: u64, digits: u64) -> Option<u64> {
    let v = ((w & digits) | (ZEROS & !digits)).wrapping_sub(ZEROS);
    (not_digit_flags(v) == 0).then_some(v)
}

/// Byte `i` of a word.
#[inline]
fn byte(w: u64, i: u32) -> u32 {
    (w >> (8 * i)) as u32 & 0xff
}

/// The two-digit number in bytes `i`, `i + 1` of a word of digit values.
#[inline]
fn two(v: u64, i: u32) -> u32 {
    byte(v, i) * 10 + byte(v, i + 1)
}

/// Two ASCII digits at `b[at..]` as a number.
#[inline]
fn two_digits(b: &[u8], at: usize) -> Option<u32> {
    let [h, l] = *b.get(at..)?.first_chunk::<2>()?;
    (h.is_ascii_digit() && l.is_ascii_digit())
        .then(|| u32::from(h - b'0') * 10 + u32::from(l - b'0'))
}

/// `YYYY-MM-DD` at the start of `b`: (year, month, day), not yet checked.
#[inline]
fn date(b: &[u8]) -> Option<(u32, u32, u32)> {
    // "YYYY-MM-" and "MM-DD..." overlap; the dashes are bytes 4 and 7.
    let (a, c) = (word(b, 0)?, word(b, 2)?);
    const DASHES: u64 = 0xff << 56 | 0xff << 32;
    if a & DASHES != 0x2d << 56 | 0x2d << 32 {
        return None;
    }
    let v = digit_values(a, !DASHES)?;
    // Bytes 6 and 7 of `c` are the day (bytes 8, 9 of `b`).
    let d = digit_values(c, 0xffff << 48)?;
    Some((two(v, 0) * 100 + two(v, 2), two(v, 5), two(d, 6)))
}

/// `HH:MM:SS` at `b[at..]`: (hour, minute, second), not yet checked.
#[inline]
fn time(b: &[u8], at: usize) -> Option<(u32, u32, u32)> {
    let w = word(b, at)?;
    const COLONS: u64 = 0xff << 40 | 0xff << 16;
    if w & COLONS != 0x3a << 40 | 0x3a << 16 {
        return None;
    }
    let v = digit_values(w, !COLONS)?;
    Some((two(v, 0), two(v, 3), two(v, 6)))
}

/// `[.f{1,9}]` at `b[at..]`: microseconds (digits past six dropped, as the
/// general parser does) and where the text after it starts.
#[inline]
fn fraction(b: &[u8], at: usize) -> Option<(u32, usize)> {
    if b.get(at) != Some(&b'.') {
        return Some((0, at));
    }
    let w = word_at(b, at + 1);
    // Digits at the start of the word: the test flags its lowest non-digit.
    let mut n = (not_digit_flags(w.wrapping_sub(ZEROS)).trailing_zeros() / 8) as usize;
    if n == 8 && b.get(at + 9).is_some_and(u8::is_ascii_digit) {
        n = 9;
        if b.get(at + 10).is_some_and(u8::is_ascii_digit) {
            return None;
        }
    }
    if n == 0 {
        return None;
    }
    // The first (up to) six digits, padded with zeros to eight: the value
    // is the microseconds times 100.
    let keep = n.min(6) as u32;
    let v = combine_eight(digit_values(w, (1u64 << (8 * keep)) - 1)?);
    Some((v as u32 / 100, at + 1 + n))
}

/// `YYYY-MM-DD(T|t| )HH:MM:SS[.f]`, checked: the civil value and where the
/// text after it starts.
#[inline]
fn date_time(b: &[u8]) -> Option<(Civil, usize)> {
    let (y, mo, d) = date(b)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let (hour, minute, second) = time(b, 11)?;
    let (micros, end) = fraction(b, 19)?;
    let (year, month, day) = check_date_fields(y, mo, d).ok()?;
    check_time_fields(hour, minute, second).ok()?;
    Some((Civil { year, month, day, hour, minute, second, micros }, end))
}

/// TIMESTAMP: a date-time with no zone (UTC), `Z`/`z`, or `±HH:MM`.
#[inline]
pub(crate) fn timestamp(b: &[u8]) -> Option<(i64, usize)> {
    let (v, mut end) = date_time(b)?;
    let offset_secs = match b.get(end)? {
        b'"' => 0,
        b'Z' | b'z' => {
            end += 1;
            0
        }
        &sign @ (b'+' | b'-') => {
            let (h, m) = (two_digits(b, end + 1)?, two_digits(b, end + 4)?);
            if b.get(end + 3) != Some(&b':') || h > 23 || m > 59 {
                return None;
            }
            end += 6;
            let off = i64::from(h * 3600 + m * 60);
            if sign == b'-' { -off } else { off }
        }
        _ => return None,
    };
    if b.get(end) != Some(&b'"') {
        return None;
    }
    let days = days_from_civil(v.year, v.month, v.day);
    let secs = days * 86_400 + i64::from(v.hour * 3600 + v.minute * 60 + v.second) - offset_secs;
    let micros = check_timestamp(secs * 1_000_000 + i64::from(v.micros)).ok()?;
    Some((micros, end))
}

/// DATETIME (packed): a date-time with no zone.
#[inline]
pub(crate) fn datetime(b: &[u8]) -> Option<(i64, usize)> {
    let (v, end) = date_time(b)?;
    (b.get(end) == Some(&b'"')).then(|| (pack_datetime(&v), end))
}

/// DATE (days since 1970-01-01): `YYYY-MM-DD`.
#[inline]
pub(crate) fn date_days(b: &[u8]) -> Option<(i64, usize)> {
    let (y, m, d) = date(b)?;
    if b.get(10) != Some(&b'"') {
        return None;
    }
    let (y, m, d) = check_date_fields(y, m, d).ok()?;
    Some((days_from_civil(y, m, d), 10))
}

/// TIME (packed): `HH:MM:SS[.f]`.
#[inline]
pub(crate) fn time_of_day(b: &[u8]) -> Option<(i64, usize)> {
    let (hour, minute, second) = time(b, 0)?;
    let (micros, end) = fraction(b, 8)?;
    check_time_fields(hour, minute, second).ok()?;
    if b.get(end) != Some(&b'"') {
        return None;
    }
    Some((pack_time(&Civil { hour, minute, second, micros, ..Civil::default() }), end))
}

#[cfg(test)]
mod tests;
