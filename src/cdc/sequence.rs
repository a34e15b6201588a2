//! `_CHANGE_SEQUENCE_NUMBER`: the order BigQuery applies changes to one key
//! in. BigQuery takes a string of at most four `/`-separated sections of at
//! most 16 hexadecimal digits each and compares it section by section (fact
//! sheet, "Change data capture").
//!
//! Every number this module writes has a fixed shape — each section exactly
//! 16 upper-case hex digits, and always the same number of sections for one
//! source — so the section-wise comparison, a numeric one and a plain string
//! comparison all agree.
//!
//! From a Kinesis position ([`ChangeSequence::from_position`]): the decimal
//! sequence number as a 192-bit integer in three sections, then the KPL
//! sub-sequence number in the fourth. Kinesis sequence numbers are about 56
//! decimal digits (≈186 bits) in practice; one that does not fit 192 bits
//! cannot be ordered and is refused (the record becomes a dead letter),
//! never truncated.

use std::cmp::Ordering;
use std::fmt;

use serde_json::value::RawValue;

use crate::source::Position;

/// Most sections BigQuery accepts.
pub const MAX_SECTIONS: usize = 4;
/// Most hexadecimal digits in one section.
pub const SECTION_DIGITS: usize = 16;

/// A valid `_CHANGE_SEQUENCE_NUMBER`, ordered as BigQuery orders it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ChangeSequence {
    text: String,
    sections: Vec<u64>,
}

impl ChangeSequence {
    /// Checks `text` against BigQuery's format (1 to 4 sections of 1 to 16
    /// hex digits, either case).
    ///
    /// # Errors
    /// Why the text is not a sequence number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let sections = text
            .split('/')
            .map(|s| {
                if s.is_empty() || s.len() > SECTION_DIGITS {
                    return Err(format!(
                        "section {s:?} must have 1 to {SECTION_DIGITS} hexadecimal digits"
                    ));
                }
                u64::from_str_radix(s, 16)
                    .ok()
                    .filter(|_| s.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| format!("section {s:?} is not hexadecimal"))
            })
            .collect::<Result<Vec<u64>, String>>()
            .map_err(|why| format!("invalid _CHANGE_SEQUENCE_NUMBER {text:?}: {why}"))?;
        if sections.len() > MAX_SECTIONS {
            return Err(format!(
                "invalid _CHANGE_SEQUENCE_NUMBER {text:?}: more than {MAX_SECTIONS} sections"
            ));
        }
        Ok(Self { text: text.to_string(), sections })
    }

    fn from_sections(sections: Vec<u64>) -> Self {
        let text = sections.iter().map(|s| format!("{s:016X}")).collect::<Vec<_>>().join("/");
        Self { text, sections }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The number of a Kinesis position: sequence number (192 bits, three
    /// sections), then sub-sequence number. Ordered exactly as positions are.
    ///
    /// # Errors
    /// The sequence number needs more than 192 bits.
    pub fn from_position(p: &Position) -> Result<Self, String> {
        Self::from_kinesis(p.sequence_number.as_str(), p.sub_sequence_number)
    }

    /// [`Self::from_position`] from its two parts (a decimal sequence
    /// number and a sub-sequence number).
    ///
    /// # Errors
    /// The sequence number is not decimal or needs more than 192 bits.
    pub fn from_kinesis(sequence_number: &str, sub_sequence_number: u64) -> Result<Self, String> {
        let [hi, mid, lo] = decimal_words::<3>(sequence_number).ok_or_else(|| {
            format!(
                "Kinesis sequence number {sequence_number} does not fit the 192 bits of three \
                 sections"
            )
        })?;
        Ok(Self::from_sections(vec![hi, mid, lo, sub_sequence_number]))
    }

    /// The number carried by a record field (`CDC_SEQUENCE_FIELD`):
    /// - a non-negative integer, as a JSON number or a string of decimal
    ///   digits (Oracle SCN, MySQL GTID sequence, a Debezium `source.lsn`,
    ///   an outbox counter): 256 bits in four sections;
    /// - a string of `/`-separated hexadecimal sections (PostgreSQL's LSN
    ///   `16/B374D848`, or a `_CHANGE_SEQUENCE_NUMBER` already): each
    ///   section widened to 16 digits, the number of sections kept.
    ///
    /// One field must keep to one of these forms for its values to compare.
    ///
    /// # Errors
    /// Why the value is no sequence number; the record is a dead letter.
    pub fn from_field(field: &str, value: Option<&RawValue>) -> Result<Self, String> {
        let Some(value) = value else {
            return Err(format!("no sequence number: the record has no field {field}"));
        };
        let raw = value.get();
        let text = match serde_json::from_str::<String>(raw) {
            Ok(s) => s,
            Err(_) if raw.bytes().all(|b| b.is_ascii_digit()) => raw.to_string(),
            Err(_) => {
                return Err(format!("{field} is {raw}, not a non-negative integer or LSN string"));
            }
        };
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let words = decimal_words::<4>(&text)
                .ok_or_else(|| format!("{field} is {text}, more than 256 bits"))?;
            return Ok(Self::from_sections(words.to_vec()));
        }
        if text.contains('/') {
            let parsed = Self::parse(&text).map_err(|e| format!("{field}: {e}"))?;
            return Ok(Self::from_sections(parsed.sections));
        }
        Err(format!(
            "{field} is {text:?}: expected decimal digits or hexadecimal sections separated by '/'"
        ))
    }
}

