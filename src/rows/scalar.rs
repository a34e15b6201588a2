//! One JSON value → one proto field (key included), per BigQuery type: the
//! coercion table of docs/coercions.md, applied by [`encode_value`] for the
//! message walk in [`encode`](super::encode).

use super::encode::{At, Ctx, R, Seg, encode_message, fail};
use super::error::RowErrorKind;
use super::json::{Kind, Reader};
use super::schema::{DecimalSpec, Field, Fields, Ty};
use super::values::{self, decimal, digits, time};
use super::wire::{WireReader, end_len};

/// `expected INT64, got "abc"`: quotes strings (shortened) and numbers' text.
fn mismatch<T>(ty: &Ty, kind: Kind, text: Option<&str>) -> R<T> {
    let got = match (kind, text) {
        (Kind::String, Some(t)) => format!("{:?}", shorten(t)),
        (Kind::Number, Some(t)) => shorten(t).to_string(),
        _ => kind.article().to_string(),
    };
    fail(RowErrorKind::TypeMismatch, format!("expected {}, got {got}", ty.name()))
}

fn invalid<T>(kind: RowErrorKind, ty: &Ty, text: &str, why: &str) -> R<T> {
    fail(kind, format!("invalid {} {:?}: {why}", ty.name(), shorten(text)))
}

fn shorten(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

/// The bytes of a number or string value, borrowed (checked to be UTF-8,
/// with no full check for ASCII text); other kinds are a mismatch.
macro_rules! scalar_bytes {
    ($cx:ident, $ty:expr, $kind:expr) => {
        match $kind {
            Kind::Number => $cx.r.read_number_bytes()?,
            Kind::String => $cx.r.read_str_bytes(&mut $cx.scratch)?,
            _ => return mismatch($ty, $kind, None),
        }
    };
}

/// Writes one value (key included) of `f`'s type from the JSON value at the
/// cursor, whose kind is `kind` (never null).
pub(super) fn encode_value(cx: &mut Ctx, f: &Field, kind: Kind, out: &mut Vec<u8>) -> R<()> {
    use RowErrorKind::OutOfRange;
    let ty = &f.ty;
    match ty {
        Ty::Struct(sub) => {
            if kind != Kind::Object {
                return mismatch(ty, kind, None);
            }
            let at = f.key.begin_len(out);
            encode_message(cx, sub, out)?;
            end_len(out, at);
        }
        Ty::Bool => {
            let v = match kind {
                Kind::Bool => cx.r.read_bool()?,
                Kind::String => {
                    let s = cx.r.read_str(&mut cx.scratch)?;
                    if s.eq_ignore_ascii_case("true") {
                        true
                    } else if s.eq_ignore_ascii_case("false") {
                        false
                    } else {
                        let s = s.to_owned();
                        return mismatch(ty, kind, Some(&s));
                    }
                }
                _ => return mismatch(ty, kind, None),
            };
            f.key.put(out);
            out.push(u8::from(v));
        }
        Ty::Int64 => {
            // A JSON integer is read where it stands, in one pass.
            if let Some((v, len)) = int_number(cx, kind) {
                cx.r.take_number(len);
                f.key.put_varint(out, v as u64);
                return Ok(());
            }
            let raw = scalar_bytes!(cx, ty, kind);
            let Some(v) = values::parse_i64(raw) else {
                let text = &*String::from_utf8_lossy(raw);
                let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    return invalid(OutOfRange, ty, text, "outside the INT64 range");
                }
                return mismatch(ty, kind, Some(text));
            };
            f.key.put_varint(out, v as u64);
        }
        Ty::Float64 => {
            let raw = scalar_bytes!(cx, ty, kind);
            let v = match values::parse_f64(raw, kind == Kind::String) {
                Ok(v) => v,
                Err(values::FloatError::Overflow) => {
                    let text = String::from_utf8_lossy(raw);
                    return invalid(OutOfRange, ty, &text, "overflows FLOAT64");
                }
                Err(values::FloatError::Syntax) => {
                    return mismatch(ty, kind, std::str::from_utf8(raw).ok());
                }
            };
            f.key.put(out);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ty::String(max) => match kind {
            Kind::String => {
                let s = cx.r.read_str_bytes(&mut cx.scratch)?;
                if *max > 0 && s.len() > *max as usize {
                    let text = String::from_utf8_lossy(s);
                    if text.chars().count() > *max as usize {
                        return invalid(
                            OutOfRange,
                            ty,
                            &text,
                            &format!("longer than max_length {max}"),
                        );
                    }
                }
                f.key.put_bytes(out, s);
            }
            // JsonStreamWriter turns integers and booleans into their text, not doubles.
            Kind::Number => {
                let t = cx.r.read_number()?;
                if t.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    return mismatch(ty, kind, Some(t));
                }
                f.key.put_bytes(out, t.as_bytes());
            }
            Kind::Bool => {
                let b = cx.r.read_bool()?;
                f.key.put_bytes(out, if b { b"true" } else { b"false" });
            }
            _ => return mismatch(ty, kind, None),
        },
        Ty::Timestamp | Ty::Date | Ty::Time | Ty::DateTime => {
            // A string in the common spelling is read where it stands, in
            // one pass (`time::quoted`); any other text the general way.
            let quick = match kind {
                Kind::String => cx.r.str_body().and_then(|body| match ty {
                    Ty::Timestamp => time::quoted::timestamp(body),
                    Ty::Date => time::quoted::date_days(body),
                    Ty::DateTime => time::quoted::datetime(body),
                    _ => time::quoted::time_of_day(body),
                }),
                // Epoch microseconds.
                _ if matches!(ty, Ty::Timestamp) => {
                    int_number(cx, kind).filter(|&(us, _)| time::check_timestamp(us).is_ok())
                }
                _ => None,
            };
            let v = match quick {
                Some((v, len)) => {
                    if kind == Kind::String {
                        cx.r.take_str_body(len);
                    } else {
                        cx.r.take_number(len);
                    }
                    v
                }
                None => civil_value(ty, kind, scalar_bytes!(cx, ty, kind))?,
            };
            f.key.put_varint(out, v as u64);
        }
        Ty::Decimal(spec) => return encode_decimal(cx, f, *spec, kind, out),
        // Rarer types out of line: the common ones keep a small frame.
        _ => return encode_rare(cx, f, kind, out),
    }
    Ok(())
}

