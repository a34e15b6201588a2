//! The table schema compiled once into what the hot path needs: per column
//! its proto field number and precomputed wire key, the value type with its
//! parameters, and a case-insensitive name lookup.
//!
//! Guarantees: every column of the table has exactly one [`Field`], numbered
//! 1..N in table order (as Google's JsonStreamWriter numbers them), and the
//! proto name of each is a legal proto identifier (see [`proto_name`]).

use std::collections::HashMap;

use base64::Engine as _;

use super::error::SchemaError;
use super::meta::MetaColumn;
use crate::pb::storage::{TableFieldSchema, TableSchema, table_field_schema as tfs};

/// Proto wire types (protobuf encoding spec).
pub(crate) const WT_VARINT: u32 = 0;
pub(crate) const WT_FIXED64: u32 = 1;
pub(crate) const WT_LEN: u32 = 2;

/// BigQuery caps STRUCT nesting at 15 levels (quotas: "maximum nested depth").
const MAX_DEPTH: usize = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Nullable,
    Required,
    Repeated,
}

/// NUMERIC/BIGNUMERIC parameters: the wire scale is fixed by the type (9 or
/// 38, fact sheet §4.2); a parameterized column (`NUMERIC(P,S)`) narrows the
/// digits allowed on either side of the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DecimalSpec {
    /// 9 (NUMERIC) or 38 (BIGNUMERIC).
    pub wire_scale: u32,
    /// Fractional digits the column accepts (S, or the wire scale).
    pub scale: u32,
    /// Integer digits the column accepts (P−S; 29 for NUMERIC, 39 for BIGNUMERIC
    /// whose true bound is the 256-bit range, checked separately).
    pub int_digits: u32,
    pub big: bool,
}

#[derive(Clone, Debug)]
pub(crate) enum Ty {
    Bool,
    Int64,
    Float64,
    /// `max_length` in characters; 0 = unbounded.
    String(u32),
    /// `max_length` in bytes; 0 = unbounded.
    Bytes(u32),
    Decimal(DecimalSpec),
    Timestamp,
    Date,
    Time,
    DateTime,
    Geography,
    Json,
    Interval,
    /// A message `{start = 1, end = 2}` of the element type (fact sheet §4.1);
    /// the two fields are compiled like columns so objects reuse the STRUCT path.
    Range(Fields),
    Struct(Fields),
}

impl Ty {
    /// The BigQuery name, for error messages (`expected INT64`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Ty::Bool => "BOOL",
            Ty::Int64 => "INT64",
            Ty::Float64 => "FLOAT64",
            Ty::String(_) => "STRING",
            Ty::Bytes(_) => "BYTES",
            Ty::Decimal(d) if d.big => "BIGNUMERIC",
            Ty::Decimal(_) => "NUMERIC",
            Ty::Timestamp => "TIMESTAMP",
            Ty::Date => "DATE",
            Ty::Time => "TIME",
            Ty::DateTime => "DATETIME",
            Ty::Geography => "GEOGRAPHY",
            Ty::Json => "JSON",
            Ty::Interval => "INTERVAL",
            Ty::Range(..) => "RANGE",
            Ty::Struct(_) => "STRUCT",
        }
    }

    pub(crate) fn wire_type(&self) -> u32 {
        match self {
            Ty::Bool | Ty::Int64 | Ty::Timestamp | Ty::Date | Ty::Time | Ty::DateTime => WT_VARINT,
            Ty::Float64 => WT_FIXED64,
            _ => WT_LEN,
        }
    }
}

/// A precomputed proto field key (tag varint).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Key {
    bytes: [u8; 5],
    len: u8,
}

impl Key {
    pub(crate) fn new(number: u32, wire_type: u32) -> Self {
        let mut bytes = [0u8; 5];
        let mut v = (number << 3) | wire_type;
        let mut len = 0;
        for slot in bytes.iter_mut() {
            len += 1;
            if v < 0x80 {
                *slot = v as u8;
                break;
            }
            *slot = (v as u8 & 0x7f) | 0x80;
            v >>= 7;
        }
        Key { bytes, len }
    }

