//! The protobuf wire format, read field by field without building a message
//! object: the emulator's row decoder ([`super::proto_rows`]) walks each
//! serialized row with this and the writer's plan side by side.
//!
//! Written against the encoding spec (varints, the six wire types, packed
//! repeated scalars), independently of the encoder under test in
//! `crate::rows::wire`.

/// One field occurrence's payload, by wire type.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Raw<'_> {
    pub fn wire_type(&self) -> u8 {
        match self {
            Raw::Varint(_) => 0,
            Raw::Fixed64(_) => 1,
            Raw::Len(_) => 2,
            Raw::Fixed32(_) => 5,
        }
    }
}

/// The fields of one message, in wire order: `(field number, payload)`.
/// Groups (wire types 3 and 4, deprecated) are refused: no BigQuery column
/// maps to one.
pub struct Fields<'a> {
    buf: &'a [u8],
}

pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Raw<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            self.buf = &[];
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u32, Raw<'a>), String> {
        let tag = varint(&mut self.buf)?;
        let number = u32::try_from(tag >> 3)
            .ok()
            .filter(|n| (1..=536_870_911).contains(n))
            .ok_or_else(|| format!("invalid field number in tag {tag}"))?;
        let raw = match tag & 7 {
            0 => Raw::Varint(varint(&mut self.buf)?),
            1 => Raw::Fixed64(u64::from_le_bytes(take_array(&mut self.buf)?)),
            2 => {
                let len = usize::try_from(varint(&mut self.buf)?)
                    .map_err(|_| "length overflows".to_string())?;
                if len > self.buf.len() {
                    return Err(format!("field {number}: length {len} past the end of the buffer"));
                }
                let (head, rest) = self.buf.split_at(len);
                self.buf = rest;
                Raw::Len(head)
            }
            5 => Raw::Fixed32(u32::from_le_bytes(take_array(&mut self.buf)?)),
            w => return Err(format!("field {number}: unsupported wire type {w}")),
        };
        Ok((number, raw))
    }
}

/// Reads one base-128 varint (at most ten bytes).
pub fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err("truncated varint".into());
        };
        *buf = rest;
        if i == 9 && b > 1 {
            return Err("varint overflows 64 bits".into());
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err("varint longer than ten bytes".into())
}

fn take_array<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], String> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or("truncated fixed-width value")?;
    *buf = rest;
    Ok(*head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_wire_type_and_refuses_truncation() {
        // 1: varint 300, 2: "hi", 3: fixed64 7, 4: fixed32 9
        let bytes =
            [0x08, 0xAC, 0x02, 0x12, 2, b'h', b'i', 0x19, 7, 0, 0, 0, 0, 0, 0, 0, 0x25, 9, 0, 0, 0];
        let got: Vec<_> = fields(&bytes).collect::<Result<_, _>>().unwrap();
        assert!(matches!(got[0], (1, Raw::Varint(300))));
        assert!(matches!(got[1], (2, Raw::Len(b"hi"))));
        assert!(matches!(got[2], (3, Raw::Fixed64(7))));
        assert!(matches!(got[3], (4, Raw::Fixed32(9))));
        for cut in 1..bytes.len() {
            let ends_on_field = [3, 7, 16].contains(&cut);
            let all: Result<Vec<_>, _> = fields(&bytes[..cut]).collect();
            assert_eq!(all.is_ok(), ends_on_field, "cut at {cut}");
        }
        assert!(fields(&[0x0B]).next().unwrap().is_err(), "group start");
        assert!(fields(&[0x00, 0x00]).next().unwrap().is_err(), "field number 0");
        let eleven = [0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
        assert!(fields(&eleven).next().unwrap().is_err());
    }
}
