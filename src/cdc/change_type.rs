//! `_CHANGE_TYPE`: what a change does to the row with its primary key.
//! BigQuery accepts exactly `UPSERT` and `DELETE`; producers spell their
//! operations their own way, and [`ChangeType::from_operation`] maps the
//! common ones (documented in docs/operations.md, "Change data capture").

use serde_json::value::RawValue;

/// The value of the `_CHANGE_TYPE` pseudo-column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeType {
    /// Inserts the row, or replaces the row with the same key.
    Upsert,
    /// Removes the row with the same key.
    Delete,
}

impl ChangeType {
    /// The pseudo-column's value, as BigQuery spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upsert => "UPSERT",
            Self::Delete => "DELETE",
        }
    }

    /// BigQuery's own spelling only (what the emulator accepts on the wire).
    pub fn from_pseudo_column(s: &str) -> Option<Self> {
        match s {
            "UPSERT" => Some(Self::Upsert),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// A producer's operation name, case-insensitively:
    ///
    /// | producer | upsert | delete |
    /// | --- | --- | --- |
    /// | AWS DMS (`metadata.operation`) | `insert`, `update`, `load` | `delete` |
    /// | Debezium (`op`) | `c` (create), `u` (update), `r` (snapshot read) | `d` |
    /// | BigQuery itself | `upsert` | `delete` |
    ///
    /// Anything else (DMS `create-table`/`drop-table` control records,
    /// Debezium `t` truncate) is not a row change: `None`.
    pub fn from_operation(op: &str) -> Option<Self> {
        const UPSERT: [&str; 7] = ["upsert", "insert", "update", "load", "c", "u", "r"];
        const DELETE: [&str; 2] = ["delete", "d"];
        if UPSERT.iter().any(|u| u.eq_ignore_ascii_case(op)) {
            Some(Self::Upsert)
        } else if DELETE.iter().any(|d| d.eq_ignore_ascii_case(op)) {
            Some(Self::Delete)
        } else {
            None
        }
    }

    /// The change type from the configured field's raw JSON value (`None`:
    /// the field is absent).
    ///
    /// # Errors
    /// Why the value is not a change type; the record is a dead letter.
    pub fn from_field(field: &str, value: Option<&RawValue>) -> Result<Self, String> {
        let Some(value) = value else {
            return Err(format!("no change type: the record has no field {field}"));
        };
        let op: Option<String> = serde_json::from_str(value.get()).ok();
        match op.as_deref().map(|s| (s, Self::from_operation(s))) {
            Some((_, Some(t))) => Ok(t),
            Some((s, None)) => Err(format!(
                "{field} is {s:?}, not a change (expected insert, update, load, delete, \
                 c, u, r, d, upsert)"
            )),
            None => Err(format!("{field} is {}, not a string", value.get())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_case::test_case;

    #[test_case("insert", Some(ChangeType::Upsert); "dms insert")]
    #[test_case("UPDATE", Some(ChangeType::Upsert); "dms update any case")]
    #[test_case("load", Some(ChangeType::Upsert); "dms full load")]
    #[test_case("delete", Some(ChangeType::Delete); "dms delete")]
    #[test_case("c", Some(ChangeType::Upsert); "debezium create")]
    #[test_case("u", Some(ChangeType::Upsert); "debezium update")]
    #[test_case("r", Some(ChangeType::Upsert); "debezium snapshot read")]
    #[test_case("d", Some(ChangeType::Delete); "debezium delete")]
    #[test_case("UPSERT", Some(ChangeType::Upsert); "bigquery upsert")]
    #[test_case("t", None; "debezium truncate")]
    #[test_case("create-table", None; "dms control record")]
    #[test_case("", None; "empty")]
    fn maps_producer_operations(op: &str, expected: Option<ChangeType>) {
        assert_eq!(ChangeType::from_operation(op), expected);
    }

    #[test]
    fn unreadable_values_say_why() {
        let raw = |s: &str| RawValue::from_string(s.to_string()).unwrap();
        assert_eq!(ChangeType::from_field("op", Some(&raw(r#""d""#))), Ok(ChangeType::Delete));
        let missing = ChangeType::from_field("op", None).unwrap_err();
        assert!(missing.contains("no field op"), "{missing}");
        let number = ChangeType::from_field("op", Some(&raw("3"))).unwrap_err();
        assert!(number.contains("not a string"), "{number}");
        let other = ChangeType::from_field("op", Some(&raw(r#""t""#))).unwrap_err();
        assert!(other.contains("\"t\", not a change"), "{other}");
    }

    #[test]
    fn pseudo_column_is_strict() {
        assert_eq!(ChangeType::from_pseudo_column("UPSERT"), Some(ChangeType::Upsert));
        assert_eq!(ChangeType::from_pseudo_column("DELETE"), Some(ChangeType::Delete));
        assert_eq!(ChangeType::from_pseudo_column("upsert"), None);
        assert_eq!(ChangeType::from_pseudo_column("INSERT"), None);
    }
}