/// A JSON integer at the cursor read where it stands (`digits::int_number`):
/// its value and length, or `None` for other kinds and numbers.
#[inline]
fn int_number(cx: &mut Ctx, kind: Kind) -> Option<(i64, usize)> {
    if kind != Kind::Number {
        return None;
    }
    digits::int_number(cx.r.number_body())
}

/// NUMERIC and BIGNUMERIC, out of [`encode_value`]'s frame and out of
/// [`encode_rare`]'s large one (numeric records are mostly decimals). A
/// decimal string in the common form is parsed where it stands, in one
/// pass over its text; anything else goes the general way, out of line so
/// this frame stays small.
#[inline(never)]
fn encode_decimal(
    cx: &mut Ctx,
    f: &Field,
    spec: DecimalSpec,
    kind: Kind,
    out: &mut Vec<u8>,
) -> R<()> {
    let quoted = match kind {
        Kind::String => cx.r.str_body().and_then(|body| decimal::parse_quoted(body, spec)),
        _ => None,
    };
    // The quoted form has at most 38 integer digits, so |v| < 10^76: inside
    // decimal256(76, 38), no Arrow check.
    let v = match quoted {
        Some((v, len)) => {
            cx.r.take_str_body(len);
            v
        }
        None => general_decimal(cx, &f.ty, spec, kind)?,
    };
    f.key.put(out);
    decimal::put_wire(v, out);
    Ok(())
}

/// [`encode_decimal`]'s value from any text [`parse_decimal`] takes.
#[cold]
#[inline(never)]
fn general_decimal(cx: &mut Ctx, ty: &Ty, spec: DecimalSpec, kind: Kind) -> R<arrow_buffer::i256> {
    let raw = scalar_bytes!(cx, ty, kind);
    parse_decimal(ty, spec, kind, raw, cx.arrow)
}

