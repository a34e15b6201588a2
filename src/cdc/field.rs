//! One field of a JSON record, found without building the record: the
//! change type and the sequence number are read from the record bytes
//! before (and apart from) the row encoder, which may not even have a column
//! for them.

use std::fmt;
use std::str::FromStr;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::json_key::KeyIs;

/// A dotted path of object keys (`op`, `metadata.operation`), as
/// `CDC_CHANGE_TYPE_FIELD` and `CDC_SEQUENCE_FIELD` spell it. Keys match
/// exactly (JSON keys are case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(Vec<String>);

impl FromStr for FieldPath {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let keys: Vec<String> = s.split('.').map(str::to_string).collect();
        if keys.iter().any(String::is_empty) {
            return Err(format!("{s:?} is not a field path (keys separated by '.')"));
        }
        Ok(Self(keys))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl FieldPath {
    /// The top-level key: the table column the field's value travels in
    /// when the record becomes a row.
    pub fn top_level(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// The value at this path in `json`, as its raw JSON text; `Ok(None)`
    /// when a key is absent (or an intermediate value is not an object).
    ///
    /// # Errors
    /// The bytes are not a JSON object.
    pub fn find<'a>(&self, json: &'a [u8]) -> Result<Option<&'a RawValue>, String> {
        let mut current: &'a RawValue =
            serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        for key in &self.0 {
            let text = current.get();
            if !text.trim_start().starts_with('{') {
                return Ok(None);
            }
            let mut de = serde_json::Deserializer::from_str(text);
            match (Lookup { key }).deserialize(&mut de).map_err(|e| e.to_string())? {
                Some(v) => current = v,
                None => return Ok(None),
            }
        }
        Ok(Some(current))
    }
}

/// Walks one object, skipping every value but `key`'s.
struct Lookup<'k> {
    key: &'k str,
}

impl<'de> DeserializeSeed<'de> for Lookup<'_> {
    type Value = Option<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Lookup<'_> {
    type Value = Option<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(matches) = map.next_key_seed(KeyIs(self.key))? {
            if matches && found.is_none() {
                found = Some(map.next_value::<&'de RawValue>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> FieldPath {
        s.parse().unwrap()
    }

    #[test]
    fn finds_top_level_and_nested_values() {
        let json = br#"{"id":1,"op":"u","metadata":{"operation":"delete","x":[1,{"a":2}]}}"#;
        assert_eq!(path("op").find(json).unwrap().map(RawValue::get), Some(r#""u""#));
        assert_eq!(
            path("metadata.operation").find(json).unwrap().map(RawValue::get),
            Some(r#""delete""#)
        );
        assert!(path("missing").find(json).unwrap().is_none());
        assert!(path("id.deeper").find(json).unwrap().is_none());
    }

    #[test]
    fn escaped_keys_match_and_bad_json_is_an_error() {
        assert_eq!(
            path("op").find(br#"{"o\u0070":"d"}"#).unwrap().map(RawValue::get),
            Some(r#""d""#)
        );
        assert!(path("op").find(b"{\"op\":").is_err());
        assert!("a..b".parse::<FieldPath>().is_err());
        assert!("".parse::<FieldPath>().is_err());
    }
}
