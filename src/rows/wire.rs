//! Protobuf wire-format writing and reading for the row bytes we produce
//! (protobuf encoding spec: varints, fixed64, length-delimited).

use super::schema::Key;

/// `v` as a varint. One byte (most lengths, many integers) is a push; up
/// to eight (values below 2^56: timestamps, lengths, most integers) are
/// spread into a `u64` in registers and written as one 8-byte copy, cut
/// back to their length. Built in a byte array instead, the bytes were
/// stored one by one and then loaded as a word, a store-forwarding stall
/// that was most of this function's time. Longer varints (negative
/// integers) take a loop.
#[inline]
pub(crate) fn put_varint(out: &mut Vec<u8>, v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    if v >= 1 << 56 {
        return put_long_varint(out, v);
    }
    let mut spread = 0u64;
    for i in 0..8 {
        spread |= ((v >> (7 * i)) & 0x7f) << (8 * i);
    }
    let n = varint_len(v);
    // Continuation bits on every byte but the last (n is 2..=8 here).
    spread |= 0x8080_8080_8080_8080 & ((1u64 << (8 * (n - 1))) - 1);
    let at = out.len();
    out.extend_from_slice(&spread.to_le_bytes());
    out.truncate(at + n);
}

/// A varint of 9 or 10 bytes.
#[cold]
fn put_long_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
pub(crate) fn put_key(out: &mut Vec<u8>, key: &Key) {
    key.put(out);
}

/// Key, length and bytes of a length-delimited field.
#[inline]
pub(crate) fn put_bytes(out: &mut Vec<u8>, key: &Key, bytes: &[u8]) {
    put_key(out, key);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Starts a length-delimited field whose length is not known yet: one byte
/// is reserved, [`end_len`] widens it if the body turns out longer.
#[inline]
pub(crate) fn begin_len(out: &mut Vec<u8>, key: &Key) -> usize {
    put_key(out, key);
    out.push(0);
    out.len()
}

#[inline]
pub(crate) fn end_len(out: &mut Vec<u8>, body_start: usize) {
    let len = out.len() - body_start;
    if len < 0x80 {
        if let Some(b) = out.get_mut(body_start - 1) {
            *b = len as u8;
        }
        return;
    }
    // Widen the reserved byte in place: shift the body right, write the varint.
    let mut prefix = [0u8; 10];
    let mut n = 0;
    let mut v = len as u64;
    while v >= 0x80 {
        if let Some(b) = prefix.get_mut(n) {
            *b = (v as u8) | 0x80;
        }
        v >>= 7;
        n += 1;
    }
    if let Some(b) = prefix.get_mut(n) {
        *b = v as u8;
    }
    n += 1;
    let extra = n - 1;
    out.resize(out.len() + extra, 0);
    out.copy_within(body_start..body_start + len, body_start + extra);
    if let (Some(dst), Some(src)) =
        (out.get_mut(body_start - 1..body_start - 1 + n), prefix.get(..n))
    {
        dst.copy_from_slice(src);
    }
}

/// Reads fields in order: a [`key`](Self::key), then its value as the
/// wire type says; `Err` on malformed bytes.
pub(crate) struct WireReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> WireReader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        WireReader { buf, pos: 0 }
    }

    // Tests only: the reference `arrow::reader` is checked against.
    #[cfg(test)]
    /// Whether every field has been read.
    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u64, &'static str> {
        // Keys and most small values are one byte: no loop for them.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("truncated varint")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long")
    }

    /// The next field's number and wire type (0 varint, 1 fixed64, 2 bytes).
    #[inline]
    pub(crate) fn key(&mut self) -> Result<(u32, u8), &'static str> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        Ok((number, (key & 7) as u8))
    }

    // Tests only: the reference `arrow::reader` is checked against.
    #[cfg(test)]
    #[inline]
    pub(crate) fn fixed64(&mut self) -> Result<u64, &'static str> {
        let b = self.buf.get(self.pos..self.pos + 8).ok_or("truncated fixed64")?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    // Tests only: the reference `arrow::reader` is checked against.
    #[cfg(test)]
    /// A length-delimited value's bytes.
    #[inline]
    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        let end = self.pos.checked_add(len).ok_or("length too large")?;
        let b = self.buf.get(self.pos..end).ok_or("truncated bytes")?;
        self.pos = end;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// `put_varint` writes what the plain byte loop writes, after
        /// whatever the buffer already held; `put_key` writes the key.
        #[test]
        fn put_varint_matches_the_byte_loop(
            v in proptest::num::u64::ANY,
            shift in 0u32..64,
            number in 1u32..(1 << 29),
            prefix in proptest::collection::vec(proptest::num::u8::ANY, 0..3),
        ) {
            let mut v = v >> shift;
            let (mut got, mut want) = (prefix.clone(), prefix.clone());
            put_varint(&mut got, v);
            while v >= 0x80 {
                want.push((v as u8) | 0x80);
                v >>= 7;
            }
            want.push(v as u8);
            let key = Key::new(number, 2);
            put_key(&mut got, &key);
            want.extend_from_slice(key.as_slice());
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn varints_and_backpatched_lengths() {
        for v in [0u64, 1, 127, 128, 300, (1 << 14) - 1, 1 << 14, (1 << 56) - 1, 1 << 56, u64::MAX]
        {
            let mut out = vec![];
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut r = WireReader { buf: &out, pos: 0 };
            assert_eq!(r.varint(), Ok(v));
        }
        let key = Key::new(3, 2);
        for n in [0usize, 127, 128, 20_000] {
            let mut out = vec![9];
            let at = begin_len(&mut out, &key);
            out.extend(std::iter::repeat_n(7u8, n));
            end_len(&mut out, at);
            let mut r = WireReader::new(out.get(1..).unwrap());
            assert_eq!(r.key(), Ok((3, 2)));
            assert_eq!(r.bytes().map(<[u8]>::len), Ok(n));
            assert!(r.is_done());
        }
    }
}