/// [`encode_value`] for the less common types.
#[inline(never)]
fn encode_rare(cx: &mut Ctx, f: &Field, kind: Kind, out: &mut Vec<u8>) -> R<()> {
    use RowErrorKind::{InvalidValue, OutOfRange};
    let ty = &f.ty;
    match ty {
        Ty::Range(bounds) => match kind {
            Kind::Object => {
                let at = f.key.begin_len(out);
                encode_message(cx, bounds, out)?;
                check_range_order(out.get(at..).unwrap_or_default())?;
                end_len(out, at);
            }
            Kind::String => {
                let text = cx.r.read_str(&mut cx.scratch)?.to_owned();
                let at = f.key.begin_len(out);
                encode_range_literal(bounds, &text, out)?;
                check_range_order(out.get(at..).unwrap_or_default())?;
                end_len(out, at);
            }
            _ => return mismatch(ty, kind, None),
        },
        Ty::Bytes(max) => {
            cx.bytes.clear();
            match kind {
                Kind::String => {
                    let s = cx.r.read_str(&mut cx.scratch)?;
                    if !values::decode_base64(s, &mut cx.bytes) {
                        let s = s.to_owned();
                        return invalid(InvalidValue, ty, &s, "not base64 (standard or URL-safe)");
                    }
                }
                Kind::Array => byte_array(cx)?,
                _ => return mismatch(ty, kind, None),
            }
            if *max > 0 && cx.bytes.len() > *max as usize {
                return fail(OutOfRange, format!("BYTES longer than max_length {max}"));
            }
            f.key.put_bytes(out, &cx.bytes);
        }
        Ty::Interval => {
            if kind != Kind::String {
                return mismatch(ty, kind, None);
            }
            let s = cx.r.read_str(&mut cx.scratch)?;
            f.key.put_bytes(out, s.as_bytes());
        }
        Ty::Geography => match kind {
            Kind::String => {
                let s = cx.r.read_str(&mut cx.scratch)?;
                if !values::is_geography(s) {
                    let s = s.to_owned();
                    return invalid(InvalidValue, ty, &s, "expected WKT or GeoJSON");
                }
                f.key.put_bytes(out, s.as_bytes());
            }
            // A GeoJSON geometry given as an object: its text.
            Kind::Object => {
                let raw = cx.r.skip_value()?;
                if !values::is_geojson(raw) {
                    return fail(
                        InvalidValue,
                        "invalid GEOGRAPHY: a GeoJSON object needs a string \"type\"",
                    );
                }
                f.key.put_bytes(out, raw);
            }
            _ => return mismatch(ty, kind, None),
        },
        Ty::Json => {
            if kind == Kind::String {
                // Pre-serialized JSON text, as JsonStreamWriter expects.
                let s = cx.r.read_str(&mut cx.scratch)?;
                let mut inner = Reader::new(s.as_bytes());
                if inner.skip_value().and_then(|_| inner.finish()).is_err() {
                    let s = s.to_owned();
                    return invalid(
                        InvalidValue,
                        ty,
                        &s,
                        "a string for a JSON column must hold JSON text",
                    );
                }
                f.key.put_bytes(out, s.as_bytes());
            } else {
                let raw = cx.r.skip_value()?;
                f.key.put_bytes(out, raw);
            }
        }
        _ => return mismatch(ty, kind, None),
    }
    Ok(())
}

/// BYTES as a JSON array of integers 0..=255 (JsonStreamWriter's form).
fn byte_array(cx: &mut Ctx) -> R<()> {
    cx.r.begin_array()?;
    let mut first = true;
    let mut i = 0;
    while cx.r.next_element(&mut first)? {
        let k = cx.r.peek()?;
        let byte = if k == Kind::Number { cx.r.read_number()?.parse::<u8>().ok() } else { None };
        match byte {
            Some(b) => cx.bytes.push(b),
            None => {
                return fail(RowErrorKind::TypeMismatch, "expected an integer 0..=255")
                    .at(|| Seg::Index(i));
            }
        }
        i += 1;
    }
    Ok(())
}

fn parse_decimal(
    ty: &Ty,
    spec: DecimalSpec,
    kind: Kind,
    raw: &[u8],
    arrow: bool,
) -> R<arrow_buffer::i256> {
    use decimal::DecError;
    // JSON numbers round HALF_UP to the scale like JsonStreamWriter does for
    // doubles; strings are exact.
    let text = || String::from_utf8_lossy(raw);
    let v = match decimal::parse_bytes(raw, spec, kind == Kind::Number) {
        Ok(v) => v,
        Err(DecError::Syntax) => return mismatch(ty, kind, Some(&text())),
        Err(DecError::IntDigits) => {
            return invalid(
                RowErrorKind::OutOfRange,
                ty,
                &text(),
                &format!("more than {} integer digits", spec.int_digits),
            );
        }
        Err(DecError::FracDigits) => {
            return invalid(
                RowErrorKind::InvalidValue,
                ty,
                &text(),
                &format!("more than {} fractional digits", spec.scale),
            );
        }
        Err(DecError::Range) => {
            return invalid(RowErrorKind::OutOfRange, ty, &text(), "outside the type's range");
        }
    };
    if arrow && spec.big && !decimal::fits_decimal256(v) {
        return invalid(
            RowErrorKind::NotRepresentable,
            ty,
            &text(),
            "beyond Arrow decimal256(76, 38); use ROW_FORMAT=proto",
        );
    }
    Ok(v)
}

