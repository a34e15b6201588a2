//! The typed cell value the emulator stores, BigQuery's value checks, and the
//! JSON forms it reads back in.
//!
//! Decoders (proto and Arrow) turn wire values into [`Value`] through the
//! checks here, so a value that BigQuery would refuse never reaches a table.
//!
//! # Canonical JSON (what [`crate::emulator::Emulator::read_rows`] returns)
//! One JSON object per row, keyed by column name, every column present:
//! - NULL → `null`; REPEATED → array (empty when unset); STRUCT → object;
//!   RANGE → `{"start": .., "end": ..}` (an unbounded end is `null`).
//! - BOOL → JSON bool; FLOAT64 → JSON number (`"NaN"`, `"Infinity"`,
//!   `"-Infinity"` as strings, since JSON has no such numbers).
//! - INT64 → decimal string (as BigQuery's REST API: JSON numbers lose
//!   precision above 2^53).
//! - NUMERIC/BIGNUMERIC → normalized decimal string: no exponent, no trailing
//!   fractional zeros, no trailing dot (`"1.5"`, `"-3"`, `"0"`).
//! - TIMESTAMP → RFC 3339 UTC with 6 fractional digits, `"2024-01-02T03:04:05.000006Z"`.
//! - DATE → `"YYYY-MM-DD"`; DATETIME → `"YYYY-MM-DDTHH:MM:SS.ffffff"`;
//!   TIME → `"HH:MM:SS.ffffff"` (always 6 fractional digits).
//! - BYTES → standard base64; STRING, JSON, GEOGRAPHY, INTERVAL → the text.

use arrow_buffer::i256;
use base64::Engine;
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use serde_json::{Value as Json, json};

use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::table_field_schema::{Mode, Type};

/// One stored cell. Rows and structs are vectors aligned with the schema's
/// fields at write time; columns added later read as `Null` for older rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int64(i64),
    Float64(f64),
    String(String),
    Bytes(Vec<u8>),
    /// Unscaled value × 10^9 (NUMERIC) or × 10^38 (BIGNUMERIC).
    Decimal(i256),
    /// Days since 1970-01-01.
    Date(i32),
    Datetime(NaiveDateTime),
    Time(NaiveTime),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
    Range(Box<Value>, Box<Value>),
    Struct(Vec<Value>),
    Array(Vec<Value>),
}

/// A stored row: top-level cells aligned with the table's fields.
pub type Row = Vec<Value>;

/// Scale of NUMERIC and BIGNUMERIC (fact sheet §4.2).
pub const NUMERIC_SCALE: u32 = 9;
pub const BIGNUMERIC_SCALE: u32 = 38;

/// DATE range: 0001-01-01 ..= 9999-12-31 as days since the epoch (§4.1).
pub const MIN_DATE_DAYS: i64 = -719_162;
pub const MAX_DATE_DAYS: i64 = 2_932_896;
/// TIMESTAMP range: 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999Z in µs.
pub const MIN_TIMESTAMP_MICROS: i64 = -62_135_596_800_000_000;
pub const MAX_TIMESTAMP_MICROS: i64 = 253_402_300_799_999_999;

/// Which decimal type a value is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalKind {
    Numeric,
    BigNumeric,
}

impl DecimalKind {
    pub fn scale(self) -> u32 {
        match self {
            DecimalKind::Numeric => NUMERIC_SCALE,
            DecimalKind::BigNumeric => BIGNUMERIC_SCALE,
        }
    }

    /// NUMERIC holds ±(10^38 − 1) unscaled (29 integer + 9 fractional digits);
    /// BIGNUMERIC is bounded by the 256-bit two's-complement layout itself,
    /// i.e. −2^255 ..= 2^255 − 1 unscaled (±5.78…e38), §4.2.
    pub fn check(self, v: i256) -> Result<i256, String> {
        match self {
            DecimalKind::Numeric => {
                let limit = i256::from_i128(10i128.pow(38));
                if v >= limit || v <= limit.wrapping_neg() {
                    return Err("NUMERIC value out of range".into());
                }
                Ok(v)
            }
            DecimalKind::BigNumeric => Ok(v),
        }
    }

