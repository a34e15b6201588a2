//! JSON record bytes → one serialized proto2 row, in a single pass: the
//! encoder walks the JSON with the pull [`Reader`] and the compiled schema
//! side by side and writes wire bytes directly (no JSON tree, no message
//! object). This is the one place the coercion rules of docs/coercions.md live.
//!
//! Guarantees: a row it returns has every REQUIRED column, each column at
//! most once, and only values BigQuery accepts for the column's type; any
//! other input is a [`RowError`] naming the field path, never a panic.

use super::UnknownFields;
use super::error::{RowError, RowErrorKind};
use super::json::{JsonError, Kind, Reader};
use super::meta::{MetaColumn, RecordMeta};
use super::schema::{DecimalSpec, Field, Fields, Mode, Ty};
use super::values::{self, decimal, time};
use super::wire::{WireReader, WireValue, begin_len, end_len, put_bytes, put_key, put_varint};

/// A failure on its way up: the path is collected innermost first, so the
/// success path never builds strings.
pub(crate) struct Fail {
    kind: RowErrorKind,
    message: String,
    rev_path: Vec<Seg>,
}

enum Seg {
    Name(String),
    Index(usize),
}

type R<T> = Result<T, Box<Fail>>;

fn fail<T>(kind: RowErrorKind, message: impl Into<String>) -> R<T> {
    Err(Box::new(Fail { kind, message: message.into(), rev_path: Vec::new() }))
}

impl From<JsonError> for Box<Fail> {
    fn from(e: JsonError) -> Self {
        Box::new(Fail {
            kind: RowErrorKind::InvalidJson,
            message: format!("invalid JSON at byte {}: {}", e.offset, e.what),
            rev_path: Vec::new(),
        })
    }
}

trait At<T> {
    fn at(self, seg: impl FnOnce() -> Seg) -> R<T>;
}

impl<T> At<T> for R<T> {
    #[inline]
    fn at(self, seg: impl FnOnce() -> Seg) -> R<T> {
        self.map_err(|mut f| {
            f.rev_path.push(seg());
            f
        })
    }
}

impl Fail {
    pub(crate) fn into_row_error(self) -> RowError {
        let mut path = String::new();
        for seg in self.rev_path.iter().rev() {
            match seg {
                Seg::Name(n) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(n);
                }
                Seg::Index(i) => {
                    path.push('[');
                    path.push_str(&i.to_string());
                    path.push(']');
                }
            }
        }
        RowError { path, kind: self.kind, message: self.message }
    }
}

/// Which columns an object has set, for duplicates and REQUIRED checks.
enum Seen {
    Small([u64; 4]),
    Big(Vec<u64>),
}

impl Seen {
    fn new(n: usize) -> Self {
        if n <= 256 { Seen::Small([0; 4]) } else { Seen::Big(vec![0; n.div_ceil(64)]) }
    }
    fn words(&mut self) -> &mut [u64] {
        match self {
            Seen::Small(a) => a,
            Seen::Big(v) => v,
        }
    }
    /// Sets bit `i`; returns whether it was set before.
    #[inline]
    fn insert(&mut self, i: usize) -> bool {
        match self.words().get_mut(i / 64) {
            Some(w) => {
                let bit = 1u64 << (i % 64);
                let was = *w & bit != 0;
                *w |= bit;
                was
            }
            None => false,
        }
    }
    fn contains(&mut self, i: usize) -> bool {
        self.words().get(i / 64).is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }
}

/// Per-call state: the JSON cursor and reusable scratch buffers.
pub(crate) struct Ctx<'j> {
    r: Reader<'j>,
    scratch: String,
    bytes: Vec<u8>,
    unknown: UnknownFields,
    /// Arrow mode: also refuse what decimal256(76, 38) cannot hold.
    arrow: bool,
}