/// TIMESTAMP (µs), DATE (days), TIME and DATETIME (packed) from text or a number.
fn civil_value(ty: &Ty, kind: Kind, text: &[u8]) -> R<i64> {
    use RowErrorKind::{InvalidValue, OutOfRange};
    let int = values::parse_i64(text);
    let res = match (ty, int) {
        // Epoch microseconds, from a number or a numeric string (product decision).
        (Ty::Timestamp, Some(us)) => time::check_timestamp(us).map_err(|e| (OutOfRange, e)),
        (Ty::Timestamp, None) if kind == Kind::Number => {
            let spec = DecimalSpec { wire_scale: 0, scale: 0, int_digits: 19, big: false };
            let text = &*String::from_utf8_lossy(text);
            match decimal::parse(text, spec, false)
                .ok()
                .and_then(|v| v.to_i128())
                .and_then(|v| i64::try_from(v).ok())
            {
                Some(us) => time::check_timestamp(us).map_err(|e| (OutOfRange, e)),
                None => Err((InvalidValue, "epoch microseconds must be a whole number")),
            }
        }
        (Ty::Timestamp, None) => time::parse_timestamp(text).map_err(|e| (InvalidValue, e)),
        (Ty::Date, Some(d)) if kind == Kind::Number => {
            time::check_date(d).map_err(|e| (OutOfRange, e))
        }
        (Ty::Date, _) if kind == Kind::String => {
            time::parse_date(text).map_err(|e| (InvalidValue, e))
        }
        (Ty::Time, Some(p)) if kind == Kind::Number => {
            time::unpack_time(p).map(|_| p).map_err(|e| (InvalidValue, e))
        }
        (Ty::Time, _) if kind == Kind::String => {
            time::parse_time(text).map_err(|e| (InvalidValue, e))
        }
        (Ty::DateTime, Some(p)) if kind == Kind::Number => {
            time::unpack_datetime(p).map(|_| p).map_err(|e| (InvalidValue, e))
        }
        (Ty::DateTime, _) if kind == Kind::String => {
            time::parse_datetime(text).map_err(|e| (InvalidValue, e))
        }
        _ => return mismatch(ty, kind, Some(&String::from_utf8_lossy(text))),
    };
    res.or_else(|(k, why)| invalid(k, ty, &String::from_utf8_lossy(text), why))
}

/// BigQuery requires a RANGE's start before its end when both are set. The
/// bounds are varints whose order is chronological (days, µs, or packed
/// DATETIME with its fields in decreasing significance).
fn check_range_order(body: &[u8]) -> R<()> {
    let mut r = WireReader::new(body);
    let (mut start, mut end) = (None, None);
    // The bounds are the body's only fields, both varints.
    while let Ok((n, 0)) = r.key() {
        let Ok(v) = r.varint() else { break };
        if n == 1 { start = Some(v as i64) } else { end = Some(v as i64) }
    }
    match (start, end) {
        (Some(s), Some(e)) if s >= e => {
            fail(RowErrorKind::InvalidValue, "RANGE start must be before its end")
        }
        _ => Ok(()),
    }
}

/// BigQuery's RANGE literal `[start, end)`, each bound a value or `UNBOUNDED`/`NULL`.
fn encode_range_literal(bounds: &Fields, text: &str, out: &mut Vec<u8>) -> R<()> {
    let bad = || {
        fail(
            RowErrorKind::InvalidValue,
            format!("invalid RANGE {:?}: expected \"[start, end)\"", shorten(text)),
        )
    };
    let Some(inner) = text.trim().strip_prefix('[').and_then(|t| t.strip_suffix(')')) else {
        return bad();
    };
    let Some((start, end)) = inner.split_once(',') else { return bad() };
    for (f, v) in bounds.fields.iter().zip([start.trim(), end.trim()]) {
        if v.eq_ignore_ascii_case("UNBOUNDED") || v.eq_ignore_ascii_case("NULL") {
            continue;
        }
        let p = civil_value(&f.ty, Kind::String, v.as_bytes()).at(|| Seg::Name(f.name.clone()))?;
        f.key.put_varint(out, p as u64);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
