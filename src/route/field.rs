//! A record's route field, read from its bytes only as far as the field:
//! routing happens before encoding, and the encoder reads (and checks) the
//! whole record anyway, so reading past the field would be paid twice.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::json_key::KeyIs;

/// The raw value of the top-level `key` of the JSON object `json`; `None`
/// when the object has no such key. The bytes after the value are not read
/// (the first of duplicate keys wins).
///
/// # Errors
/// The bytes before the field (or, when it is absent, anywhere) are not
/// JSON ([`serde_json::Error::is_syntax`], `is_eof`), or the record is not
/// an object (`is_data`).
pub fn top_level<'a>(json: &'a [u8], key: &str) -> Result<Option<&'a RawValue>, serde_json::Error> {
    let found = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(json);
    match (Seek { key, found: &found }).deserialize(&mut de) {
        Ok(()) => {
            de.end()?;
            Ok(None)
        }
        // Stopping at the field is reported as an error to end the walk.
        Err(e) => found.get().map_or(Err(e), |v| Ok(Some(v))),
    }
}

/// Walks one object up to `key`'s value and leaves it in `found`.
struct Seek<'k, 'c, 'de> {
    key: &'k str,
    found: &'c Cell<Option<&'de RawValue>>,
}

impl<'de> DeserializeSeed<'de> for Seek<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Seek<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(matches) = map.next_key_seed(KeyIs(self.key))? {
            if matches {
                self.found.set(Some(map.next_value::<&'de RawValue>()?));
                return Err(de::Error::custom("route field found"));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(json: &str, key: &str) -> Result<Option<String>, serde_json::Error> {
        top_level(json.as_bytes(), key).map(|v| v.map(|v| v.get().to_string()))
    }

    #[test]
    fn finds_the_first_top_level_key_and_stops_there() {
        assert_eq!(
            find(r#"{"a":[1,{"k":2}],"k":"x","z":1}"#, "k").unwrap().as_deref(),
            Some(r#""x""#)
        );
        assert_eq!(find(r#"{"k\u0031":1,"k1":2}"#, "k1").unwrap().as_deref(), Some("1"));
        // Nested keys are not top-level; bytes after the field are not read.
        assert_eq!(find(r#"{"a":{"k":1}}"#, "k").unwrap(), None);
        assert_eq!(find(r#"{"k":"x", oops"#, "k").unwrap().as_deref(), Some(r#""x""#));
    }

    #[test]
    fn bad_json_before_the_field_and_non_objects_are_errors() {
        assert!(find(r#"{"a":tru,"k":1}"#, "k").unwrap_err().is_syntax());
        assert!(find(r#"{"a":1"#, "k").unwrap_err().is_eof());
        assert!(find(r#"{"a":1} x"#, "k").unwrap_err().is_syntax());
        assert!(find("[1]", "k").unwrap_err().is_data());
        assert!(find("7", "k").unwrap_err().is_data());
    }
}
