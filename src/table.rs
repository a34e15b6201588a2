//! Names of BigQuery tables and write streams, validated once.
//!
//! A `TableName` can only be built from a valid name, so everything
//! downstream can format resource paths without re-checking them.

use std::fmt;
use std::str::FromStr;

/// A BigQuery table: `projects/{project}/datasets/{dataset}/tables/{table}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    project: String,
    dataset: String,
    table: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid table name {input:?}: expected PROJECT.DATASET.TABLE or \
     projects/PROJECT/datasets/DATASET/tables/TABLE ({why})"
)]
pub struct TableNameError {
    input: String,
    why: &'static str,
}

impl TableName {
    pub fn new(project: &str, dataset: &str, table: &str) -> Result<Self, TableNameError> {
        let input = format!("{project}.{dataset}.{table}");
        let fail = |why| TableNameError { input: input.clone(), why };
        // Project ids allow letters, digits, '-', ':' and '.' (domain-scoped); datasets and
        // tables letters, digits and '_' (tables also allow '-' and ' ' in newer releases, but
        // not '/' or '.', which would break the resource path).
        if project.is_empty()
            || !project.chars().all(|c| c.is_ascii_alphanumeric() || "-:.".contains(c))
        {
            return Err(fail("project must be letters, digits, '-', ':' or '.'"));
        }
        if dataset.is_empty() || !dataset.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(fail("dataset must be letters, digits or '_'"));
        }
        if table.is_empty() || table.contains(['/', '.']) || table.len() > 1024 {
            return Err(fail("table must be non-empty, without '/' or '.'"));
        }
        Ok(Self { project: project.into(), dataset: dataset.into(), table: table.into() })
    }

    pub fn project(&self) -> &str {
        &self.project
    }
    pub fn dataset(&self) -> &str {
        &self.dataset
    }
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `projects/p/datasets/d/tables/t`: the `parent` of write-stream RPCs.
    pub fn path(&self) -> String {
        format!("projects/{}/datasets/{}/tables/{}", self.project, self.dataset, self.table)
    }

    /// The table's `_default` stream (at-least-once, always exists).
    pub fn default_stream(&self) -> String {
        format!("{}/streams/_default", self.path())
    }

    /// Parses `projects/p/datasets/d/tables/t[/streams/s]` into the table part.
    pub fn from_stream_name(stream: &str) -> Result<Self, TableNameError> {
        let path = match stream.find("/streams/") {
            Some(i) => &stream[..i],
            None => stream,
        };
        path.parse()
    }
}

impl FromStr for TableName {
    type Err = TableNameError;

    /// Accepts `project.dataset.table` (the `bq` CLI form; the project may
    /// itself contain a domain, `example.com:proj.dataset.table`) and the
    /// resource path form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |why| TableNameError { input: s.to_string(), why };
        if let Some(rest) = s.strip_prefix("projects/") {
            let parts: Vec<&str> = rest.split('/').collect();
            return match parts.as_slice() {
                [p, "datasets", d, "tables", t] => Self::new(p, d, t),
                _ => Err(fail("bad resource path")),
            };
        }
        let mut it = s.rsplitn(3, '.');
        match (it.next(), it.next(), it.next()) {
            (Some(t), Some(d), Some(p)) => Self::new(p, d, t),
            _ => Err(fail("three dot-separated parts are needed")),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let a: TableName = "p.d.t".parse().unwrap();
        let b: TableName = "projects/p/datasets/d/tables/t".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.path(), "projects/p/datasets/d/tables/t");
        assert_eq!(a.default_stream(), "projects/p/datasets/d/tables/t/streams/_default");
        let c: TableName = "example.com:proj.ds.events".parse().unwrap();
        assert_eq!(c.project(), "example.com:proj");
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "a.b", "p..t", "projects/p/datasets/d", "p.d-x.t", "p.d.t/x"] {
            assert!(bad.parse::<TableName>().is_err(), "{bad}");
        }
    }

    #[test]
    fn table_of_a_stream() {
        let t = TableName::from_stream_name("projects/p/datasets/d/tables/t/streams/abc").unwrap();
        assert_eq!(t.to_string(), "p.d.t");
    }
}