impl Ord for ChangeSequence {
    /// Section by section, numerically; a number that is a prefix of another
    /// is the smaller.
    fn cmp(&self, other: &Self) -> Ordering {
        self.sections.cmp(&other.sections)
    }
}

impl PartialOrd for ChangeSequence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ChangeSequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A decimal string as an `N`-word big-endian integer; `None` when it has a
/// non-digit or does not fit.
fn decimal_words<const N: usize>(digits: &str) -> Option<[u64; N]> {
    let mut words = [0u64; N];
    if digits.is_empty() {
        return None;
    }
    for b in digits.bytes() {
        let digit = u64::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        // words = words * 10 + digit, from the least significant word up.
        let mut carry = u128::from(digit);
        for w in words.iter_mut().rev() {
            let v = u128::from(*w) * 10 + carry;
            *w = v as u64;
            carry = v >> 64;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SequenceNumber;
    use proptest::prelude::*;

    fn position(seq: &str, sub: u64) -> Position {
        Position { sequence_number: SequenceNumber::new(seq).unwrap(), sub_sequence_number: sub }
    }

    #[test]
    fn encodes_a_real_sequence_number_in_fixed_width_sections() {
        let s = ChangeSequence::from_position(&position(
            "49590338271490256608559692538361571095921575989136588898",
            3,
        ))
        .unwrap();
        let text = s.as_str();
        assert_eq!(text.split('/').count(), 4);
        assert!(text.split('/').all(|p| p.len() == 16), "{text}");
        assert!(text.ends_with("/0000000000000003"), "{text}");
        assert_eq!(ChangeSequence::parse(text).unwrap(), s);
        assert_eq!(
            ChangeSequence::from_position(&position("255", 0)).unwrap().as_str(),
            "0000000000000000/0000000000000000/00000000000000FF/0000000000000000"
        );
    }

    #[test]
    fn refuses_what_does_not_fit() {
        // 2^192 = 6277101735386680763835789423207666416102355444464034512896
        assert!(ChangeSequence::from_position(&position(&"9".repeat(58), 0)).is_err());
        let max = "6277101735386680763835789423207666416102355444464034512895";
        assert!(ChangeSequence::from_position(&position(max, 0)).is_ok());
        let over = "6277101735386680763835789423207666416102355444464034512896";
        assert!(ChangeSequence::from_position(&position(over, 0)).is_err());
    }

    #[test]
    fn parses_the_service_format_only() {
        for ok in ["0", "ff", "FFFFFFFFFFFFFFFF/0/A/b", "1/2"] {
            assert!(ChangeSequence::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/", "1//2", "g", "1/2/3/4/5", "11111111111111111", "-1", "0x1"] {
            assert!(ChangeSequence::parse(bad).is_err(), "{bad}");
        }
        let p = |s| ChangeSequence::parse(s).unwrap();
        assert!(p("A") > p("9"));
        assert!(p("1/0") > p("0/FFFF"));
        assert!(p("1") < p("1/0"));
    }

    #[test]
    fn converts_field_values() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        let f = |s: &str| ChangeSequence::from_field("lsn", Some(&raw(s)));
        assert_eq!(
            f("42").unwrap().as_str(),
            "0000000000000000/0000000000000000/0000000000000000/000000000000002A"
        );
        assert_eq!(f("42").unwrap(), f(r#""42""#).unwrap());
        assert_eq!(f(r#""16/B374D848""#).unwrap().as_str(), "0000000000000016/00000000B374D848");
        assert!(f(r#""16/B374D848""#).unwrap() < f(r#""16/B374D849""#).unwrap());
        assert!(f(r#""17/0""#).unwrap() > f(r#""16/FFFFFFFF""#).unwrap());
        for bad in ["-1", "1.5", "true", "null", r#""abc""#, r#""""#, r#""1/2/3/4/5""#] {
            assert!(f(bad).is_err(), "{bad}");
        }
        assert!(ChangeSequence::from_field("lsn", None).unwrap_err().contains("no field lsn"));
    }

    /// A sequence number shaped like Kinesis': 56 digits (occasionally more
    /// or fewer), a shard-stable prefix and a growing tail.
    fn kinesis_sequence() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => "49[0-9]{54}",
            1 => "[1-9][0-9]{0,55}",
            1 => "[1-5][0-9]{56}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The encoding sorts exactly as Kinesis positions do, both by
        /// BigQuery's section-wise comparison and as plain strings.
        #[test]
        fn encoding_sorts_as_positions_do(
            a in kinesis_sequence(), sa in prop_oneof![Just(0u64), 0u64..10_000, any::<u64>()],
            b in kinesis_sequence(), sb in prop_oneof![Just(0u64), 0u64..10_000, any::<u64>()],
        ) {
            let (pa, pb) = (position(&a, sa), position(&b, sb));
            let (ea, eb) = (
                ChangeSequence::from_position(&pa).unwrap(),
                ChangeSequence::from_position(&pb).unwrap(),
            );
            prop_assert_eq!(ea.cmp(&eb), pa.cmp(&pb));
            prop_assert_eq!(ea.as_str().cmp(eb.as_str()), pa.cmp(&pb));
            let reparsed = ChangeSequence::parse(ea.as_str()).unwrap();
            prop_assert_eq!(reparsed.cmp(&eb), pa.cmp(&pb));
        }

        /// Records of one aggregate (same sequence number) sort by their
        /// sub-sequence number, and neighbours in a shard stay in order.
        #[test]
        fn sub_sequence_and_neighbours(seq in "49[0-9]{54}", sub in 0u64..1_000) {
            let here = ChangeSequence::from_position(&position(&seq, sub)).unwrap();
            let next_sub = ChangeSequence::from_position(&position(&seq, sub + 1)).unwrap();
            prop_assert!(here < next_sub);
            // Incrementing the last digit (with carry) orders after every sub-record.
            let mut digits: Vec<u8> = seq.bytes().collect();
            let mut i = digits.len();
            while i > 0 {
                i -= 1;
                if digits[i] == b'9' { digits[i] = b'0'; } else { digits[i] += 1; break; }
            }
            let next = String::from_utf8(digits).unwrap();
            let later = ChangeSequence::from_position(&position(&next, 0)).unwrap();
            prop_assert!(later > next_sub);
        }
    }
}
