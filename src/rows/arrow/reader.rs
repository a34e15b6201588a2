//! The transposer's protobuf reader: [`WireReader`](crate::rows::wire::WireReader)'s
//! reads with the same results and errors, and multi-byte varints decoded
//! without a loop. Columns past the 15th have two-byte keys (every key of
//! `wide_200` but 15), and timestamps are 7- or 8-byte varints; the
//! byte-at-a-time loop was a chain of dependent branches for both.

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The continuation bit of each byte of a little-endian word.
const MSBS: u64 = 0x8080_8080_8080_8080;

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Whether every field has been read.
    #[inline]
    pub(super) fn is_done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    pub(super) fn varint(&mut self) -> Result<u64, &'static str> {
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.long_varint()
    }

    /// A varint of two or more bytes. With 8 bytes left to read, one word
    /// load: its first byte without the continuation bit ends the varint,
    /// and the 7-bit groups before it are packed in three steps. Varints of
    /// 9 or 10 bytes, and those near the end, take the byte loop.
    #[inline]
    fn long_varint(&mut self) -> Result<u64, &'static str> {
        if let Some(word) = self.buf.get(self.pos..self.pos + 8) {
            let mut a = [0u8; 8];
            a.copy_from_slice(word);
            let word = u64::from_le_bytes(a);
            let ends = !word & MSBS;
            if ends != 0 {
                // Bytes in the varint: 1..=8.
                let n = ends.trailing_zeros() as usize / 8 + 1;
                let keep = if n == 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
                let x = word & keep & !MSBS;
                let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
                let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
                let x = (x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4);
                self.pos += n;
                return Ok(x);
            }
        }
        self.varint_loop()
    }

    /// The plain byte loop (`WireReader::varint`'s).
    #[cold]
    fn varint_loop(&mut self) -> Result<u64, &'static str> {
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
    /// Keys of one or two bytes (fields 1 to 2047) are read directly.
    #[inline]
    pub(super) fn key(&mut self) -> Result<(u32, u8), &'static str> {
        let key = match (self.buf.get(self.pos), self.buf.get(self.pos + 1)) {
            (Some(&b), _) if b < 0x80 => {
                self.pos += 1;
                u64::from(b)
            }
            (Some(&b0), Some(&b1)) if b1 < 0x80 => {
                self.pos += 2;
                u64::from(b0 & 0x7f) | u64::from(b1) << 7
            }
            _ => self.long_varint()?,
        };
        let number = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        Ok((number, (key & 7) as u8))
    }

    #[inline]
    pub(super) fn fixed64(&mut self) -> Result<u64, &'static str> {
        let b = self.buf.get(self.pos..self.pos + 8).ok_or("truncated fixed64")?;
        self.pos += 8;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length-delimited value's bytes.
    #[inline]
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
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
    use crate::rows::wire::WireReader;

    /// One read of each kind from `bytes` at `skip`, by both readers.
    fn both(bytes: &[u8], skip: usize, op: u8) -> (String, String) {
        let (mut ours, mut theirs) = (Reader::new(bytes), WireReader::new(bytes));
        for _ in 0..skip {
            let _ = (ours.fixed64(), theirs.fixed64());
        }
        let mut a = Vec::new();
        let mut b = Vec::new();
        while a.len() < 6 {
            match op {
                0 => {
                    a.push(format!("{:?}", ours.varint()));
                    b.push(format!("{:?}", theirs.varint()));
                }
                1 => {
                    a.push(format!("{:?}", ours.key()));
                    b.push(format!("{:?}", theirs.key()));
                }
                _ => {
                    a.push(format!("{:?}", ours.bytes()));
                    b.push(format!("{:?}", theirs.bytes()));
                }
            }
            a.push(format!("{}", ours.is_done()));
            b.push(format!("{}", theirs.is_done()));
        }
        (a.join(" "), b.join(" "))
    }

    proptest::proptest! {
        /// Varints, keys and lengths read as `WireReader` reads them, errors
        /// included, at every length and position, with and without a
        /// word's worth of bytes left.
        #[test]
        fn reads_what_the_wire_reader_reads(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![0u8..0x80, 0x80u8..=0xff, proptest::num::u8::ANY],
                0..40,
            ),
            skip in 0usize..3,
            op in 0u8..3,
        ) {
            let (a, b) = both(&bytes, skip, op);
            proptest::prop_assert_eq!(a, b);
        }

        /// Every varint up to 10 bytes, written by the writer, reads back.
        #[test]
        fn reads_back_every_varint_length(v in proptest::num::u64::ANY, shift in 0u32..64, tail in 0usize..9) {
            let v = v >> shift;
            let mut buf = Vec::new();
            crate::rows::wire::put_varint(&mut buf, v);
            buf.resize(buf.len() + tail, 0x80);
            let mut r = Reader::new(&buf);
            proptest::prop_assert_eq!(r.varint(), Ok(v));
        }
    }
}