    /// The key's bytes (tests: what [`put`](Self::put) must write).
    #[cfg(test)]
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&self.bytes)
    }

    /// Appends the key: all five bytes, cut back to its length. A copy of a
    /// fixed size is a few moves; one of the key's own length was a libc
    /// memmove call, and this runs for every value of every row.
    #[inline]
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        let at = out.len();
        out.extend_from_slice(&self.bytes);
        out.truncate(at + usize::from(self.len));
    }

    /// The key, then `v` as a varint.
    #[inline]
    pub(crate) fn put_varint(&self, out: &mut Vec<u8>, v: u64) {
        self.put(out);
        super::wire::put_varint(out, v);
    }

    /// Starts a length-delimited field: see `wire::begin_len`.
    #[inline]
    pub(crate) fn begin_len(&self, out: &mut Vec<u8>) -> usize {
        super::wire::begin_len(out, self)
    }

    /// The key, the length and the bytes of a length-delimited field.
    #[inline]
    pub(crate) fn put_bytes(&self, out: &mut Vec<u8>, bytes: &[u8]) {
        super::wire::put_bytes(out, self, bytes);
    }
}

/// One column.
#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// The name as the table has it (errors, Arrow).
    pub name: String,
    /// The proto field name: lowercase identifier or `col_` placeholder.
    pub proto_name: String,
    /// 1..N in table order.
    pub number: u32,
    pub key: Key,
    pub mode: Mode,
    pub ty: Ty,
    /// Set for top-level `_kinesis_*` columns: filled from [`RecordMeta`](super::RecordMeta).
    pub meta: Option<MetaColumn>,
    /// The name as a JSON key spells it with no escape (no quote, backslash
    /// or control byte): the reader may match its raw bytes.
    pub plain_name: bool,
}

/// The columns of one message (the table, or a STRUCT).
#[derive(Clone, Debug, Default)]
pub(crate) struct Fields {
    pub fields: Vec<Field>,
    /// Lowercased name → index; only for wide messages, where a linear scan
    /// after a missed hint would cost more than hashing.
    by_name: Option<HashMap<Box<[u8]>, usize>>,
    /// Indexes of REQUIRED columns that come from JSON (not metadata).
    pub required: Vec<usize>,
    /// Indexes of metadata columns (top level only).
    pub meta: Vec<usize>,
}

/// Above this many columns a hash lookup backs up the in-order hint.
const LINEAR_SCAN_MAX: usize = 16;

impl Fields {
    /// The name of the column at `hint`, when a JSON key can spell it
    /// without escapes: the key the reader tries first.
    #[inline]
    pub(crate) fn expected_key(&self, hint: usize) -> Option<&[u8]> {
        self.fields.get(hint).filter(|f| f.plain_name).map(|f| f.name.as_bytes())
    }

    /// Finds a column by JSON key, ASCII case-insensitively (BigQuery column
    /// names are case-insensitive). `hint` is where the previous key matched
    /// plus one: JSON written from the same struct keeps schema order, so the
    /// first probe usually hits.
    #[inline]
    pub(crate) fn find(&self, key: &[u8], hint: usize) -> Option<usize> {
        // Exact spelling first: a memcmp, far cheaper than case folding.
        if let Some(f) = self.fields.get(hint)
            && (bytes_eq(f.name.as_bytes(), key) || f.name.as_bytes().eq_ignore_ascii_case(key))
        {
            return Some(hint);
        }
        match &self.by_name {
            None => self.fields.iter().position(|f| f.name.as_bytes().eq_ignore_ascii_case(key)),
            Some(map) => {
                let mut buf = [0u8; 64];
                if let Some(dst) = buf.get_mut(..key.len()) {
                    dst.copy_from_slice(key);
                    dst.make_ascii_lowercase();
                    map.get(&*dst).copied()
                } else {
                    map.get(key.to_ascii_lowercase().as_slice()).copied()
                }
            }
        }
    }
}

/// Byte equality without a libc `memcmp` call or a loop for short slices
/// (column names, JSON literals): profiling showed the call, then the
/// byte loop, dominating such compares. Up to 16 bytes it compares two
/// overlapping fixed-size words, which together cover every byte.
#[inline]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    #[inline]
    fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        s.get(at..at + N).and_then(|w| w.try_into().ok()).unwrap_or([0; N])
    }
    #[inline]
    fn ends<const N: usize>(a: &[u8], b: &[u8]) -> bool {
        let last = a.len() - N;
        word::<N>(a, 0) == word::<N>(b, 0) && word::<N>(a, last) == word::<N>(b, last)
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        // Bytes 0, n/2 and n-1 are every byte of a slice this short.
        1..=3 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
        4..=8 => ends::<4>(a, b),
        9..=16 => ends::<8>(a, b),
        _ => a == b,
    }
}

