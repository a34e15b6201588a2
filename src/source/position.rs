//! Kinesis positions, ordered as Kinesis orders them.

use std::cmp::Ordering;
use std::fmt;

/// A Kinesis sequence number: a decimal string of up to 128 digits that grows
/// within a shard. Compared numerically (shorter is smaller), never as text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SequenceNumber(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid sequence number {0:?}: expected 1 to 128 decimal digits")]
pub struct SequenceNumberError(String);

impl SequenceNumber {
    pub fn new(s: &str) -> Result<Self, SequenceNumberError> {
        if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SequenceNumberError(s.to_string()));
        }
        // Canonical form without leading zeros, so equality is numeric equality.
        let trimmed = s.trim_start_matches('0');
        Ok(Self(if trimmed.is_empty() { "0".into() } else { trimmed.into() }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SequenceNumber {
    type Error = SequenceNumberError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<SequenceNumber> for String {
    fn from(s: SequenceNumber) -> String {
        s.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a user record sits in its shard: the Kinesis record's sequence
/// number and, for a KPL sub-record, its index in the aggregate (0 for a
/// plain record). Ordered by sequence number, then sub-sequence number.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Position {
    pub sequence_number: SequenceNumber,
    pub sub_sequence_number: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.sequence_number, self.sub_sequence_number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_numerically() {
        let a = SequenceNumber::new("9").unwrap();
        let b = SequenceNumber::new("10").unwrap();
        assert!(a < b);
        assert_eq!(SequenceNumber::new("007").unwrap(), SequenceNumber::new("7").unwrap());
        let p = |s: &str, sub| Position {
            sequence_number: SequenceNumber::new(s).unwrap(),
            sub_sequence_number: sub,
        };
        assert!(p("10", 0) > p("9", 5));
        assert!(p("10", 1) > p("10", 0));
    }

    #[test]
    fn rejects_non_digits() {
        for bad in ["", "12a", "-1", " 1"] {
            assert!(SequenceNumber::new(bad).is_err());
        }
    }
}
