//! Reading JSON object keys without keeping them: the field readers of
//! routing (`route::field`) and CDC (`cdc::field`) walk a record's keys
//! looking for one name, and a key compared in place allocates nothing.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// Compares an object key with the wanted one without keeping it.
pub(crate) struct KeyIs<'k>(pub &'k str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}
