//! `BIGQUERY_TABLE` as one table or as a template naming a record field:
//! `my-project.analytics.events_{event_type}`. Parsed and checked once at
//! cold start; a record's field value then fills the placeholder.

use std::fmt;
use std::str::FromStr;

use crate::table::{TableName, TableNameError};

/// BigQuery's limit on a table name: 1,024 UTF-8 bytes ("Create and use
/// tables", Table naming).
pub const MAX_TABLE_NAME_BYTES: usize = 1024;

/// Where rows go: one table, or the table a record's field names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableTarget {
    One(TableName),
    Routed(TableTemplate),
}

impl TableTarget {
    /// The table, when there is only one.
    pub fn fixed(&self) -> Option<&TableName> {
        match self {
            Self::One(t) => Some(t),
            Self::Routed(_) => None,
        }
    }

    pub fn template(&self) -> Option<&TableTemplate> {
        match self {
            Self::One(_) => None,
            Self::Routed(t) => Some(t),
        }
    }
}

impl FromStr for TableTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(['{', '}']) {
            s.parse().map(Self::Routed)
        } else {
            s.parse().map(Self::One).map_err(|e: TableNameError| e.to_string())
        }
    }
}

impl fmt::Display for TableTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::One(t) => t.fmt(f),
            Self::Routed(t) => t.fmt(f),
        }
    }
}

/// A table name with one `{field}` placeholder in its table part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableTemplate {
    /// The template read as a table name, braces and all: what dead letters
    /// of records with no table name as their table.
    unrouted: TableName,
    prefix: String,
    field: String,
    suffix: String,
}

/// Why a record's value cannot name a table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteValueError {
    #[error("the route value is empty")]
    Empty,
    #[error(
        "route value {0:?} has a character outside ASCII letters, digits, '_' and '-' \
         (the subset of BigQuery's table-name characters this function routes to)"
    )]
    Character(String),
    #[error("route value {value:?} makes a table name of {bytes} bytes (BigQuery allows 1024)")]
    TooLong { value: String, bytes: usize },
}

/// Characters a route value may have: ASCII letters, digits, `_` and `-`.
/// BigQuery allows more in a table name (Unicode letters, marks, numbers,
/// connectors, dashes, spaces); this subset keeps every table's state key
/// (which maps other characters to `_`) distinct and readable.
pub fn is_route_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

impl TableTemplate {
    /// The record field whose value names the table.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The template itself as a table name (`p.d.events_{event_type}`):
    /// records that have no table are dead-lettered under it.
    pub fn unrouted(&self) -> &TableName {
        &self.unrouted
    }

    /// The table for one record's value.
    ///
    /// # Errors
    /// [`RouteValueError`] when the value cannot be (part of) a table name.
    pub fn table_for(&self, value: &str) -> Result<TableName, RouteValueError> {
        if value.is_empty() {
            return Err(RouteValueError::Empty);
        }
        if !value.chars().all(is_route_char) {
            return Err(RouteValueError::Character(shorten(value)));
        }
        let table = format!("{}{value}{}", self.prefix, self.suffix);
        if table.len() > MAX_TABLE_NAME_BYTES {
            return Err(RouteValueError::TooLong { value: shorten(value), bytes: table.len() });
        }
        TableName::new(self.unrouted.project(), self.unrouted.dataset(), &table)
            .map_err(|_| RouteValueError::Character(shorten(value)))
    }

    /// The route value that made `table`, when it is one of this template's.
    pub fn value_of<'a>(&self, table: &'a TableName) -> Option<&'a str> {
        let same_dataset = table.project() == self.unrouted.project()
            && table.dataset() == self.unrouted.dataset();
        let value = table.table().strip_prefix(&self.prefix)?.strip_suffix(&self.suffix)?;
        (same_dataset && !value.is_empty()).then_some(value)
    }

    /// `text` with this template's placeholder replaced by `value` (the
    /// schema URL of a routed table).
    pub fn fill(&self, text: &str, value: &str) -> String {
        text.replace(&format!("{{{}}}", self.field), value)
    }
}

