//! A row as the store keeps it.
//!
//! Proto rows are checked in full when they arrive — every value BigQuery
//! would refuse is refused then, with its row error — but kept as their wire
//! bytes (slices of the request, no copy) and decoded only when read. The
//! append path, which every test and benchmark drives and which stands in for
//! a service running elsewhere, builds no value tree per row; reads are rare
//! and small. Arrow rows are decoded on arrival.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;

use super::cdc::{self, Change, PseudoFields};
use super::defaults::Fill;
use super::proto_rows;
use super::proto_schema::ProtoWriter;
use super::values::Row;
use crate::pb::storage::TableFieldSchema;

#[derive(Clone)]
pub enum StoredRow {
    Values(Row),
    /// Checked wire bytes and what decodes them as they were appended.
    Proto(Bytes, Arc<ProtoBatch>),
}

/// What a proto request's rows decode with: the connection's writer schema,
/// the table's columns then, and the missing-value fill evaluated then
/// (`CURRENT_TIMESTAMP()` is the append's time, not the read's).
pub struct ProtoBatch {
    pub writer: Arc<ProtoWriter>,
    pub columns: Vec<TableFieldSchema>,
    pub fill: Fill,
    /// CDC rows: where their pseudo-columns are (kept in the bytes, split
    /// off on read, see [`super::cdc`]).
    pub cdc: Option<PseudoFields>,
}

impl StoredRow {
    /// The row's cells, aligned with the columns it was appended under.
    ///
    /// # Errors
    /// Only if a checked row no longer decodes, which the shared walk in
    /// [`proto_rows`] rules out; reported rather than trusted.
    pub fn values(&self) -> Result<Cow<'_, Row>, String> {
        match self {
            StoredRow::Values(row) => Ok(Cow::Borrowed(row)),
            StoredRow::Proto(bytes, b) => match b.cdc {
                None => proto_rows::decode_row(&b.writer, bytes, &b.columns, &b.fill),
                Some(pseudo) => {
                    let (plain, _) = cdc::split_row(bytes, pseudo)?;
                    proto_rows::decode_row(&b.writer, &plain, &b.columns, &b.fill)
                }
            }
            .map(Cow::Owned),
        }
    }

    /// The change a CDC row carries; `None` for a row written without one.
    pub fn change(&self) -> Option<Change> {
        match self {
            StoredRow::Proto(bytes, batch) => {
                let pseudo = batch.cdc?;
                cdc::split_row(bytes, pseudo).ok().map(|(_, change)| change)
            }
            StoredRow::Values(_) => None,
        }
    }
}