/// Compiles a table schema.
///
/// # Errors
/// [`SchemaError`] for an empty schema, an unknown type or mode, a RANGE
/// without a valid element type, parameters outside BigQuery's rules, duplicate
/// names, STRUCT nesting beyond 15 levels, or a `_kinesis_*` column of the wrong
/// type.
pub(crate) fn compile(schema: &TableSchema) -> Result<Fields, SchemaError> {
    if schema.fields.is_empty() {
        return Err(SchemaError::Empty);
    }
    compile_fields(&schema.fields, "", 0)
}

fn compile_fields(
    cols: &[TableFieldSchema],
    prefix: &str,
    depth: usize,
) -> Result<Fields, SchemaError> {
    let mut fields = Vec::with_capacity(cols.len());
    let mut seen: HashMap<String, ()> = HashMap::with_capacity(cols.len());
    for (i, col) in cols.iter().enumerate() {
        let path =
            if prefix.is_empty() { col.name.clone() } else { format!("{prefix}.{}", col.name) };
        let invalid = |why: String| SchemaError::Invalid { path: path.clone(), why };
        if col.name.is_empty() {
            return Err(invalid("empty column name".into()));
        }
        if seen.insert(col.name.to_ascii_lowercase(), ()).is_some() {
            return Err(invalid("duplicate column name (names are case-insensitive)".into()));
        }
        let mode = match tfs::Mode::try_from(col.mode) {
            Ok(tfs::Mode::Unspecified | tfs::Mode::Nullable) => Mode::Nullable,
            Ok(tfs::Mode::Required) => Mode::Required,
            Ok(tfs::Mode::Repeated) => Mode::Repeated,
            Err(_) => return Err(invalid(format!("unknown mode {}", col.mode))),
        };
        let ty = compile_type(col, &path, depth)?;
        let meta = if depth == 0 { MetaColumn::from_name(&col.name) } else { None };
        if let Some(m) = meta {
            check_meta(m, &ty, mode).map_err(|why| invalid(why.into()))?;
        }
        let number = u32::try_from(i + 1).map_err(|_| invalid("too many columns".into()))?;
        // Proto field numbers stop at 2^29 - 1 (protobuf language spec).
        if number >= 1 << 29 {
            return Err(invalid("too many columns".into()));
        }
        fields.push(Field {
            proto_name: proto_name(&col.name),
            key: Key::new(number, ty.wire_type()),
            plain_name: !col.name.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20),
            name: col.name.clone(),
            number,
            mode,
            ty,
            meta,
        });
    }
    let required = fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.mode == Mode::Required && f.meta.is_none())
        .map(|(i, _)| i)
        .collect();
    let meta =
        fields.iter().enumerate().filter(|(_, f)| f.meta.is_some()).map(|(i, _)| i).collect();
    let by_name = (fields.len() > LINEAR_SCAN_MAX).then(|| {
        fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.to_ascii_lowercase().into_bytes().into_boxed_slice(), i))
            .collect()
    });
    Ok(Fields { fields, by_name, required, meta })
}

