//! Arrow rows (not built yet in this commit).

use super::errors::Failure;
use super::values::Row;
use crate::pb::storage::TableFieldSchema;

pub struct ArrowWriter;

pub enum DecodeFailure {
    Request(Failure),
    Rows(Vec<(usize, String)>),
}

pub fn load(
    _schema: &[u8],
    _columns: &[TableFieldSchema],
    _entity: &str,
) -> Result<ArrowWriter, Failure> {
    Err(Failure::new(
        tonic::Code::Unimplemented,
        "Arrow rows are not supported yet by the emulator.",
    ))
}

pub fn decode_rows(
    _w: &ArrowWriter,
    _batch: &[u8],
    _columns: &[TableFieldSchema],
) -> Result<Vec<Row>, DecodeFailure> {
    Err(DecodeFailure::Request(Failure::new(
        tonic::Code::Unimplemented,
        "Arrow rows are not supported yet.",
    )))
}
