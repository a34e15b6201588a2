//! JSON record bytes → one serialized proto2 row, in a single pass: the
//! encoder walks the JSON with the pull [`Reader`] and the compiled schema
//! side by side and writes wire bytes directly (no JSON tree, no message
//! object). This is the one place the coercion rules of docs/coercions.md live.
//!
//! Guarantees: a row it returns has every REQUIRED column, each column at
//! most once, and only values BigQuery accepts for the column's type; any
//! other input is a [`RowError`] naming the field path, never a panic.

use std::cell::Cell;

use super::UnknownFields;
use super::error::{RowError, RowErrorKind};
use super::json::{JsonError, Kind, Reader};
use super::meta::{MetaColumn, RecordMeta};
use super::scalar::encode_value;
use super::schema::{Field, Fields, Mode};
use super::values::time;

/// A failure on its way up: the path is collected innermost first, so the
/// success path never builds strings.
pub(crate) struct Fail {
    kind: RowErrorKind,
    message: String,
    rev_path: Vec<Seg>,
}

pub(super) enum Seg {
    Name(String),
    Index(usize),
}

pub(super) type R<T> = Result<T, Box<Fail>>;

pub(super) fn fail<T>(kind: RowErrorKind, message: impl Into<String>) -> R<T> {
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

pub(super) trait At<T> {
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
    pub(super) r: Reader<'j>,
    pub(super) scratch: Vec<u8>,
    pub(super) bytes: Vec<u8>,
    unknown: UnknownFields,
    /// Arrow mode: also refuse what decimal256(76, 38) cannot hold.
    pub(super) arrow: bool,
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
    let (scratch, bytes) = SCRATCH.take();
    let mut cx = Ctx { r: Reader::new(json), scratch, bytes, unknown, arrow };
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
    let res = run(&mut cx, out).map_err(|f| f.into_row_error());
    if cx.scratch.capacity().max(cx.bytes.capacity()) <= SCRATCH_KEPT {
        SCRATCH.set((cx.scratch, cx.bytes));
    }
    res
}

thread_local! {
    /// [`Ctx`]'s scratch buffers, kept between records on this thread: a
    /// record with an escaped string (or BYTES) no longer pays an
    /// allocation and its free. Both are cleared before each use.
    static SCRATCH: Cell<(Vec<u8>, Vec<u8>)> = const { Cell::new((Vec::new(), Vec::new())) };
}

/// The largest scratch buffer kept: one huge record's buffer is dropped.
const SCRATCH_KEPT: usize = 64 * 1024;

fn encode_meta(fields: &Fields, meta: &RecordMeta, out: &mut Vec<u8>) -> R<()> {
    for &i in &fields.meta {
        let Some(f) = fields.fields.get(i) else { continue };
        let at = || Seg::Name(f.name.clone());
        match f.meta {
            Some(MetaColumn::SequenceNumber) => {
                f.key.put_bytes(out, meta.sequence_number.as_bytes())
            }
            Some(MetaColumn::PartitionKey) => f.key.put_bytes(out, meta.partition_key.as_bytes()),
            Some(MetaColumn::ShardId) => f.key.put_bytes(out, meta.shard_id.as_bytes()),
            Some(MetaColumn::SubSequenceNumber) => {
                let Ok(v) = i64::try_from(meta.sub_sequence_number) else {
                    return fail(RowErrorKind::Metadata, "sub-sequence number exceeds INT64")
                        .at(at);
                };
                f.key.put_varint(out, v as u64);
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
                    f.key.put_varint(out, us as u64);
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
pub(super) fn encode_message(cx: &mut Ctx, fields: &Fields, out: &mut Vec<u8>) -> R<()> {
    cx.r.begin_object()?;
    let mut seen = Seen::new(fields.fields.len());
    let mut first = true;
    let mut hint = 0;
    loop {
        let key_at = cx.r.pos();
        // Keys mostly come in table order, spelled as the table does: try
        // the next column's name before scanning the key.
        let expected = fields.expected_key(hint);
        let found = if let Some(name) = expected
            && cx.r.take_key(&mut first, name)?
        {
            Ok(hint)
        } else {
            let Some(key) = cx.r.next_key(&mut first, &mut cx.scratch)? else { break };
            // A key that matched a column is that column's (UTF-8) name; others
            // are checked here.
            fields.find(key, hint).ok_or_else(|| std::str::from_utf8(key).map(str::to_owned))
        };
        let i = match found {
            Ok(i) => i,
            Err(Err(_)) => {
                return Err(JsonError { offset: key_at, what: "invalid UTF-8 in key" }.into());
            }
            Err(Ok(name)) => {
                let refuse = match cx.unknown {
                    UnknownFields::Reject => true,
                    UnknownFields::Ignore => false,
                    // A null adds no column: skip it like an absent field.
                    UnknownFields::Add => cx.r.peek()? != Kind::Null,
                };
                if refuse {
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
