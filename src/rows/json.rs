//! A small zero-copy JSON pull reader over `&[u8]` (RFC 8259), for the
//! encoder's hot path: the encoder walks the table schema and asks for the
//! next key or value, so no JSON tree is ever built.
//!
//! Guarantees: every byte it accepts is valid JSON and valid UTF-8 (strings
//! are checked, including those it skips); strings without escapes come back
//! borrowed from the input; it never recurses (skipping nested values keeps
//! an explicit stack, capped at [`MAX_DEPTH`]) and never panics.

/// Nesting cap for skipped or captured values; serde_json's default
/// recursion limit is 128, so anything it parses passes here.
pub(crate) const MAX_DEPTH: usize = 512;

/// Where and why the input is not JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub offset: usize,
    pub what: &'static str,
}

/// The kind of the next value, seen without consuming it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    /// How the JSON type reads in an error message (`got a string`).
    pub(crate) fn article(self) -> &'static str {
        match self {
            Kind::Object => "an object",
            Kind::Array => "an array",
            Kind::String => "a string",
            Kind::Number => "a number",
            Kind::Bool => "a boolean",
            Kind::Null => "null",
        }
    }
}

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// `buf[utf8_from..]` is known to be UTF-8 (see [`Reader::tail_is_utf8`]).
    utf8_from: usize,
    /// Whether the tail check ran (it runs at most once per input).
    utf8_tried: bool,
}