    pub fn from_type(t: Type) -> Option<Self> {
        match t {
            Type::Numeric => Some(DecimalKind::Numeric),
            Type::Bignumeric => Some(DecimalKind::BigNumeric),
            _ => None,
        }
    }
}

/// NUMERIC/BIGNUMERIC from the bytes layout: unscaled, two's-complement, little-endian.
pub fn decimal_from_le_bytes(bytes: &[u8], kind: DecimalKind) -> Result<i256, String> {
    if bytes.is_empty() {
        return Ok(i256::ZERO);
    }
    if bytes.len() > 32 {
        return Err(format!("{} bytes is too long for a {kind:?} value", bytes.len()));
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut buf = if negative { [0xFFu8; 32] } else { [0u8; 32] };
    buf[..bytes.len()].copy_from_slice(bytes);
    kind.check(i256::from_le_bytes(buf))
}

/// NUMERIC/BIGNUMERIC from a decimal literal (`-12.5`, `1e3`, `+.5`): more
/// fractional digits than the scale is an error, as the service reports it.
pub fn decimal_from_str(s: &str, kind: DecimalKind) -> Result<i256, String> {
    let bad = || format!("invalid {kind:?} literal {s:?}");
    let t = s.trim();
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (neg, digits) = match mantissa.as_bytes().first() {
        Some(b'-') => (true, &mantissa[1..]),
        Some(b'+') => (false, &mantissa[1..]),
        _ => (false, mantissa),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let all: String = format!("{int}{frac}");
    let frac_digits = frac.len() as i64 - exp as i64;
    let shift = kind.scale() as i64 - frac_digits;
    let trimmed = all.trim_start_matches('0');
    let (unscaled_digits, zeros) = if shift >= 0 {
        (trimmed.to_string(), shift as usize)
    } else {
        let cut = (-shift) as usize;
        let keep = trimmed.len().saturating_sub(cut);
        if trimmed[keep..].bytes().any(|b| b != b'0') {
            return Err(format!(
                "{kind:?} literal {s:?} has more than {} fractional digits",
                kind.scale()
            ));
        }
        (trimmed[..keep].to_string(), 0)
    };
    if unscaled_digits.len() + zeros > 78 {
        return Err(format!("{kind:?} value {s:?} out of range"));
    }
    let text = if unscaled_digits.is_empty() {
        "0".to_string()
    } else {
        format!("{unscaled_digits}{}", "0".repeat(zeros))
    };
    let v = i256::from_string(&text).ok_or_else(|| format!("{kind:?} value {s:?} out of range"))?;
    kind.check(if neg { v.wrapping_neg() } else { v })
}

/// NUMERIC/BIGNUMERIC from an integer wire value.
pub fn decimal_from_i128(v: i128, kind: DecimalKind) -> Result<i256, String> {
    i256::from_i128(v)
        .checked_mul(i256::from_i128(10).checked_pow(kind.scale()).ok_or("overflow")?)
        .ok_or_else(|| format!("{kind:?} value {v} out of range"))
        .and_then(|x| kind.check(x))
}

/// NUMERIC/BIGNUMERIC from a float wire value (through its shortest decimal form).
pub fn decimal_from_f64(v: f64, kind: DecimalKind) -> Result<i256, String> {
    if !v.is_finite() {
        return Err(format!("{kind:?} cannot hold {v}"));
    }
    // Round to the scale like the service does for doubles (shortest repr first).
    let text = format!("{v:.*}", kind.scale() as usize);
    decimal_from_str(&text, kind)
}

/// Normalized decimal text of an unscaled value.
pub fn decimal_to_string(v: i256, kind: DecimalKind) -> String {
    let neg = v.is_negative();
    let digits = v.to_string();
    let digits = digits.trim_start_matches('-');
    let scale = kind.scale() as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    let frac = frac.trim_end_matches('0');
    let sign = if neg { "-" } else { "" };
    if frac.is_empty() { format!("{sign}{int}") } else { format!("{sign}{int}.{frac}") }
}

pub fn check_date_days(days: i64) -> Result<i32, String> {
    if (MIN_DATE_DAYS..=MAX_DATE_DAYS).contains(&days) {
        Ok(days as i32)
    } else {
        Err(format!("DATE value {days} is outside 0001-01-01..9999-12-31"))
    }
}

pub fn check_timestamp_micros(us: i64) -> Result<i64, String> {
    if (MIN_TIMESTAMP_MICROS..=MAX_TIMESTAMP_MICROS).contains(&us) {
        Ok(us)
    } else {
        Err(format!("TIMESTAMP value {us} is outside 0001-01-01..9999-12-31"))
    }
}

/// `YYYY-MM-DD` (BigQuery also accepts a single-digit month/day).
pub fn parse_date(s: &str) -> Result<i32, String> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("invalid DATE literal {s:?}"))?;
    check_date_days(days_of(d))
}

