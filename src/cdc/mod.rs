//! Change data capture (`WRITE_MODE=cdc`): each record is a change to the
//! table row with the same primary key, which BigQuery applies itself when
//! the row arrives on the `_default` stream with the `_CHANGE_TYPE` and
//! `_CHANGE_SEQUENCE_NUMBER` pseudo-columns (fact sheet
//! `storage-write-api.md`, "Change data capture").
//!
//! - [`change_type`]: `UPSERT` or `DELETE`, read from a record field
//!   (`CDC_CHANGE_TYPE_FIELD`) with the common producers' spellings, or
//!   `UPSERT` when no field is configured;
//! - [`sequence`]: the `_CHANGE_SEQUENCE_NUMBER`, by default derived from
//!   the record's Kinesis position so that BigQuery's section-wise
//!   comparison equals shard order, or converted from a record field
//!   (`CDC_SEQUENCE_FIELD`, a source LSN/SCN);
//! - [`columns`]: the two pseudo-columns added to the writer schema and to
//!   every encoded row;
//! - [`field`]: reading one (possibly nested) field from JSON bytes;
//! - [`requirements`]: what the table must be for BigQuery to apply
//!   changes (`kinesis-bigquery check` judges it before a deploy).
//!
//! Because the sequence number is a pure function of the record (its
//! position or its own field), every retry, bisected batch, replay and
//! backfill writes the same change with the same number: applying it twice
//! leaves the table as it was.

pub mod change_type;
pub mod columns;
pub mod field;
pub mod requirements;
pub mod sequence;

pub use change_type::ChangeType;
pub use columns::{CdcColumns, CdcError};
pub use field::FieldPath;
pub use sequence::ChangeSequence;

/// `CDC_CHANGE_TYPE_FIELD` and `CDC_SEQUENCE_FIELD`, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CdcSettings {
    /// Where the change type is read; `None`: every record is an `UPSERT`.
    pub change_type_field: Option<FieldPath>,
    /// Where the sequence number is read; `None`: the Kinesis position.
    pub sequence_field: Option<FieldPath>,
}

/// BigQuery's limit on primary key columns for CDC tables (fact sheet,
/// "Change data capture": composite keys of up to 16 columns).
pub const MAX_PRIMARY_KEY_COLUMNS: usize = 16;
