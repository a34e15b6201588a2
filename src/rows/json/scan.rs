//! The reader's string scanning: finding a string's end (sixteen bytes
//! at a time with SSE2, eight without), skipping a string with its checks,
//! and decoding escapes. Split from `json.rs` so the reader's grammar and
//! its byte-level hot loop can each be read on their own.

use super::{JsonError, Reader, Res};

/// [`Reader::scan_plain`]'s SSE2 loop: from `*i`, sixteen bytes at a time
/// while sixteen remain. At a quote, backslash or control byte it returns
/// what `scan_plain` returns; otherwise it leaves `*i` at the first byte
/// not scanned and ORs the high bits seen into `*high` (nonzero: not ASCII).
#[cfg(target_arch = "x86_64")]
#[inline]
fn scan16(b: &[u8], i: &mut usize, high: &mut u64) -> Option<(usize, bool, bool)> {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    while let Some(chunk) = b.get(*i..*i + 16) {
        // SAFETY: SSE2 is part of the x86_64 baseline, so its intrinsics may
        // run on any x86_64 CPU; `chunk` is 16 readable bytes and `loadu`
        // has no alignment requirement.
        let (stops, highs) = unsafe {
            let x = _mm_loadu_si128(chunk.as_ptr().cast());
            // A control byte is one that min(x, 0x1f) leaves unchanged (unsigned).
            let ctrl = _mm_cmpeq_epi8(_mm_min_epu8(x, _mm_set1_epi8(0x1f)), x);
            let quote = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'"' as i8));
            let slash = _mm_cmpeq_epi8(x, _mm_set1_epi8(b'\\' as i8));
            let stop = _mm_or_si128(_mm_or_si128(quote, slash), ctrl);
            (_mm_movemask_epi8(stop) as u32, _mm_movemask_epi8(x) as u32)
        };
        if stops != 0 {
            let n = stops.trailing_zeros();
            let at = *i + n as usize;
            // Only the bytes below the stop count.
            *high |= u64::from(highs & ((1u32 << n) - 1));
            return Some((at, b.get(at) != Some(&b'"'), *high == 0));
        }
        *high |= u64::from(highs);
        *i += 16;
    }
    None
}