/// Encodes one record (a JSON object) against the top-level columns.
pub(crate) fn encode_row(
    fields: &Fields,
    json: &[u8],
    meta: &RecordMeta,
    unknown: UnknownFields,
    arrow: bool,
    out: &mut Vec<u8>,
) -> Result<(), RowError> {
    let mut cx =
        Ctx { r: Reader::new(json), scratch: String::new(), bytes: Vec::new(), unknown, arrow };
    let run = |cx: &mut Ctx, out: &mut Vec<u8>| -> R<()> {
        if cx.r.peek()? != Kind::Object {
            // Report a syntax error as such; valid JSON that is not an object after.
            cx.r.skip_value()?;
            cx.r.finish()?;
            return fail(RowErrorKind::InvalidJson, "a record must be a JSON object");
        }
        encode_message(cx, fields, out)?;
        cx.r.finish()?;
        encode_meta(fields, meta, out)
    };
    run(&mut cx, out).map_err(|f| f.into_row_error())
}

fn encode_meta(fields: &Fields, meta: &RecordMeta, out: &mut Vec<u8>) -> R<()> {
    for &i in &fields.meta {
        let Some(f) = fields.fields.get(i) else { continue };
        let at = || Seg::Name(f.name.clone());
        match f.meta {
            Some(MetaColumn::SequenceNumber) => {
                put_bytes(out, &f.key, meta.sequence_number.as_bytes())
            }
            Some(MetaColumn::PartitionKey) => put_bytes(out, &f.key, meta.partition_key.as_bytes()),
            Some(MetaColumn::ShardId) => put_bytes(out, &f.key, meta.shard_id.as_bytes()),
            Some(MetaColumn::SubSequenceNumber) => {
                let Ok(v) = i64::try_from(meta.sub_sequence_number) else {
                    return fail(RowErrorKind::Metadata, "sub-sequence number exceeds INT64")
                        .at(at);
                };
                put_key(out, &f.key);
                put_varint(out, v as u64);
            }
            Some(MetaColumn::ApproximateArrival) => match meta.arrival_micros {
                Some(us) => {
                    let Ok(us) = time::check_timestamp(us) else {
                        return fail(
                            RowErrorKind::Metadata,
                            "arrival time outside TIMESTAMP range",
                        )
                        .at(at);
                    };
                    put_key(out, &f.key);
                    put_varint(out, us as u64);
                }
                None if f.mode == Mode::Required => {
                    return fail(
                        RowErrorKind::Metadata,
                        "REQUIRED but the record has no arrival time",
                    )
                    .at(at);
                }
                None => {}
            },
            None => {}
        }
    }
    Ok(())
}

/// Encodes the object at the cursor as the body of a message of `fields`.
fn encode_message(cx: &mut Ctx, fields: &Fields, out: &mut Vec<u8>) -> R<()> {
    cx.r.begin_object()?;
    let mut seen = Seen::new(fields.fields.len());
    let mut first = true;
    let mut hint = 0;
    loop {
        let found = {
            let Some(key) = cx.r.next_key(&mut first, &mut cx.scratch)? else { break };
            fields.find(key.as_bytes(), hint).ok_or_else(|| key.to_owned())
        };
        let i = match found {
            Ok(i) => i,
            Err(name) => {
                if cx.unknown == UnknownFields::Reject {
                    return fail(RowErrorKind::UnknownField, "the table has no such column")
                        .at(|| Seg::Name(name));
                }
                cx.r.skip_value()?;
                continue;
            }
        };
        let Some(f) = fields.fields.get(i) else { break };
        hint = i + 1;
        if seen.insert(i) {
            return fail(
                RowErrorKind::DuplicateField,
                "column given twice (names are case-insensitive)",
            )
            .at(|| Seg::Name(f.name.clone()));
        }
        if f.meta.is_some() {
            // Filled from the Kinesis record; the JSON's value is ignored.
            cx.r.skip_value()?;
            continue;
        }
        encode_field(cx, f, out).at(|| Seg::Name(f.name.clone()))?;
    }
    for &i in &fields.required {
        if !seen.contains(i)
            && let Some(f) = fields.fields.get(i)
        {
            return fail(RowErrorKind::MissingRequired, "REQUIRED column is missing")
                .at(|| Seg::Name(f.name.clone()));
        }
    }
    Ok(())
}

