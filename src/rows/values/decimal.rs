//! Exact decimal text → NUMERIC/BIGNUMERIC unscaled integers and their wire
//! bytes (fact sheet §4.2: `value × 10^scale`, scale 9 or 38, two's-complement
//! little-endian, minimal length as Java's `BigInteger.toByteArray()` reversed).
//!
//! Never goes through `f64`: JSON numbers are parsed from their text, so
//! `0.1` is exactly one tenth.

use arrow_buffer::i256;

use super::digits::{digit_run, eight_digits};
use crate::rows::schema::DecimalSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecError {
    Syntax,
    IntDigits,
    FracDigits,
    Range,
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` (a JSON number, or the
/// BigDecimal string forms `.5` and `5.`) into the unscaled wire integer.
/// Digits past the column's scale must be zeros, unless `round` (HALF_UP, as
/// JsonStreamWriter does for JSON numbers).
pub(crate) fn parse(s: &str, spec: DecimalSpec, round: bool) -> Result<i256, DecError> {
    parse_bytes(s.as_bytes(), spec, round)
}

/// [`parse`] on the text's bytes (a JSON number or string is read as bytes).
pub(crate) fn parse_bytes(b: &[u8], spec: DecimalSpec, round: bool) -> Result<i256, DecError> {
    match short(b, spec).or_else(|| plain(b, spec)) {
        Some(v) => Ok(v),
        None => general(b, spec, round),
    }
}

/// Up to 19 digits as a u64 (an empty run is 0), or `None` for more digits
/// or a non-digit.
#[inline]
fn digits_u64(d: &[u8]) -> Option<u64> {
    if d.len() > 19 {
        return None;
    }
    let mut acc = 0u64;
    // Eight digits per step while eight remain (BIGNUMERIC text runs to
    // 38 fractional digits; a byte loop was the top of its profile).
    let mut d = d;
    while let Some((word, rest)) = d.split_first_chunk::<8>() {
        acc = acc * 100_000_000 + eight_digits(*word)?;
        d = rest;
    }
    for &c in d {
        let v = c.wrapping_sub(b'0');
        if v > 9 {
            return None;
        }
        acc = acc * 10 + u64::from(v);
    }
    Some(acc)
}

/// Up to 38 digits as a u128 (an empty run is 0), or `None` for more digits
/// or a non-digit: the last 19 and the rest through [`digits_u64`] (its
/// eight-at-a-time steps), joined with one multiply. Integer parts over
/// 19 digits (BIGNUMERIC ledger totals) spent their time in a
/// digit-at-a-time u128 loop.
#[inline]
fn digits_u128(d: &[u8]) -> Option<u128> {
    if d.len() > 38 {
        return None;
    }
    match d.len().checked_sub(19) {
        Some(split) if split > 0 => {
            let (hi, lo) = d.split_at(split);
            let hi = u128::from(digits_u64(hi)?);
            Some(hi * POW10.get(19)? + u128::from(digits_u64(lo)?))
        }
        _ => digits_u64(d).map(u128::from),
    }
}

/// The form amounts and rates come in, `[+-]int[.frac]` with at most 38
/// integer and 38 fractional digits (no more than the scale or the column's
/// integer digits), computed in 64-bit limb multiplies instead of
/// [`plain`]'s i256 multiply. `None` for anything else, which [`plain`] or
/// [`general`] parse with the same result (property-tested).
#[inline]
fn short(b: &[u8], spec: DecimalSpec) -> Option<i256> {
    let (neg, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    let (int, frac) = match b.iter().position(|&c| c == b'.') {
        Some(at) => (b.get(..at)?, b.get(at + 1..)?),
        None => (b, &[][..]),
    };
    short_parts(neg, int, frac, spec)
}

/// [`short`] on text already split at its sign and point (`int` and
/// `frac` may still hold non-digits, which give `None`): shared with
/// [`parse_quoted`], which finds the split in its one pass. Always
/// inlined: as a call, its `Option<i256>` came back through memory.
#[inline(always)]
fn short_parts(neg: bool, int: &[u8], frac: &[u8], spec: DecimalSpec) -> Option<i256> {
    let scale = spec.scale as usize;
    let wire_scale = spec.wire_scale as usize;
    if (int.is_empty() && frac.is_empty()) || frac.len() > scale || scale > wire_scale {
        return None;
    }
    // Leading zeros count toward the 19, so the column's integer-digit
    // limit (at least 19 unless the column says fewer) needs a look only
    // when it is smaller.
    if int.len() > spec.int_digits as usize
        && int.len() - int.iter().take_while(|&&c| c == b'0').count() > spec.int_digits as usize
    {
        return None;
    }
    // Up to 19 digits in the eight-at-a-time u64 parse; up to 38 (BIGNUMERIC
    // ledger totals) as a u128.
    let int = match digits_u64(int) {
        Some(v) => u128::from(v),
        None => digits_u128(int)?,
    };
    let frac_len = frac.len();
    // Up to 38 fractional digits (BIGNUMERIC's scale) as two 19-digit runs.
    let frac = match frac.split_at_checked(19) {
        Some((a, b)) => {
            u128::from(digits_u64(a)?) * *POW10.get(b.len())? + u128::from(digits_u64(b)?)
        }
        None => u128::from(digits_u64(frac)?),
    };
    // frac · 10^(wire_scale − len) < 10^wire_scale ≤ 10^38: exact in u128.
    let frac = mul_u128(frac, *POW10.get(wire_scale - frac_len)?)?;
    let pow = *POW10.get(wire_scale)?;
    if pow <= u128::from(u64::MAX) {
        // NUMERIC's 10^9: the value in a u128 (29 integer digits and 9
        // fractional ones stay below 10^38 < 2^127).
        let v = i128::try_from(mul_u128(int, pow)?.checked_add(frac)?).ok()?;
        if !spec.big && v > NUMERIC_MAX {
            return None;
        }
        return Some(i256::from_i128(if neg { -v } else { v }));
    }
    // int · 10^wire_scale < 10^38 · 10^38 < 2^253: the full 256-bit product.
    let (low, high) = mul_wide(int, pow);
    let (low, carry) = low.overflowing_add(frac);
    let high = high.checked_add(u128::from(carry))?;
    // high < 2^125: inside i256 (and decimal256(76, 38)); NUMERIC never
    // gets here (its 10^9 takes the branch above).
    let v = i256::from_parts(low, i128::try_from(high).ok()?);
    Some(if neg { v.wrapping_neg() } else { v })
}

/// `a · b`, `None` on overflow: one 64×64-bit multiply when both fit in 64
/// bits (nearly always here), where u128's checked multiply was three
/// multiplies and its overflow logic.
#[inline]
fn mul_u128(a: u128, b: u128) -> Option<u128> {
    match (u64::try_from(a), u64::try_from(b)) {
        (Ok(a), Ok(b)) => Some(u128::from(a) * u128::from(b)),
        _ => a.checked_mul(b),
    }
}

/// 10^38 − 1, [`max_numeric`] as an i128.
const NUMERIC_MAX: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

/// The full product of two u128s as (low, high) halves, from four 64×64-bit
/// multiplies (i256's general multiply was [`plain`]'s cost).
#[inline]
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a0, a1) = (a as u64 as u128, a >> 64);
    let (b0, b1) = (b as u64 as u128, b >> 64);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    // Three terms below 2^64 each: no overflow.
    let mid = (p00 >> 64) + (p01 as u64 as u128) + (p10 as u64 as u128);
    let low = (p00 as u64 as u128) | (mid << 64);
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (low, high)
}

/// The body of a JSON string holding a decimal (`body` starts after the
/// opening quote): its value and the body's length, found in one pass
/// (sign, digit runs, closing quote) instead of the string scan, the
/// search for the point and the digit checks each walking the text.
/// `None` for anything but [`short`]'s form directly followed by the
/// closing quote — escapes, exponents, longer runs — which the caller
/// parses the general way, to the same value (property-tested). What it
/// takes is ASCII digits, a sign and a point: plain JSON string text.
#[inline]
pub(crate) fn parse_quoted(body: &[u8], spec: DecimalSpec) -> Option<(i256, usize)> {
    let (neg, start) = match body.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let int_end = start + digit_run(body.get(start..)?);
    let (frac_start, end) = match body.get(int_end) {
        Some(b'.') => (int_end + 1, int_end + 1 + digit_run(body.get(int_end + 1..)?)),
        _ => (int_end, int_end),
    };
    if body.get(end) != Some(&b'"') {
        return None;
    }
    let v = short_parts(neg, body.get(start..int_end)?, body.get(frac_start..end)?, spec)?;
    Some((v, end))
}

/// 10^k for k in 0..=38, exact in u128.
const POW10: [u128; 39] = {
    let mut t = [1u128; 39];
    let mut k = 1;
    while k < 39 {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// The common form, `[+-]int[.frac]` with no exponent, at most 38
/// significant integer digits (29 for NUMERIC: always in range) and no
/// more fractional digits than the scale (nothing to drop or round), in
/// two u128 accumulations and one multiply. `None` for anything else, which
/// [`general`] parses with the same result (property-tested).
#[inline]
fn plain(b: &[u8], spec: DecimalSpec) -> Option<i256> {
    let (neg, b) = match b.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, b),
    };
    let dot = b.iter().position(|&c| c == b'.');
    let (int, frac) = match dot {
        Some(at) => (b.get(..at)?, b.get(at + 1..)?),
        None => (b, &[][..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let int_max = spec.int_digits.min(if spec.big { 38 } else { 29 }) as usize;
    let scale = spec.scale as usize;
    let wire_scale = spec.wire_scale as usize;
    if frac.len() > scale || wire_scale > 38 || scale > wire_scale {
        return None;
    }
    let significant = int.iter().position(|&c| c != b'0').map_or(0, |at| int.len() - at);
    if significant > int_max || int.len() > 60 {
        return None;
    }
    let int = digits_u128(int.get(int.len() - significant..)?)?;
    // frac · 10^(wire_scale − len) < 10^wire_scale ≤ 10^38: exact in u128.
    let frac = digits_u128(frac)? * POW10.get(wire_scale - frac.len())?;
    let whole = i256::from_i128(i128::try_from(int).ok()?)
        .checked_mul(i256::from_i128(i128::try_from(*POW10.get(wire_scale)?).ok()?))?;
    let v = whole.checked_add(i256::from_i128(i128::try_from(frac).ok()?))?;
    Some(if neg { v.wrapping_neg() } else { v })
}

/// Any form [`parse`] takes: exponents, digits past the scale (zeros, or
/// rounded), values at the edges of the range.
fn general(b: &[u8], spec: DecimalSpec, round: bool) -> Result<i256, DecError> {
    let mut i = 0;
    let neg = match b.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int = b.get(int_start..i).unwrap_or_default();
    let mut frac: &[u8] = &[];
    if b.get(i) == Some(&b'.') {
        i += 1;
        let fs = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = b.get(fs..i).unwrap_or_default();
    }
    if int.is_empty() && frac.is_empty() {
        return Err(DecError::Syntax);
    }
    let mut exp: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let es = i;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            // Saturate: any exponent past this is out of range either way.
            exp = (exp * 10 + i64::from(d - b'0')).min(1 << 40);
            i += 1;
        }
        if i == es {
            return Err(DecError::Syntax);
        }
        if eneg {
            exp = -exp;
        }
    }
    if i != b.len() {
        return Err(DecError::Syntax);
    }
    let len = int.len() + frac.len();
    let digit = |k: i64| -> u8 {
        let Ok(k) = usize::try_from(k) else { return 0 };
        let d = if k < int.len() { int.get(k) } else { frac.get(k - int.len()) };
        d.map_or(0, |d| d - b'0')
    };
    let Some(first) = (0..len).find(|&k| digit(k as i64) != 0) else {
        return Ok(i256::ZERO);
    };
    let first = first as i64;
    // The point sits before digit index `point`.
    let point = int.len() as i64 + exp;
    if point - first > i64::from(spec.int_digits) {
        return Err(DecError::IntDigits);
    }
    let scale = i64::from(spec.scale);
    let end = point + scale; // first dropped digit index
    let dropped_nonzero = (end.max(first)..len as i64).any(|k| digit(k) != 0);
    if dropped_nonzero && !round {
        return Err(DecError::FracDigits);
    }
    let ten = i256::from_i128(10);
    let mut v = i256::ZERO;
    let mut k = first;
    while k < end {
        let d = i256::from_i128(i128::from(digit(k)));
        let next =
            v.checked_mul(ten).and_then(|x| if neg { x.checked_sub(d) } else { x.checked_add(d) });
        v = next.ok_or(DecError::Range)?;
        k += 1;
    }
    if round && digit(end) >= 5 {
        let one = i256::ONE;
        v = if neg { v.checked_sub(one) } else { v.checked_add(one) }.ok_or(DecError::Range)?;
    }
    for _ in spec.scale..spec.wire_scale {
        v = v.checked_mul(ten).ok_or(DecError::Range)?;
    }
    if !spec.big && (v > max_numeric() || v < max_numeric().wrapping_neg()) {
        return Err(DecError::Range);
    }
    Ok(v)
}

/// 10^38 − 1: NUMERIC's unscaled bound (±99999999999999999999999999999.999999999).
fn max_numeric() -> i256 {
    i256::from_i128(NUMERIC_MAX)
}

/// Whether a BIGNUMERIC fits Arrow's decimal256(76, 38): |unscaled| < 10^76.
pub(crate) fn fits_decimal256(v: i256) -> bool {
    // 10^76, computed once (every BIGNUMERIC value in Arrow mode asks).
    static MAX: std::sync::OnceLock<i256> = std::sync::OnceLock::new();
    let max = *MAX.get_or_init(|| i256::from_i128(10).checked_pow(76).unwrap_or(i256::MAX));
    v < max && v > max.wrapping_neg()
}

/// The minimal two's-complement little-endian bytes (at least one), for
/// tests that build expected rows.
#[cfg(test)]
pub(crate) fn to_wire(v: i256, out: &mut Vec<u8>) -> usize {
    let n = wire_len(v);
    out.extend_from_slice(v.to_le_bytes().get(..n).unwrap_or_default());
    n
}

/// How many bytes [`put_wire`] writes after the length: the value's significant bits plus a
/// sign bit, rounded up to bytes (leading-zero counts, not a byte walk).
#[inline]
pub(crate) fn wire_len(v: i256) -> usize {
    let (low, high) = v.to_parts();
    // Bits that differ from the sign: |v| for v ≥ 0, −v − 1 for v < 0.
    let sign = high >> 127;
    let bits = if high == (low as i128) >> 127 {
        128 - ((low as i128) ^ sign).leading_zeros() as usize
    } else {
        256 - (high ^ sign).leading_zeros() as usize
    };
    (bits + 1).div_ceil(8)
}

/// The one-byte length (at most 32), then the minimal two's-complement
/// little-endian bytes (at least one) of `v`: all 32
/// copied and cut back, a few vector moves where a copy of the value's own
/// length was a libc memmove call.
#[inline]
pub(crate) fn put_wire(v: i256, out: &mut Vec<u8>) {
    let n = wire_len(v);
    let at = out.len();
    out.push(n as u8);
    out.extend_from_slice(&v.to_le_bytes());
    out.truncate(at + 1 + n);
}

/// Wire bytes → unscaled integer (sign-extended); `None` if longer than 32 bytes.
pub(crate) fn from_wire(b: &[u8]) -> Option<i256> {
    if b.is_empty() || b.len() > 32 {
        return None;
    }
    let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xFF } else { 0x00 };
    let mut full = [fill; 32];
    full.get_mut(..b.len())?.copy_from_slice(b);
    Some(i256::from_le_bytes(full))
}

#[cfg(test)]
mod tests;