impl Reader<'_> {
    /// Skips the string at the cursor (whitespace skipped, at its opening
    /// quote), checking escapes and UTF-8 as [`read_str`](Self::read_str)
    /// does, without decoding or copying: escapes are ASCII, so the raw text
    /// is UTF-8 exactly when the decoded text is.
    pub(super) fn skip_str(&mut self, bad_utf8: &'static str) -> Res<()> {
        let at = self.pos;
        self.pos += 1;
        let start = self.pos;
        let mut all_ascii = true;
        loop {
            let (end, escaped, ascii) = self.scan_plain();
            all_ascii &= ascii;
            self.pos = end;
            match self.buf.get(end) {
                Some(b'"') if !escaped => break,
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape()?;
                }
                Some(_) => return self.err("control character in string"),
                None => return self.err("unterminated string"),
            }
        }
        let raw = self.buf.get(start..self.pos).unwrap_or_default();
        self.pos += 1;
        if !all_ascii && !self.tail_is_utf8(start) && simdutf8::basic::from_utf8(raw).is_err() {
            return Err(JsonError { offset: at, what: bad_utf8 });
        }
        Ok(())
    }

    /// Scans from `pos` to the first `"`, `\` or control byte. Returns its
    /// index, whether it is an escape (or control byte) rather than the
    /// closing quote, and whether the bytes before it are all ASCII. UTF-8
    /// is checked by the caller on the whole run when they are not.
    #[inline]
    pub(super) fn scan_plain(&self) -> (usize, bool, bool) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let b = self.buf;
        let mut i = self.pos;
        let mut high = 0u64;
        // Sixteen bytes at a time where SSE2 is (every x86_64): half the
        // iterations of the word loop below, which long text spends most
        // of its time in, and a string of 8 to 15 bytes ends in one.
        #[cfg(target_arch = "x86_64")]
        if let Some(stop) = scan16(b, &mut i, &mut high) {
            return stop;
        }
        // Eight bytes at a time. Each test flags its first hit exactly (false
        // flags appear only above a true one), so the lowest flag is the stop.
        while let Some(chunk) = b.get(i..i + 8) {
            let mut arr = [0u8; 8];
            arr.copy_from_slice(chunk);
            let x = u64::from_le_bytes(arr);
            let quote = x ^ (ONES * u64::from(b'"'));
            let slash = x ^ (ONES * u64::from(b'\\'));
            let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
            let ctrl = x.wrapping_sub(ONES * 0x20) & !x & HIGH;
            let hit = has_zero(quote) | has_zero(slash) | ctrl;
            if hit != 0 {
                let n = hit.trailing_zeros() / 8;
                let at = i + n as usize;
                // Only the bytes below the stop count.
                let below = (1u64 << (n * 8)).wrapping_sub(1);
                high |= x & HIGH & below;
                return (at, b.get(at) != Some(&b'"'), high == 0);
            }
            high |= x & HIGH;
            i += 8;
        }
        let mut ascii = high == 0;
        while let Some(&c) = b.get(i) {
            match c {
                b'"' => return (i, false, ascii),
                b'\\' | 0..=0x1f => return (i, true, ascii),
                _ => ascii &= c < 0x80,
            }
            i += 1;
        }
        (i, true, ascii)
    }

    /// The plain-word reference of [`scan_plain`](Self::scan_plain), for tests.
    #[cfg(test)]
    pub(super) fn scan_plain_naive(&self) -> (usize, bool, bool) {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
        let end = n.map_or(self.buf.len(), |n| self.pos + n);
        let ascii = rest.get(..end - self.pos).is_some_and(<[u8]>::is_ascii);
        (end, self.buf.get(end) != Some(&b'"'), ascii)
    }

    /// Decodes a string body with escapes from `pos` (after the opening
    /// quote) through the closing quote into `bytes`, checked to be UTF-8
    /// (escapes decode to whole characters, so only non-ASCII runs between
    /// them need the check).
    pub(super) fn decode_escaped(&mut self, bytes: &mut Vec<u8>) -> Res<()> {
        let start = self.pos;
        let mut ascii = true;
        loop {
            let (end, escaped, run_ascii) = self.scan_plain();
            ascii &= run_ascii;
            bytes.extend_from_slice(self.buf.get(self.pos..end).unwrap_or_default());
            self.pos = end;
            match self.buf.get(end) {
                Some(b'"') if !escaped => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let ch = self.escape()?;
                    // Most escapes are ASCII (\n, \", \\): one push, not
                    // a UTF-8 encode and a slice copy.
                    if ch.is_ascii() {
                        bytes.push(ch as u8);
                    } else {
                        let mut tmp = [0u8; 4];
                        bytes.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                    }
                }
                Some(_) => return self.err("control character in string"),
                None => return self.err("unterminated string"),
            }
        }
        if ascii || self.tail_is_utf8(start) || simdutf8::basic::from_utf8(bytes).is_ok() {
            Ok(())
        } else {
            self.err("invalid UTF-8 in string")
        }
    }

    /// The character of the escape after a `\\` (surrogate pairs joined).
    pub(super) fn escape(&mut self) -> Res<char> {
        let Some(&c) = self.buf.get(self.pos) else { return self.err("unterminated escape") };
        self.pos += 1;
        let simple = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = self.hex4()?;
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    if self.buf.get(self.pos..self.pos + 2) != Some(b"\\u") {
                        return self.err("unpaired surrogate");
                    }
                    self.pos += 2;
                    let lo = self.hex4()?;
                    if !(0xDC00..0xE000).contains(&lo) {
                        return self.err("unpaired surrogate");
                    }
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                } else if (0xDC00..0xE000).contains(&hi) {
                    return self.err("unpaired surrogate");
                } else {
                    hi
                };
                return match char::from_u32(cp) {
                    Some(ch) => Ok(ch),
                    None => self.err("invalid escape"),
                };
            }
            _ => return self.err("invalid escape"),
        };
        Ok(char::from(simple))
    }

    pub(super) fn hex4(&mut self) -> Res<u32> {
        let Some(h) = self.buf.get(self.pos..self.pos + 4) else {
            return self.err("short \\u escape");
        };
        let mut v = 0u32;
        for &d in h {
            let n = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return self.err("invalid \\u escape"),
            };
            v = (v << 4) | u32::from(n);
        }
        self.pos += 4;
        Ok(v)
    }
}
