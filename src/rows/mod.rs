//! [`SourceRecord`](crate::source::SourceRecord) data (JSON) → BigQuery rows,
//! as protobuf messages or Arrow record batches, against the live table schema.
//!
//! The [`Encoder`] is built once per table schema ([`schema`] compiles it,
//! [`descriptor`] and [`arrow`] derive the writer schemas) and encodes each
//! record straight from JSON bytes to proto wire bytes ([`json`] reads,
//! [`encode`] walks, [`scalar`] and [`values`] handle each type). A record that cannot
//! become a row is a [`RowError`] naming the field; the coercion table is
//! `docs/coercions.md`.

mod arrow;
mod descriptor;
mod encode;
mod encoder;
mod error;
mod json;
mod meta;
mod scalar;
mod schema;
#[cfg(test)]
pub(crate) mod tests;
mod values;
mod wire;

pub use encoder::{Encoder, EncoderOptions, WriterSchema};
pub use error::{EncodeError, RowError, RowErrorKind, SchemaError};
pub use meta::RecordMeta;
#[cfg(test)]
pub(crate) use schema::test_column;

use std::str::FromStr;

/// How rows travel in AppendRows: `proto_rows` or `arrow_rows` (`ROW_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RowFormat {
    #[default]
    Proto,
    Arrow,
}

impl FromStr for RowFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "proto" => Ok(Self::Proto),
            "arrow" => Ok(Self::Arrow),
            _ => Err(format!("{s:?} is not one of: proto, arrow")),
        }
    }
}

/// What to do with a JSON field the table has no column for (`UNKNOWN_FIELDS`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownFields {
    /// The record goes to the dead-letter queue: nothing is silently dropped.
    #[default]
    Reject,
    /// The field is dropped and the rest of the record becomes a row.
    Ignore,
    /// The table gains a NULLABLE column for it (`crate::evolve`); until it
    /// has, the encoder refuses the record as under `Reject`. A field whose
    /// value is null adds nothing and is skipped (null is "absent").
    Add,
}

impl FromStr for UnknownFields {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "reject" => Ok(Self::Reject),
            "ignore" => Ok(Self::Ignore),
            "add" => Ok(Self::Add),
            _ => Err(format!("{s:?} is not one of: reject, ignore, add")),
        }
    }
}
