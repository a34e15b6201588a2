//! ASCII digit runs eight bytes at a time (SWAR: one 64-bit word holds
//! eight characters), shared by the decimal, integer and date parsers that
//! read values where they stand in the JSON.

/// `'0'` in every byte.
pub(crate) const ZEROS: u64 = 0x3030_3030_3030_3030;

/// 10^k for k in 0..=19 (a variable `10u64.pow(k)` is a loop).
const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut k = 1;
    while k < 20 {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// 10^k for k in 0..=19.
#[inline]
fn pow10(k: usize) -> u64 {
    POW10.get(k).copied().unwrap_or(u64::MAX)
}

/// The little-endian word of `b[at..at + 8]`; where fewer than eight bytes
/// remain (a value at the end of the input), the missing ones are zero,
/// which is not a digit.
#[inline]
pub(crate) fn word_at(b: &[u8], at: usize) -> u64 {
    match b.get(at..).and_then(<[u8]>::first_chunk::<8>) {
        Some(w) => u64::from_le_bytes(*w),
        None => short_word(b, at),
    }
}

#[cold]
fn short_word(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    for (dst, src) in w.iter_mut().zip(b.get(at..).unwrap_or_default()) {
        *dst = *src;
    }
    u64::from_le_bytes(w)
}

/// For a word minus [`ZEROS`]: a high-nibble flag on every byte that was
/// not an ASCII digit (0x30..=0x39: the subtraction did not borrow, and
/// adding 6 does not carry past 9). Exact at the lowest non-digit byte;
/// borrows and carries only reach the bytes above it.
#[inline]
pub(crate) fn not_digit_flags(v: u64) -> u64 {
    (v | v.wrapping_add(0x0606_0606_0606_0606)) & 0xf0f0_f0f0_f0f0_f0f0
}

/// Eight digit values (byte 0 the most significant) as one number: pairs,
/// then quads, then the eight; three multiplies instead of eight dependent
/// multiply-adds.
#[inline]
pub(crate) fn combine_eight(v: u64) -> u64 {
    let v = (v.wrapping_mul(10) + (v >> 8)) & 0x00ff_00ff_00ff_00ff;
    let v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_ffff_0000_ffff;
    (v.wrapping_mul(10_000) + (v >> 32)) & 0xffff_ffff
}

/// Eight ASCII digits (most significant first) as their value, or `None`
/// if any byte is not a digit.
#[inline]
pub(crate) fn eight_digits(word: [u8; 8]) -> Option<u64> {
    let v = u64::from_le_bytes(word).wrapping_sub(ZEROS);
    (not_digit_flags(v) == 0).then(|| combine_eight(v))
}

/// How many ASCII digits `b` starts with, eight bytes at a time.
#[inline]
pub(crate) fn digit_run(b: &[u8]) -> usize {
    let mut n = 0;
    while let Some(word) = b.get(n..).and_then(<[u8]>::first_chunk::<8>) {
        let flags = not_digit_flags(u64::from_le_bytes(*word).wrapping_sub(ZEROS));
        if flags != 0 {
            return n + (flags.trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while b.get(n).is_some_and(u8::is_ascii_digit) {
        n += 1;
    }
    n
}

/// A JSON integer where it stands: `-?(0|[1-9][0-9]*)` of at most 18
/// digits (no overflow to check) and not followed by a digit, `.`, `e` or
/// `E` (then it is an integer, the whole number). Its value and length, or
/// `None` for anything else, which the general number reader and
/// `parse_i64` take with the same result (property-tested).
#[inline]
pub(crate) fn int_number(b: &[u8]) -> Option<(i64, usize)> {
    let neg = b.first() == Some(&b'-');
    let start = usize::from(neg);
    let v = word_at(b, start).wrapping_sub(ZEROS);
    let n = (not_digit_flags(v).trailing_zeros() / 8) as usize;
    let (value, end) = match n {
        0 => return None,
        // Right-aligned behind leading zeros, the n digits are one word.
        1..=7 => {
            let shift = 8 * (8 - n as u32);
            (combine_eight(v << shift), start + n)
        }
        _ => {
            let n = digit_run(b.get(start..)?);
            if n > 18 {
                return None;
            }
            let lo = b.get(start + 8..start + n)?;
            let hi = combine_eight(v);
            let lo = lo.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
            (hi * pow10(n - 8) + lo, start + n)
        }
    };
    // A leading zero only alone; the number must end here.
    if (n > 1 && b.get(start) == Some(&b'0'))
        || matches!(b.get(end), None | Some(b'0'..=b'9' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    let value = value as i64;
    Some((if neg { -value } else { value }, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A number's text and what follows it in a record.
    fn body(text: &str, tail: &str, more: bool) -> String {
        format!("{text}{tail}{}", if more { ",\"next\":1}" } else { "" })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// `int_number` takes only whole JSON integers, with the value the
        /// general path (`parse_i64` on the number's text) gives.
        #[test]
        fn int_number_matches_the_general_path(
            text in "-?[0-9]{0,21}([.eE][0-9]{0,2})?",
            tail in proptest::sample::select(vec!["", ",", "}", "]", " ", "x"]),
            pad in proptest::bool::ANY,
        ) {
            let body = body(&text, tail, pad);
            let Some((v, len)) = int_number(body.as_bytes()) else {
                // Declined: fine, except for plain integers with room to read.
                let digits = text.trim_start_matches('-');
                let plain = !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|c| c.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'));
                let room = body.len() > text.len();
                proptest::prop_assert!(!(plain && room), "declined {:?}", body);
                return Ok(());
            };
            proptest::prop_assert_eq!(&body[..len], text.as_str());
            proptest::prop_assert_eq!(crate::rows::values::parse_i64(&text), Some(v));
        }
    }
}