type Res<T> = Result<T, JsonError>;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, utf8_from: buf.len(), utf8_tried: false }
    }

    /// Whether `buf[start..]` is known to be UTF-8, `start` being just past
    /// an opening quote. The first string with non-ASCII bytes checks the
    /// whole rest of the input in one vectorised pass (text-heavy records
    /// have many short strings, each too short for the vector path); every
    /// later string inside it is then UTF-8 too, since it starts and ends
    /// beside ASCII bytes. If the rest is not UTF-8, each string is checked
    /// on its own, so errors name the same string as before.
    #[inline]
    fn tail_is_utf8(&mut self, start: usize) -> bool {
        if start >= self.utf8_from {
            return true;
        }
        if self.utf8_tried {
            return false;
        }
        self.utf8_tried = true;
        let tail = self.buf.get(start..).unwrap_or_default();
        let ok = simdutf8::basic::from_utf8(tail).is_ok();
        if ok {
            self.utf8_from = start;
        }
        ok
    }

    /// The byte offset of the cursor.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn err<T>(&self, what: &'static str) -> Res<T> {
        Err(JsonError { offset: self.pos, what })
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(&b) = self.buf.get(self.pos) {
            if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                break;
            }
            self.pos += 1;
        }
    }

    #[inline]
    fn peek_byte(&mut self) -> Res<u8> {
        self.skip_ws();
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => self.err("unexpected end of input"),
        }
    }

    /// The kind of the next value (whitespace skipped, nothing consumed).
    #[inline]
    pub(crate) fn peek(&mut self) -> Res<Kind> {
        Ok(match self.peek_byte()? {
            b'{' => Kind::Object,
            b'[' => Kind::Array,
            b'"' => Kind::String,
            b'-' | b'0'..=b'9' => Kind::Number,
            b't' | b'f' => Kind::Bool,
            b'n' => Kind::Null,
            _ => return self.err("expected a JSON value"),
        })
    }

    #[inline]
    fn literal(&mut self, word: &'static [u8]) -> Res<()> {
        match self.buf.get(self.pos..self.pos + word.len()) {
            Some(s) if super::schema::bytes_eq(s, word) => {
                self.pos += word.len();
                Ok(())
            }
            _ => self.err("invalid literal"),
        }
    }

    pub(crate) fn read_null(&mut self) -> Res<()> {
        self.skip_ws();
        self.literal(b"null")
    }

    pub(crate) fn read_bool(&mut self) -> Res<bool> {
        match self.peek_byte()? {
            b't' => self.literal(b"true").map(|()| true),
            b'f' => self.literal(b"false").map(|()| false),
            _ => self.err("expected a boolean"),
        }
    }

    /// A number's exact text, checked against the JSON grammar.
    pub(crate) fn read_number(&mut self) -> Res<&'a str> {
        let at = self.pos;
        // Only ASCII digits, signs, '.', 'e' get past the grammar.
        std::str::from_utf8(self.read_number_bytes()?)
            .map_err(|_| JsonError { offset: at, what: "invalid number" })
    }

    /// [`read_number`](Self::read_number) as bytes (all ASCII), for parsers
    /// that need no `str`.
    pub(crate) fn read_number_bytes(&mut self) -> Res<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        let b = self.buf;
        let at = |i: usize| b.get(i).copied().unwrap_or(0);
        let mut i = start;
        if at(i) == b'-' {
            i += 1;
        }
        match at(i) {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while at(i).is_ascii_digit() {
                    i += 1;
                }
            }
            _ => {
                self.pos = i;
                return self.err("invalid number");
            }
        }
        if at(i) == b'.' {
            i += 1;
            if !at(i).is_ascii_digit() {
                self.pos = i;
                return self.err("invalid number: digit expected after '.'");
            }
            while at(i).is_ascii_digit() {
                i += 1;
            }
        }
        if matches!(at(i), b'e' | b'E') {
            i += 1;
            if matches!(at(i), b'+' | b'-') {
                i += 1;
            }
            if !at(i).is_ascii_digit() {
                self.pos = i;
                return self.err("invalid number: digit expected in exponent");
            }
            while at(i).is_ascii_digit() {
                i += 1;
            }
        }
        self.pos = i;
        match b.get(start..i) {
            Some(s) => Ok(s),
            None => self.err("invalid number"),
        }
    }

    /// A string's contents: borrowed from the input when it has no escapes,
    /// else decoded into `scratch` (cleared first).
    #[inline]
    pub(crate) fn read_str<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Res<&'s str>
    where
        'a: 's,
    {
        let at = self.pos;
        // One UTF-8 check on the raw run (not read_str_bytes' check and then this).
        let (bytes, _) = self.read_raw(scratch)?;
        simdutf8::basic::from_utf8(bytes)
            .map_err(|_| JsonError { offset: at, what: "invalid UTF-8 in string" })
    }

    /// A string's contents as bytes, checked to be UTF-8 (no check when the
    /// scan saw only ASCII, which is always UTF-8; a vectorised one otherwise).
    #[inline]
    pub(crate) fn read_str_bytes<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Res<&'s [u8]>
    where
        'a: 's,
    {
        let at = self.pos;
        let (raw, valid) = self.read_raw(scratch)?;
        if valid || simdutf8::basic::from_utf8(raw).is_ok() {
            Ok(raw)
        } else {
            Err(JsonError { offset: at, what: "invalid UTF-8 in string" })
        }
    }

    /// The input from the number at the cursor (whitespace skipped) to its
    /// end, for a parser that reads a short number where it stands, then
    /// calls [`take_number`](Self::take_number).
    #[inline]
    pub(crate) fn number_body(&mut self) -> &'a [u8] {
        self.skip_ws();
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Consumes the `len` bytes of [`number_body`](Self::number_body) that
    /// the caller has seen to be one whole JSON number.
    #[inline]
    pub(crate) fn take_number(&mut self, len: usize) {
        self.pos += len;
    }

    /// The bytes after the opening quote of the string at the cursor
    /// (whitespace skipped), through the end of the input; `None` if the
    /// next value is not a string. For a parser that finds a short value's
    /// closing quote in the pass that reads it, then calls
    /// [`take_str_body`](Self::take_str_body).
    #[inline]
    pub(crate) fn str_body(&mut self) -> Option<&'a [u8]> {
        self.skip_ws();
        match self.buf.get(self.pos..) {
            Some([b'"', body @ ..]) => Some(body),
            _ => None,
        }
    }

    /// Consumes the string whose [`str_body`](Self::str_body) has `len`
    /// bytes before its closing quote. The caller has seen those bytes to be
    /// printable ASCII without a `\\` or `"` (so the string is valid JSON and
    /// UTF-8, with no escape to decode) and the quote after them.
    #[inline]
    pub(crate) fn take_str_body(&mut self, len: usize) {
        self.pos += len + 2;
    }

    /// A string's raw bytes, NOT checked for UTF-8 when unescaped: for object
    /// keys, which are compared with column names (valid UTF-8) and checked
    /// only when they match none. Escaped strings are always checked.
    #[inline]
    fn read_key_bytes<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Res<&'s [u8]>
    where
        'a: 's,
    {
        self.read_raw(scratch).map(|(raw, _)| raw)
    }

    /// [`read_key_bytes`](Self::read_key_bytes), and whether the bytes are
    /// known to be UTF-8 (all ASCII, inside a tail checked by
    /// [`tail_is_utf8`](Self::tail_is_utf8), or decoded from escapes and checked).
    #[inline]
    fn read_raw<'s>(&mut self, scratch: &'s mut Vec<u8>) -> Res<(&'s [u8], bool)>
    where
        'a: 's,
    {
        if self.peek_byte()? != b'"' {
            return self.err("expected a string");
        }
        self.pos += 1;
        let start = self.pos;
        let (end, escaped, ascii) = self.scan_plain();
        match self.buf.get(end) {
            Some(b'"') if !escaped => {
                self.pos = end + 1;
                let raw = self.buf.get(start..end).unwrap_or_default();
                Ok((raw, ascii || self.tail_is_utf8(start)))
            }
            _ => {
                scratch.clear();
                // Room for the rest of the record (up to a page) up front,
                // not a reallocation each time the decoded text doubles
                // (nothing once the caller's kept scratch has grown).
                scratch.reserve(self.buf.len().saturating_sub(start).min(4096));
                self.pos = start;
                self.decode_escaped(scratch)?;
                Ok((scratch.as_slice(), true))
            }
        }
    }

    /// Consumes `{`.
    pub(crate) fn begin_object(&mut self) -> Res<()> {
        if self.peek_byte()? != b'{' {
            return self.err("expected an object");
        }
        self.pos += 1;
        Ok(())
    }

    /// The next key of an object (and its `:`), or `None` at `}`. `first`
    /// tracks whether a comma is due; start it at `true`. The key's bytes are
    /// UTF-8-checked only when escaped: a caller keeping an unmatched key checks it.
    #[inline]
    pub(crate) fn next_key<'s>(
        &mut self,
        first: &mut bool,
        scratch: &'s mut Vec<u8>,
    ) -> Res<Option<&'s [u8]>>
    where
        'a: 's,
    {
        let b = self.peek_byte()?;
        if b == b'}' {
            self.pos += 1;
            return Ok(None);
        }
        if !*first {
            if b != b',' {
                return self.err("expected ',' or '}'");
            }
            self.pos += 1;
        }
        *first = false;
        let key = self.read_key_bytes(scratch)?;
        if self.peek_byte()? != b':' {
            return self.err("expected ':'");
        }
        self.pos += 1;
        Ok(Some(key))
    }

    /// Consumes the next key (and its `:`) only if it is `name` spelled
    /// exactly, without escapes — the key the caller expects, matched
    /// without scanning. Otherwise the cursor stays, for [`next_key`](Self::next_key).
    #[inline]
    pub(crate) fn take_key(&mut self, first: &mut bool, name: &[u8]) -> Res<bool> {
        let save = self.pos;
        let mut at = self.pos;
        if !*first {
            if self.peek_byte()? != b',' {
                return Ok(false);
            }
            at = self.pos + 1;
        }
        self.pos = at;
        self.skip_ws();
        let open = self.pos;
        let close = open + 1 + name.len();
        let matches = self.buf.get(open) == Some(&b'"')
            && self.buf.get(close) == Some(&b'"')
            && self.buf.get(open + 1..close).is_some_and(|raw| super::schema::bytes_eq(raw, name));
        if !matches {
            self.pos = save;
            return Ok(false);
        }
        self.pos = close + 1;
        if self.peek_byte()? != b':' {
            return self.err("expected ':'");
        }
        self.pos += 1;
        *first = false;
        Ok(true)
    }

    /// Consumes `[`.
    pub(crate) fn begin_array(&mut self) -> Res<()> {
        if self.peek_byte()? != b'[' {
            return self.err("expected an array");
        }
        self.pos += 1;
        Ok(())
    }

    /// Whether another element follows (consuming its `,`), or `false` at `]`.
    #[inline]
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Res<bool> {
        let b = self.peek_byte()?;
        if b == b']' {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return self.err("expected ',' or ']'");
            }
            self.pos += 1;
        }
        *first = false;
        Ok(true)
    }

    /// Skips one value of any kind, checking it fully, and returns its text.
    /// Allocates nothing: open containers are bits of a fixed set, strings
    /// are checked in place.
    pub(crate) fn skip_value(&mut self) -> Res<&'a [u8]> {
        self.skip_ws();
        let start = self.pos;
        // Bit d set: the container at depth d is an object (else an array).
        let mut objects = [0u64; MAX_DEPTH / 64];
        let mut depth = 0usize;
        // Whether the innermost open container is still empty.
        let mut first = false;
        loop {
            // At a value position.
            match self.peek_byte()? {
                c @ (b'{' | b'[') => {
                    if depth >= MAX_DEPTH {
                        return self.err("nested too deeply");
                    }
                    if let Some(w) = objects.get_mut(depth / 64) {
                        let bit = 1u64 << (depth % 64);
                        if c == b'{' { *w |= bit } else { *w &= !bit }
                    }
                    depth += 1;
                    self.pos += 1;
                    first = true;
                }
                b'"' => self.skip_str("invalid UTF-8 in string")?,
                b'-' | b'0'..=b'9' => {
                    self.read_number_bytes()?;
                }
                b't' | b'f' => {
                    self.read_bool()?;
                }
                b'n' => self.read_null()?,
                _ => return self.err("expected a JSON value"),
            }
            // Close finished containers, then move to the next value position.
            loop {
                let Some(top) = depth.checked_sub(1) else {
                    return Ok(self.buf.get(start..self.pos).unwrap_or_default());
                };
                let obj = objects.get(top / 64).is_some_and(|w| w & (1u64 << (top % 64)) != 0);
                let more =
                    if obj { self.skip_key(&mut first)? } else { self.next_element(&mut first)? };
                if more {
                    break;
                }
                depth = top;
                // The parent holds at least the container just closed.
                first = false;
            }
        }
    }

    /// [`next_key`](Self::next_key) for a skipped object: the key is
    /// checked, not returned.
    fn skip_key(&mut self, first: &mut bool) -> Res<bool> {
        let at = self.pos;
        let b = self.peek_byte()?;
        if b == b'}' {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            if b != b',' {
                return self.err("expected ',' or '}'");
            }
            self.pos += 1;
        }
        *first = false;
        if self.peek_byte()? != b'"' {
            return self.err("expected a string");
        }
        self.skip_str("invalid UTF-8 in key").map_err(|e| match e.what {
            "invalid UTF-8 in key" => JsonError { offset: at, ..e },
            _ => e,
        })?;
        if self.peek_byte()? != b':' {
            return self.err("expected ':'");
        }
        self.pos += 1;
        Ok(true)
    }

    /// After the top-level value: only whitespace may remain.
    pub(crate) fn finish(&mut self) -> Res<()> {
        self.skip_ws();
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            self.err("trailing data after the JSON value")
        }
    }
}

mod scan;

// Tests live beside (json/tests.rs): this file holds the reader only.
#[cfg(test)]
mod tests;
