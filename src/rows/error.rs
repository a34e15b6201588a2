//! The errors of the rows module: a table schema we cannot encode for
//! ([`SchemaError`], fatal for the encoder), one record that cannot become a
//! row ([`RowError`], the record goes to the dead-letter queue), and a request
//! that cannot be assembled from encoded rows ([`EncodeError`]).

use std::fmt;

/// The table schema cannot be turned into a writer schema.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchemaError {
    #[error("column {path}: type {type_code} is not supported ({why})")]
    Unsupported { path: String, type_code: i32, why: &'static str },
    #[error("column {path}: {why}")]
    Invalid { path: String, why: String },
    #[error("the table schema has no columns")]
    Empty,
    #[error("could not build the Arrow writer schema: {0}")]
    Arrow(String),
}

/// Why one record cannot become a row. Routing does not depend on the kind
/// (every row error is permanent for that record), but it makes dead-letter
/// reasons countable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowErrorKind {
    /// The bytes are not one JSON object (syntax, not UTF-8, trailing data).
    InvalidJson,
    /// A field the table has no column for, under `UNKNOWN_FIELDS=reject`.
    UnknownField,
    /// The same column appears twice in one object (keys match case-insensitively).
    DuplicateField,
    /// A REQUIRED column is missing or null.
    MissingRequired,
    /// The JSON value has a type this column does not accept.
    TypeMismatch,
    /// The value has the right shape but is not a valid value of the type
    /// (bad date, bad base64, too many digits).
    InvalidValue,
    /// The value is valid but outside the column type's range.
    OutOfRange,
    /// The value is valid for BigQuery but cannot travel as an Arrow row
    /// (BIGNUMERIC beyond decimal256(76, 38)).
    NotRepresentable,
    /// A `_kinesis_*` metadata column cannot hold the record's metadata.
    Metadata,
    /// `WRITE_MODE=cdc`: the record's change type or sequence number cannot
    /// be read ([`crate::cdc`]).
    ChangeUnreadable,
}

/// One record that cannot become a row, with the field it failed at.
///
/// Displays as `user.address[2].zip: expected INT64, got "abc"`; the path is
/// empty for errors about the whole record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RowError {
    /// Dotted column path with array indexes (`user.address[2].zip`), in the
    /// table's spelling; an unknown field appears as the JSON spelled it.
    pub path: String,
    pub kind: RowErrorKind,
    pub message: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Encoded rows could not be assembled into an AppendRows `rows` payload.
/// Rows that came out of [`Encoder::encode`](super::Encoder::encode) never
/// cause this; it means bytes from somewhere else, or an Arrow library error.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("row {index} is not a row of this encoder: {why}")]
    ForeignRow { index: usize, why: &'static str },
    #[error("Arrow IPC encoding failed")]
    Arrow(#[from] arrow_schema::ArrowError),
}
