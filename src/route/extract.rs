//! A record's table: the value of one top-level field, read from the record
//! bytes without building the record (the encoder reads it again as a
//! column, if the table has one).

use serde_json::value::RawValue;

use super::field::top_level;
use super::template::TableTemplate;
use crate::dlq::Reason;
use crate::table::TableName;

/// Why a record has no table: a dead letter's reason and its error text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unroutable {
    /// [`Reason::InvalidJson`] when the bytes are not a JSON object,
    /// [`Reason::NoRoute`] when the field cannot name a table.
    pub reason: Reason,
    pub error: String,
}

/// Reads route fields for one template.
#[derive(Clone, Debug)]
pub struct Router {
    template: TableTemplate,
}

impl Router {
    pub fn new(template: TableTemplate) -> Self {
        Self { template }
    }

    pub fn template(&self) -> &TableTemplate {
        &self.template
    }

    /// The table `data` goes to.
    ///
    /// # Errors
    /// [`Unroutable`] with the reason its dead letter carries.
    pub fn route(&self, data: &[u8]) -> Result<TableName, Unroutable> {
        let field = self.template.field();
        let no_route = |error: String| Unroutable { reason: Reason::NoRoute, error };
        let raw = match top_level(data, field) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Err(no_route(format!("route field {field:?} is missing"))),
            Err(e) if e.is_data() => {
                return Err(no_route(format!("the record is not a JSON object ({e})")));
            }
            Err(e) => {
                return Err(Unroutable {
                    reason: Reason::InvalidJson,
                    error: format!("not JSON: {e}"),
                });
            }
        };
        let value = string_value(raw).ok_or_else(|| {
            no_route(format!("route field {field:?} is {}, not a string", kind(raw)))
        })?;
        self.template.table_for(&value).map_err(|e| no_route(format!("route field {field:?}: {e}")))
    }
}

fn string_value(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

/// What a JSON value is, for an error text.
fn kind(raw: &RawValue) -> &'static str {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new("p.d.events_{event_type}".parse().unwrap())
    }

    #[test]
    fn a_string_field_names_the_table() {
        let t = router().route(br#"{"id":1,"event_type":"click"}"#).unwrap();
        assert_eq!(t.to_string(), "p.d.events_click");
        // Escapes are read as JSON reads them.
        let t = router().route(br#"{"event_type":"a\u005fb"}"#).unwrap();
        assert_eq!(t.table(), "events_a_b");
    }

    #[test]
    fn missing_non_string_and_invalid_values_have_no_route() {
        for (data, says) in [
            (&br#"{"id":1}"#[..], "missing"),
            (br#"{"event_type":7}"#, "a number"),
            (br#"{"event_type":null}"#, "null"),
            (br#"{"event_type":{"a":1}}"#, "an object"),
            (br#"{"event_type":"a.b"}"#, "character"),
            (br#"{"event_type":""}"#, "empty"),
            (br#"{"nested":{"event_type":"click"}}"#, "missing"),
        ] {
            let e = router().route(data).unwrap_err();
            assert_eq!(e.reason, Reason::NoRoute, "{}", String::from_utf8_lossy(data));
            assert!(e.error.contains(says), "{}", e.error);
        }
    }

    #[test]
    fn bytes_that_are_not_json_are_invalid_json() {
        let e = router().route(br#"{"event_type" "click"}"#).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidJson);
        let e = router().route(br#"{"id":1,"#).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidJson);
        // Past the field the bytes are the encoder's to judge.
        assert!(router().route(br#"{"event_type":"click"} x"#).is_ok());
        let e = router().route(b"[1,2]").unwrap_err();
        assert_eq!(e.reason, Reason::NoRoute, "{}", e.error);
    }
}