fn encode_field(cx: &mut Ctx, f: &Field, out: &mut Vec<u8>) -> R<()> {
    let kind = cx.r.peek()?;
    if kind == Kind::Null {
        cx.r.read_null()?;
        if f.mode == Mode::Required {
            return fail(RowErrorKind::MissingRequired, "REQUIRED column is null");
        }
        // NULLABLE: unset. REPEATED: null means an empty array (JsonStreamWriter).
        return Ok(());
    }
    if f.mode != Mode::Repeated {
        return encode_value(cx, f, kind, out);
    }
    if kind != Kind::Array {
        return fail(
            RowErrorKind::TypeMismatch,
            format!("expected an array of {}, got {}", f.ty.name(), kind.article()),
        );
    }
    cx.r.begin_array()?;
    let mut first = true;
    let mut i = 0;
    while cx.r.next_element(&mut first)? {
        let kind = cx.r.peek()?;
        if kind == Kind::Null {
            return fail(
                RowErrorKind::TypeMismatch,
                "null element in an array (BigQuery arrays cannot hold NULL)",
            )
            .at(|| Seg::Index(i));
        }
        encode_value(cx, f, kind, out).at(|| Seg::Index(i))?;
        i += 1;
    }
    Ok(())
}

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

/// The text of a number or string value, borrowed; other kinds are a mismatch.
macro_rules! scalar_text {
    ($cx:ident, $ty:expr, $kind:expr) => {
        match $kind {
            Kind::Number => $cx.r.read_number()?,
            Kind::String => $cx.r.read_str(&mut $cx.scratch)?,
            _ => return mismatch($ty, $kind, None),
        }
    };
}

/// Writes one value (key included) of `f`'s type from the JSON value at the
/// cursor, whose kind is `kind` (never null).
fn encode_value(cx: &mut Ctx, f: &Field, kind: Kind, out: &mut Vec<u8>) -> R<()> {
    use RowErrorKind::{InvalidValue, OutOfRange};
    let ty = &f.ty;
    match ty {
        Ty::Struct(sub) => {
            if kind != Kind::Object {
                return mismatch(ty, kind, None);
            }
            let at = begin_len(out, &f.key);
            encode_message(cx, sub, out)?;
            end_len(out, at);
        }
        Ty::Range(bounds) => match kind {
            Kind::Object => {
                let at = begin_len(out, &f.key);
                encode_message(cx, bounds, out)?;
                check_range_order(out.get(at..).unwrap_or_default())?;
                end_len(out, at);
            }
            Kind::String => {
                let text = cx.r.read_str(&mut cx.scratch)?.to_owned();
                let at = begin_len(out, &f.key);
                encode_range_literal(bounds, &text, out)?;
                check_range_order(out.get(at..).unwrap_or_default())?;
                end_len(out, at);
            }
            _ => return mismatch(ty, kind, None),
        },
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
            put_key(out, &f.key);
            out.push(u8::from(v));
        }
        Ty::Int64 => {
            let text = scalar_text!(cx, ty, kind);
            let Some(v) = values::parse_i64(text) else {
                let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    return invalid(OutOfRange, ty, text, "outside the INT64 range");
                }
                return mismatch(ty, kind, Some(text));
            };
            put_key(out, &f.key);
            put_varint(out, v as u64);
        }
        Ty::Float64 => {
            let text = scalar_text!(cx, ty, kind);
            let v = match values::parse_f64(text, kind == Kind::String) {
                Ok(v) => v,
                Err(values::FloatError::Overflow) => {
                    return invalid(OutOfRange, ty, text, "overflows FLOAT64");
                }
                Err(values::FloatError::Syntax) => return mismatch(ty, kind, Some(text)),
            };
            put_key(out, &f.key);
            out.extend_from_slice(&v.to_le_bytes());
        }
        Ty::String(max) => match kind {
            Kind::String => {
                let s = cx.r.read_str(&mut cx.scratch)?;
                if *max > 0 && s.len() > *max as usize && s.chars().count() > *max as usize {
                    let s = s.to_owned();
                    return invalid(OutOfRange, ty, &s, &format!("longer than max_length {max}"));
                }
                put_bytes(out, &f.key, s.as_bytes());
            }
            // JsonStreamWriter turns integers and booleans into their text, not doubles.
            Kind::Number => {
                let t = cx.r.read_number()?;
                if t.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    return mismatch(ty, kind, Some(t));
                }
                put_bytes(out, &f.key, t.as_bytes());
            }
            Kind::Bool => {
                let b = cx.r.read_bool()?;
                put_bytes(out, &f.key, if b { b"true" } else { b"false" });
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
            put_bytes(out, &f.key, &cx.bytes);
        }
        Ty::Decimal(spec) => {
            let text = scalar_text!(cx, ty, kind);
            let v = parse_decimal(ty, *spec, kind, text, cx.arrow)?;
            cx.bytes.clear();
            decimal::to_wire(v, &mut cx.bytes);
            put_bytes(out, &f.key, &cx.bytes);
        }
        Ty::Timestamp | Ty::Date | Ty::Time | Ty::DateTime => {
            let text = scalar_text!(cx, ty, kind);
            let v = civil_value(ty, kind, text)?;
            put_key(out, &f.key);
            put_varint(out, v as u64);
        }
        Ty::Interval => {
            if kind != Kind::String {
                return mismatch(ty, kind, None);
            }
            let s = cx.r.read_str(&mut cx.scratch)?;
            put_bytes(out, &f.key, s.as_bytes());
        }
        Ty::Geography => match kind {
            Kind::String => {
                let s = cx.r.read_str(&mut cx.scratch)?;
                if !values::is_geography(s) {
                    let s = s.to_owned();
                    return invalid(InvalidValue, ty, &s, "expected WKT or GeoJSON");
                }
                put_bytes(out, &f.key, s.as_bytes());
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
                put_bytes(out, &f.key, raw);
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
                put_bytes(out, &f.key, s.as_bytes());
            } else {
                let raw = cx.r.skip_value()?;
                put_bytes(out, &f.key, raw);
            }
        }
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
    text: &str,
    arrow: bool,
) -> R<arrow_buffer::i256> {
    use decimal::DecError;
    // JSON numbers round HALF_UP to the scale like JsonStreamWriter does for
    // doubles; strings are exact.
    let v = match decimal::parse(text, spec, kind == Kind::Number) {
        Ok(v) => v,
        Err(DecError::Syntax) => return mismatch(ty, kind, Some(text)),
        Err(DecError::IntDigits) => {
            return invalid(
                RowErrorKind::OutOfRange,
                ty,
                text,
                &format!("more than {} integer digits", spec.int_digits),
            );
        }
        Err(DecError::FracDigits) => {
            return invalid(
                RowErrorKind::InvalidValue,
                ty,
                text,
                &format!("more than {} fractional digits", spec.scale),
            );
        }
        Err(DecError::Range) => {
            return invalid(RowErrorKind::OutOfRange, ty, text, "outside the type's range");
        }
    };
    if arrow && spec.big && !decimal::fits_decimal256(v) {
        return invalid(
            RowErrorKind::NotRepresentable,
            ty,
            text,
            "beyond Arrow decimal256(76, 38); use ROW_FORMAT=proto",
        );
    }
    Ok(v)
}