fn days_of(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce()) - 719_163
}

fn date_of(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?)
}

/// `HH:MM[:SS[.ffffff]]`, at most microsecond precision.
pub fn parse_time(s: &str) -> Result<NaiveTime, String> {
    let t = s.trim();
    ["%H:%M:%S%.f", "%H:%M"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(t, f).ok())
        .filter(|t| t.nanosecond() % 1000 == 0 && t.nanosecond() < 1_000_000_000)
        .ok_or_else(|| format!("invalid TIME literal {s:?}"))
}

/// `YYYY-MM-DD[( |T)HH:MM[:SS[.ffffff]]]`.
pub fn parse_datetime(s: &str) -> Result<NaiveDateTime, String> {
    let t = s.trim();
    let bad = || format!("invalid DATETIME literal {s:?}");
    let (d, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let date = date_of(parse_date(d).map_err(|_| bad())?).ok_or_else(bad)?;
    let time = match rest {
        Some(r) => parse_time(r).map_err(|_| bad())?,
        None => NaiveTime::MIN,
    };
    Ok(date.and_time(time))
}

/// TIME from the packed civil-time layout (§4.2): hour<<32 | minute<<26 | second<<20 | micros.
pub fn time_from_packed(v: i64) -> Result<NaiveTime, String> {
    let bad = || format!("invalid packed TIME value {v}");
    if v < 0 || v & !0x1F_FFFF_FFFF != 0 {
        return Err(bad());
    }
    let micros = (v & 0xF_FFFF) as u32;
    let second = ((v >> 20) & 0x3F) as u32;
    let minute = ((v >> 26) & 0x3F) as u32;
    let hour = ((v >> 32) & 0x1F) as u32;
    if micros > 999_999 {
        return Err(bad());
    }
    NaiveTime::from_hms_micro_opt(hour, minute, second, micros).ok_or_else(bad)
}

/// DATETIME from the packed layout (§4.2): year<<46 | month<<42 | day<<37 | packed time.
pub fn datetime_from_packed(v: i64) -> Result<NaiveDateTime, String> {
    let bad = || format!("invalid packed DATETIME value {v}");
    if v < 0 || v & !0xFFF_FFFF_FFFF_FFFF != 0 {
        return Err(bad());
    }
    let time = time_from_packed(v & 0x1F_FFFF_FFFF).map_err(|_| bad())?;
    let day = ((v >> 37) & 0x1F) as u32;
    let month = ((v >> 42) & 0xF) as u32;
    let year = ((v >> 46) & 0x3FFF) as i32;
    if !(1..=9999).contains(&year) {
        return Err(bad());
    }
    let date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(bad)?;
    Ok(date.and_time(time))
}

/// A RANGE's bounds: start strictly before end when both are set
/// (BigQuery refuses empty and inverted ranges).
pub fn check_range(start: &Value, end: &Value) -> Result<(), String> {
    let key = |v: &Value| match v {
        Value::Date(d) => Some(i128::from(*d)),
        Value::Timestamp(t) => Some(i128::from(*t)),
        Value::Datetime(dt) => Some(i128::from(dt.and_utc().timestamp_micros())),
        _ => None,
    };
    match (key(start), key(end)) {
        (Some(s), Some(e)) if s >= e => Err("RANGE start must be before its end".into()),
        _ => Ok(()),
    }
}

/// JSON columns take JSON text; anything `serde_json` cannot parse is refused.
pub fn check_json(s: &str) -> Result<(), String> {
    serde_json::from_str::<serde::de::IgnoredAny>(s)
        .map(|_| ())
        .map_err(|e| format!("invalid JSON value: {e}"))
}

/// GEOGRAPHY takes WKT or GeoJSON. The emulator checks the shape only: a
/// known WKT keyword with balanced parentheses, or a JSON object with `type`.
pub fn check_geography(s: &str) -> Result<(), String> {
    let t = s.trim();
    if t.starts_with('{') {
        let v: Json = serde_json::from_str(t).map_err(|e| format!("invalid GeoJSON: {e}"))?;
        return if v.get("type").is_some_and(Json::is_string) {
            Ok(())
        } else {
            Err("GeoJSON value has no \"type\"".into())
        };
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
    let upper = t.to_ascii_uppercase();
    let kind_ok = KINDS.iter().any(|k| upper.starts_with(k));
    let mut depth = 0i64;
    for c in t.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    let empty = upper.ends_with("EMPTY");
    if kind_ok && depth == 0 && (t.contains('(') || empty) {
        Ok(())
    } else {
        Err(format!("invalid GEOGRAPHY value {s:?}"))
    }
}

fn field_type(f: &TableFieldSchema) -> Type {
    Type::try_from(f.r#type).unwrap_or(Type::Unspecified)
}

fn is_repeated(f: &TableFieldSchema) -> bool {
    f.mode == Mode::Repeated as i32
}

fn timestamp_text(us: i64) -> String {
    match DateTime::from_timestamp_micros(us) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        None => us.to_string(),
    }
}

fn date_text(days: i32) -> String {
    date_of(days).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_else(|| days.to_string())
}

/// Canonical JSON of one row (see the module docs).
pub fn row_to_json(row: &[Value], fields: &[TableFieldSchema]) -> Json {
    let mut obj = serde_json::Map::new();
    for (i, f) in fields.iter().enumerate() {
        let v = row.get(i).unwrap_or(&Value::Null);
        obj.insert(f.name.clone(), cell_to_json(v, f));
    }
    Json::Object(obj)
}

fn cell_to_json(v: &Value, f: &TableFieldSchema) -> Json {
    if is_repeated(f) {
        return match v {
            Value::Array(items) => {
                Json::Array(items.iter().map(|x| scalar_to_json(x, f)).collect())
            }
            _ => Json::Array(vec![]),
        };
    }
    scalar_to_json(v, f)
}

fn scalar_to_json(v: &Value, f: &TableFieldSchema) -> Json {
    let t = field_type(f);
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int64(i) => json!(i.to_string()),
        Value::Float64(x) if x.is_nan() => json!("NaN"),
        Value::Float64(x) if x.is_infinite() => {
            json!(if *x > 0.0 { "Infinity" } else { "-Infinity" })
        }
        Value::Float64(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Decimal(d) => {
            json!(decimal_to_string(*d, DecimalKind::from_type(t).unwrap_or(DecimalKind::Numeric)))
        }
        Value::Date(d) => json!(date_text(*d)),
        Value::Datetime(dt) => json!(dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        Value::Time(tm) => json!(tm.format("%H:%M:%S%.6f").to_string()),
        Value::Timestamp(us) => json!(timestamp_text(*us)),
        Value::Range(s, e) => {
            let elem = range_element_field(f);
            json!({"start": scalar_to_json(s, &elem), "end": scalar_to_json(e, &elem)})
        }
        Value::Struct(cells) => row_to_json(cells, &f.fields),
        Value::Array(items) => Json::Array(items.iter().map(|x| scalar_to_json(x, f)).collect()),
    }
}

/// A synthetic NULLABLE field of a RANGE column's element type.
pub fn range_element_field(f: &TableFieldSchema) -> TableFieldSchema {
    let elem = f.range_element_type.as_ref().map(|e| e.r#type).unwrap_or(Type::Timestamp as i32);
    TableFieldSchema {
        name: f.name.clone(),
        r#type: elem,
        mode: Mode::Nullable as i32,
        ..Default::default()
    }
}

/// How `tabledata.list` renders TIMESTAMP cells.
#[derive(Debug, Clone, Copy)]
pub enum TimestampForm {
    /// Float seconds in scientific notation, the API's default (`"1.7040672E9"`).
    FloatSeconds,
    /// Integer microseconds, with `formatOptions.useInt64Timestamp=true`.
    Int64Micros,
}

/// One row in `tabledata.list` form: `{"f":[{"v":..}]}`, every leaf a string.
pub fn row_to_rest(row: &[Value], fields: &[TableFieldSchema], ts: TimestampForm) -> Json {
    let cells: Vec<Json> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| json!({"v": cell_to_rest(row.get(i).unwrap_or(&Value::Null), f, ts)}))
        .collect();
    json!({"f": cells})
}

fn cell_to_rest(v: &Value, f: &TableFieldSchema, ts: TimestampForm) -> Json {
    if is_repeated(f) {
        let items = match v {
            Value::Array(items) => items.as_slice(),
            _ => &[],
        };
        return Json::Array(items.iter().map(|x| json!({"v": scalar_to_rest(x, f, ts)})).collect());
    }
    scalar_to_rest(v, f, ts)
}

fn scalar_to_rest(v: &Value, f: &TableFieldSchema, ts: TimestampForm) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => json!(b.to_string()),
        Value::Float64(x) => json!(rest_float(*x)),
        Value::Timestamp(us) => match ts {
            TimestampForm::Int64Micros => json!(us.to_string()),
            TimestampForm::FloatSeconds => json!(rest_float(*us as f64 / 1e6)),
        },
        Value::Datetime(dt) => json!(trim_fraction(dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string())),
        Value::Time(tm) => json!(trim_fraction(tm.format("%H:%M:%S%.6f").to_string())),
        Value::Struct(cells) => row_to_rest(cells, &f.fields, ts),
        Value::Range(s, e) => {
            let elem = range_element_field(f);
            let text = |x: &Value| match scalar_to_rest(x, &elem, ts) {
                Json::String(s) => s,
                _ => "UNBOUNDED".to_string(),
            };
            json!(format!("[{}, {})", text(s), text(e)))
        }
        other => match scalar_to_json(other, f) {
            Json::String(s) => json!(s),
            Json::Null => Json::Null,
            j => json!(j.to_string()),
        },
    }
}

fn trim_fraction(s: String) -> String {
    match s.strip_suffix(".000000") {
        Some(t) => t.to_string(),
        None => s.trim_end_matches('0').to_string(),
    }
}

/// Java-style float text as the REST API prints it (`1.5`, `1.0E10`, `NaN`).
fn rest_float(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        let s = format!("{x:E}");
        return if s.contains('.') { s } else { s.replacen('E', ".0E", 1) };
    }
    let s = format!("{x}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_parse_check_and_print() {
        let n = DecimalKind::Numeric;
        assert_eq!(decimal_to_string(decimal_from_str("1.50", n).unwrap(), n), "1.5");
        assert_eq!(
            decimal_to_string(decimal_from_str("-0.000000001", n).unwrap(), n),
            "-0.000000001"
        );
        assert_eq!(decimal_to_string(decimal_from_str("1e3", n).unwrap(), n), "1000");
        assert_eq!(decimal_to_string(decimal_from_str("0", n).unwrap(), n), "0");
        assert!(decimal_from_str("0.0000000001", n).is_err());
        assert!(decimal_from_str("100000000000000000000000000000", n).is_err());
        assert!(decimal_from_str("99999999999999999999999999999.999999999", n).is_ok());
        assert!(decimal_from_str("abc", n).is_err());
        // 1.5 as NUMERIC bytes: 1_500_000_000 little-endian two's complement.
        let b = 1_500_000_000i64.to_le_bytes();
        assert_eq!(decimal_to_string(decimal_from_le_bytes(&b[..4], n).unwrap(), n), "1.5");
        let neg = (-1_500_000_000i64).to_le_bytes();
        assert_eq!(decimal_to_string(decimal_from_le_bytes(&neg, n).unwrap(), n), "-1.5");
        let big = DecimalKind::BigNumeric;
        let min = decimal_from_le_bytes(&i256::MIN.to_le_bytes(), big).unwrap();
        assert_eq!(
            decimal_to_string(min, big),
            "-578960446186580977117854925043439539266.34992332820282019728792003956564819968"
        );
        assert!(decimal_from_le_bytes(&[0u8; 33], big).is_err());
    }

    #[test]
    fn civil_times_unpack_and_validate() {
        // 12:34:56.000789
        let t = (12i64 << 32) | (34 << 26) | (56 << 20) | 789;
        assert_eq!(time_from_packed(t).unwrap().to_string(), "12:34:56.000789");
        assert!(time_from_packed((25i64 << 32) | 1).is_err());
        let dt = (2024i64 << 46) | (2 << 42) | (29 << 37) | t;
        assert_eq!(datetime_from_packed(dt).unwrap().to_string(), "2024-02-29 12:34:56.000789");
        assert!(datetime_from_packed((2023i64 << 46) | (2 << 42) | (29 << 37)).is_err());
        assert_eq!(
            parse_datetime("2024-01-02 03:04:05.5").unwrap().to_string(),
            "2024-01-02 03:04:05.500"
        );
        assert!(parse_time("12:00:00.0000001").is_err());
        assert_eq!(parse_date("1970-01-02").unwrap(), 1);
        assert!(check_date_days(MAX_DATE_DAYS + 1).is_err());
        assert!(check_timestamp_micros(MIN_TIMESTAMP_MICROS - 1).is_err());
    }

    #[test]
    fn canonical_and_rest_forms() {
        let f = |name: &str, t: Type| TableFieldSchema {
            name: name.into(),
            r#type: t as i32,
            ..Default::default()
        };
        let fields = vec![
            f("i", Type::Int64),
            f("ts", Type::Timestamp),
            f("d", Type::Date),
            f("x", Type::Double),
        ];
        let row = vec![
            Value::Int64(5),
            Value::Timestamp(1_704_067_200_000_001),
            Value::Date(19723),
            Value::Float64(1e10),
        ];
        assert_eq!(
            row_to_json(&row, &fields),
            json!({"i": "5", "ts": "2024-01-01T00:00:00.000001Z", "d": "2024-01-01", "x": 1e10})
        );
        assert_eq!(
            row_to_rest(&row, &fields, TimestampForm::Int64Micros),
            json!({"f": [{"v": "5"}, {"v": "1704067200000001"}, {"v": "2024-01-01"}, {"v": "1.0E10"}]})
        );
        assert!(check_json("{\"a\":1}").is_ok() && check_json("{").is_err());
        assert!(check_geography("POINT(1 2)").is_ok() && check_geography("POINT(1 2").is_err());
    }
}
