//! What a walk over a proto row builds ([`super::proto_rows`]): the stored
//! values, or only the verdict. The walk is generic over [`Build`], so the
//! check an append runs and the decode a read runs are the same code.

use super::defaults::{self, Fill};
use super::values::Value;
use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::table_field_schema::Mode;

/// One converted occurrence; text and bytes stay borrowed from the wire, so
/// checking a row allocates nothing for them.
pub(super) enum Cell<'a> {
    Text(&'a str),
    Blob(&'a [u8]),
    Value(Value),
}

/// What a walk over a row builds: its stored values ([`Values`]), or only
/// which cells are NULL ([`Check`]), all a verdict needs. One walk serves
/// both, so the check and the decode cannot disagree.
pub(super) trait Build {
    type Cell;
    /// Whether arrays are worth sizing up front (a pre-pass over the row).
    const SIZES_ARRAYS: bool;
    fn empty(column: &TableFieldSchema) -> Self::Cell;
    fn cell(c: Cell<'_>) -> Self::Cell;
    fn structure(cells: Vec<Self::Cell>) -> Self::Cell;
    /// Adds an element to a REPEATED column's cell (as `empty` made it),
    /// reserving `expected` elements on the first.
    fn push(array: &mut Self::Cell, item: Self::Cell, expected: usize);
    fn is_null(cell: &Self::Cell) -> bool;
    fn fill(cells: &mut [Self::Cell], fill: &Fill);
}

/// Builds the stored row.
pub(super) struct Values;

impl Build for Values {
    type Cell = Value;
    const SIZES_ARRAYS: bool = true;

    fn empty(c: &TableFieldSchema) -> Value {
        if c.mode == Mode::Repeated as i32 { Value::Array(vec![]) } else { Value::Null }
    }

    fn cell(c: Cell<'_>) -> Value {
        match c {
            Cell::Text(s) => Value::String(s.to_owned()),
            Cell::Blob(b) => Value::Bytes(b.to_vec()),
            Cell::Value(v) => v,
        }
    }

    fn structure(cells: Vec<Value>) -> Value {
        Value::Struct(cells)
    }

    fn push(array: &mut Value, item: Value, expected: usize) {
        if let Value::Array(items) = array {
            if items.is_empty() {
                items.reserve_exact(expected);
            }
            items.push(item);
        }
    }

    fn is_null(cell: &Value) -> bool {
        *cell == Value::Null
    }

    fn fill(cells: &mut [Value], fill: &Fill) {
        defaults::apply(cells, fill);
    }
}

/// Builds nothing: a cell is `true` when it holds a value (not NULL).
pub(super) struct Check;

impl Build for Check {
    type Cell = bool;
    const SIZES_ARRAYS: bool = false;

    fn empty(c: &TableFieldSchema) -> bool {
        c.mode == Mode::Repeated as i32
    }

    fn cell(c: Cell<'_>) -> bool {
        !matches!(c, Cell::Value(Value::Null))
    }

    fn structure(_: Vec<bool>) -> bool {
        true
    }

    fn push(_: &mut bool, _: bool, _: usize) {}

    fn is_null(cell: &bool) -> bool {
        !*cell
    }

    fn fill(cells: &mut [bool], fill: &Fill) {
        for (cell, f) in cells.iter_mut().zip(fill) {
            *cell |= f.is_some();
        }
    }
}