/// TIMESTAMP (µs), DATE (days), TIME and DATETIME (packed) from text or a number.
fn civil_value(ty: &Ty, kind: Kind, text: &str) -> R<i64> {
    use RowErrorKind::{InvalidValue, OutOfRange};
    let int = values::parse_i64(text);
    let res = match (ty, int) {
        // Epoch microseconds, from a number or a numeric string (product decision).
        (Ty::Timestamp, Some(us)) => time::check_timestamp(us).map_err(|e| (OutOfRange, e)),
        (Ty::Timestamp, None) if kind == Kind::Number => {
            let spec = DecimalSpec { wire_scale: 0, scale: 0, int_digits: 19, big: false };
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
        _ => return mismatch(ty, kind, Some(text)),
    };
    res.or_else(|(k, why)| invalid(k, ty, text, why))
}

/// BigQuery requires a RANGE's start before its end when both are set. The
/// bounds are varints whose order is chronological (days, µs, or packed
/// DATETIME with its fields in decreasing significance).
fn check_range_order(body: &[u8]) -> R<()> {
    let mut r = WireReader::new(body);
    let (mut start, mut end) = (None, None);
    while let Ok(Some((n, WireValue::Varint(v)))) = r.next() {
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
        let p = civil_value(&f.ty, Kind::String, v).at(|| Seg::Name(f.name.clone()))?;
        put_key(out, &f.key);
        put_varint(out, p as u64);
    }
    Ok(())
}