fn compile_type(col: &TableFieldSchema, path: &str, depth: usize) -> Result<Ty, SchemaError> {
    let invalid = |why: String| SchemaError::Invalid { path: path.to_string(), why };
    let unsupported =
        |why| SchemaError::Unsupported { path: path.to_string(), type_code: col.r#type, why };
    let max_len = || u32::try_from(col.max_length.max(0)).unwrap_or(u32::MAX);
    let ty = match tfs::Type::try_from(col.r#type) {
        Ok(tfs::Type::String) => Ty::String(max_len()),
        Ok(tfs::Type::Bytes) => Ty::Bytes(max_len()),
        Ok(tfs::Type::Int64) => Ty::Int64,
        Ok(tfs::Type::Double) => Ty::Float64,
        Ok(tfs::Type::Bool) => Ty::Bool,
        Ok(tfs::Type::Timestamp) => {
            // Picosecond TIMESTAMP columns (precision 12) take ISO strings on the
            // wire (fact sheet §4.1); not implemented yet.
            if col.timestamp_precision.is_some_and(|p| p != 6) {
                return Err(unsupported("TIMESTAMP with picosecond precision"));
            }
            Ty::Timestamp
        }
        Ok(tfs::Type::Date) => Ty::Date,
        Ok(tfs::Type::Time) => Ty::Time,
        Ok(tfs::Type::Datetime) => Ty::DateTime,
        Ok(tfs::Type::Geography) => Ty::Geography,
        Ok(tfs::Type::Json) => Ty::Json,
        Ok(tfs::Type::Interval) => Ty::Interval,
        Ok(tfs::Type::Numeric) => Ty::Decimal(decimal_spec(col, false).map_err(invalid)?),
        Ok(tfs::Type::Bignumeric) => Ty::Decimal(decimal_spec(col, true).map_err(invalid)?),
        Ok(tfs::Type::Range) => {
            let code = col.range_element_type.map(|e| e.r#type).unwrap_or_default();
            if !matches!(
                tfs::Type::try_from(code),
                Ok(tfs::Type::Date | tfs::Type::Datetime | tfs::Type::Timestamp)
            ) {
                return Err(invalid("RANGE needs element type DATE, DATETIME or TIMESTAMP".into()));
            }
            let bound = |name: &str| TableFieldSchema {
                name: name.into(),
                r#type: code,
                mode: tfs::Mode::Nullable as i32,
                ..Default::default()
            };
            Ty::Range(compile_fields(&[bound("start"), bound("end")], path, depth + 1)?)
        }
        Ok(tfs::Type::Struct) => {
            if col.fields.is_empty() {
                return Err(invalid("STRUCT without fields".into()));
            }
            if depth + 1 >= MAX_DEPTH {
                return Err(invalid(format!("STRUCT nested deeper than {MAX_DEPTH} levels")));
            }
            Ty::Struct(compile_fields(&col.fields, path, depth + 1)?)
        }
        Ok(tfs::Type::Unspecified) | Err(_) => return Err(unsupported("unknown type")),
    };
    if !matches!(ty, Ty::Struct(_)) && !col.fields.is_empty() {
        return Err(invalid(format!("{} column with sub-fields", ty.name())));
    }
    Ok(ty)
}

/// Parameter rules from the fact sheet §1.3: NUMERIC 1 ≤ P−S ≤ 29, 0 ≤ S ≤ 9;
/// BIGNUMERIC 1 ≤ P−S ≤ 38, 0 ≤ S ≤ 38. Unparameterized (P = 0) takes the
/// type's full range.
fn decimal_spec(col: &TableFieldSchema, big: bool) -> Result<DecimalSpec, String> {
    let (wire_scale, max_int) = if big { (38u32, 38i64) } else { (9u32, 29i64) };
    if col.precision == 0 {
        if col.scale != 0 {
            return Err("scale without precision".into());
        }
        // BIGNUMERIC's integer part may reach 39 digits (5.7e38); the 256-bit
        // range check decides the edge.
        let int_digits = if big { 39 } else { 29 };
        return Ok(DecimalSpec { wire_scale, scale: wire_scale, int_digits, big });
    }
    let (p, s) = (col.precision, col.scale);
    if !(0..=i64::from(wire_scale)).contains(&s) || !(1..=max_int).contains(&(p - s)) {
        return Err(format!("precision {p} / scale {s} outside the type's limits"));
    }
    let (scale, int_digits) = (u32::try_from(s).unwrap_or(0), u32::try_from(p - s).unwrap_or(0));
    Ok(DecimalSpec { wire_scale, scale, int_digits, big })
}

fn check_meta(m: MetaColumn, ty: &Ty, mode: Mode) -> Result<(), &'static str> {
    let ok = match m {
        MetaColumn::SequenceNumber | MetaColumn::PartitionKey | MetaColumn::ShardId => {
            matches!(ty, Ty::String(_))
        }
        MetaColumn::SubSequenceNumber => matches!(ty, Ty::Int64),
        MetaColumn::ApproximateArrival => matches!(ty, Ty::Timestamp),
    };
    if !ok {
        return Err("Kinesis metadata column has the wrong type (see docs/coercions.md)");
    }
    if mode == Mode::Repeated {
        return Err("Kinesis metadata column cannot be REPEATED");
    }
    Ok(())
}

/// The proto field name for a column: the lowercased name when it is a proto
/// identifier (as Java's adapter does), else `col_` + URL-safe base64 of the
/// UTF-8 name without padding, `-` replaced by `_` — Google's placeholder
/// (java-bigquerystorage `BigQuerySchemaUtil.generatePlaceholderFieldName`),
/// whose true name travels in the `column_name` field option.
pub(crate) fn proto_name(name: &str) -> String {
    if is_proto_identifier(name) {
        return name.to_ascii_lowercase();
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name.as_bytes());
    format!("col_{}", b64.replace('-', "_"))
}

/// `[A-Za-z_][A-Za-z0-9_]*` (protobuf language spec, identifiers).
pub(crate) fn is_proto_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A column for unit tests anywhere in the crate (emulator ones included).
#[cfg(test)]
pub(crate) fn test_column(
    name: &str,
    ty: tfs::Type,
    mode: tfs::Mode,
    fields: Vec<TableFieldSchema>,
) -> TableFieldSchema {
    TableFieldSchema {
        name: name.into(),
        r#type: ty as i32,
        mode: mode as i32,
        fields,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: tfs::Type, mode: tfs::Mode) -> TableFieldSchema {
        test_column(name, ty, mode, vec![])
    }

    #[test]
    fn placeholder_names_match_google() {
        // Expected values from java-bigquerystorage BigQuerySchemaUtilTest.
        assert_eq!(proto_name("str-列"), "col_c3RyLeWIlw");
        assert_eq!(proto_name("~/~/"), "col_fi9_Lw");
        assert_eq!(proto_name("Name_1"), "name_1");
        for bad in ["0_col", "()", "列", "a-1", ""] {
            assert!(!is_proto_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn keys_are_varints() {
        assert_eq!(Key::new(1, WT_VARINT).as_slice(), &[0x08]);
        assert_eq!(Key::new(16, WT_LEN).as_slice(), &[0x82, 0x01]);
    }

    #[test]
    fn bytes_eq_matches_slice_eq() {
        let samples: [&[u8]; 7] = [
            b"",
            b"a",
            b"abcdefgh",
            b"abcdefgi",
            b"abcdefghijklmnopq",
            b"x".as_slice(),
            &[b'y'; 40],
        ];
        for a in samples {
            for b in samples {
                assert_eq!(bytes_eq(a, b), a == b);
            }
        }
        // Every length up to 40, differing in any one byte.
        for n in 0..40usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(bytes_eq(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!bytes_eq(&a, &b), "{n} {i}");
            }
        }
        assert!(!bytes_eq(b"abcdefghijklmnopq", b"abcdefghijklmnopr"));
    }

    #[test]
    fn finds_case_insensitively_narrow_and_wide() {
        for n in [3usize, 40] {
            let cols: Vec<_> = (0..n)
                .map(|i| col(&format!("Col{i}"), tfs::Type::Int64, tfs::Mode::Nullable))
                .collect();
            let f = compile(&TableSchema { fields: cols }).unwrap();
            assert_eq!(f.find(b"col2", 0), Some(2));
            assert_eq!(f.find(b"COL2", 2), Some(2));
            assert_eq!(f.find(b"col99", 0), None);
            assert_eq!(f.find(&[b'x'; 100], 0), None);
        }
    }

    #[test]
    fn rejects_bad_schemas() {
        let bad = |c: TableFieldSchema| compile(&TableSchema { fields: vec![c] }).unwrap_err();
        assert!(matches!(
            bad(col("r", tfs::Type::Range, tfs::Mode::Nullable)),
            SchemaError::Invalid { .. }
        ));
        assert!(matches!(
            bad(col("s", tfs::Type::Struct, tfs::Mode::Nullable)),
            SchemaError::Invalid { .. }
        ));
        assert!(matches!(
            bad(col("_kinesis_shard_id", tfs::Type::Int64, tfs::Mode::Nullable)),
            SchemaError::Invalid { .. }
        ));
        let mut n = col("n", tfs::Type::Numeric, tfs::Mode::Nullable);
        n.precision = 40;
        n.scale = 2;
        assert!(matches!(bad(n), SchemaError::Invalid { .. }));
        let dup = TableSchema {
            fields: vec![
                col("a", tfs::Type::Int64, tfs::Mode::Nullable),
                col("A", tfs::Type::Bool, tfs::Mode::Nullable),
            ],
        };
        assert!(compile(&dup).is_err());
        assert_eq!(compile(&TableSchema::default()).unwrap_err(), SchemaError::Empty);
    }
}