/// A value quoted in an error, cut so a huge field cannot flood a letter.
fn shorten(value: &str) -> String {
    const SHOWN: usize = 64;
    match value.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", &value[..i]),
        None => value.to_string(),
    }
}

impl FromStr for TableTemplate {
    type Err = String;

    /// `p.d.prefix{field}suffix` or `projects/p/datasets/d/tables/prefix{field}suffix`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (Some(open), Some(close)) = (s.find('{'), s.find('}')) else {
            return Err(format!("{s:?}: a placeholder is written {{field}}"));
        };
        if s.matches('{').count() != 1 || s.matches('}').count() != 1 || close < open {
            return Err(format!("{s:?}: one {{field}} placeholder at most"));
        }
        let field = &s[open + 1..close];
        if field.is_empty() || !field.chars().all(is_route_char) {
            return Err(format!(
                "{s:?}: the placeholder names one top-level record field \
                 (ASCII letters, digits, '_' or '-')"
            ));
        }
        // The project and dataset parts refuse braces, so a template that
        // parses as a table name has its placeholder in the table part.
        let unrouted: TableName = s.parse().map_err(|_| {
            format!(
                "{s:?}: PROJECT.DATASET.TABLE with the {{field}} placeholder only in the \
                 table part (e.g. my-project.analytics.events_{{event_type}})"
            )
        })?;
        let table = unrouted.table();
        let at = table.find('{').unwrap_or(0);
        let end = table.find('}').map_or(table.len(), |i| i + 1);
        let (prefix, suffix) = (table[..at].to_string(), table[end..].to_string());
        if prefix.len() + suffix.len() + 1 > MAX_TABLE_NAME_BYTES {
            return Err(format!("{s:?}: the table part leaves no room for a value"));
        }
        Ok(Self { prefix, field: field.to_string(), suffix, unrouted })
    }
}

impl fmt::Display for TableTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.unrouted.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_without_braces_is_one_table() {
        let t: TableTarget = "p.d.events".parse().unwrap();
        assert_eq!(t.fixed().map(ToString::to_string).as_deref(), Some("p.d.events"));
        assert!("p.d".parse::<TableTarget>().is_err());
    }

    #[test]
    fn a_template_fills_its_table_part() {
        let t: TableTemplate = "my-project.analytics.events_{event_type}_v1".parse().unwrap();
        assert_eq!(t.field(), "event_type");
        assert_eq!(
            t.table_for("click").unwrap().to_string(),
            "my-project.analytics.events_click_v1"
        );
        let p: TableTemplate = "projects/p/datasets/d/tables/{kind}".parse().unwrap();
        assert_eq!(p.table_for("a-1").unwrap().path(), "projects/p/datasets/d/tables/a-1");
        assert_eq!(p.to_string(), "p.d.{kind}");
        let click = t.table_for("click").unwrap();
        assert_eq!(t.value_of(&click), Some("click"));
        assert_eq!(t.value_of(&"p.d.other".parse().unwrap()), None);
        assert_eq!(
            t.fill("s3://b/schemas/{event_type}.json", "click"),
            "s3://b/schemas/click.json"
        );
    }

    #[test]
    fn placeholders_outside_the_table_part_or_twice_are_refused() {
        for bad in [
            "p.{ds}.events",
            "{p}.d.events",
            "p.d.{a}_{b}",
            "p.d.events_{}",
            "p.d.events_{a.b}",
            "p.d.events_}a{",
            "p.d.events_{a",
            "p.d/{x}",
        ] {
            assert!(bad.parse::<TableTarget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn values_must_make_a_table_name() {
        let t: TableTemplate = "p.d.e_{k}".parse().unwrap();
        assert_eq!(t.table_for(""), Err(RouteValueError::Empty));
        for bad in ["a.b", "a/b", "a b", "é", "a{b}", "x\n"] {
            assert!(matches!(t.table_for(bad), Err(RouteValueError::Character(_))), "{bad}");
        }
        let long = "x".repeat(1022);
        assert!(t.table_for(&long).is_ok());
        assert!(matches!(
            t.table_for(&format!("{long}x")),
            Err(RouteValueError::TooLong { bytes: 1025, .. })
        ));
    }
}
