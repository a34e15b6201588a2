//! Change data capture as the service applies it (fact sheet
//! `storage-write-api.md`, "Change data capture"): a table with a primary
//! key takes rows with the `_CHANGE_TYPE` (`UPSERT` | `DELETE`) and
//! `_CHANGE_SEQUENCE_NUMBER` pseudo-columns on its `_default` stream, and
//! reads show the merged table — per key, the change with the highest
//! sequence number (ingestion order where a change has none); a winning
//! `DELETE` removes the row.
//!
//! The pseudo-columns are split off the writer schema and every row before
//! the ordinary checks, so the rest of the emulator sees plain rows; each
//! row's change is kept beside it in the store.

use std::collections::HashMap;

use prost::Message;
use prost_types::FieldDescriptorProto;

use super::proto_wire::{self, Raw};
use super::stored::StoredRow;
use crate::cdc::columns::{CHANGE_SEQUENCE_COLUMN, CHANGE_TYPE_COLUMN};
use crate::cdc::{ChangeSequence, ChangeType, MAX_PRIMARY_KEY_COLUMNS};
use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::table_field_schema::Mode;

/// One row's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeType,
    pub sequence: Option<ChangeSequence>,
}

/// Where a writer schema put the pseudo-columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PseudoFields {
    pub change_type: u32,
    pub sequence: Option<u32>,
}

/// `DescriptorProto.field`.
const DESCRIPTOR_FIELD: u32 = 2;

/// Splits the pseudo-columns off a raw `DescriptorProto`: the descriptor
/// without them (other fields byte for byte, options included) and their
/// numbers, if `_CHANGE_TYPE` is there.
///
/// # Errors
/// A descriptor that does not parse, or `_CHANGE_SEQUENCE_NUMBER` without
/// `_CHANGE_TYPE`, or a pseudo-column that is not a string.
pub fn split_descriptor(raw: &[u8]) -> Result<(Vec<u8>, Option<PseudoFields>), String> {
    let mut kept = Vec::with_capacity(raw.len());
    let mut change_type = None;
    let mut sequence = None;
    for field in proto_wire::fields(raw) {
        let (number, value) = field?;
        if let (DESCRIPTOR_FIELD, Raw::Len(body)) = (number, value) {
            let f = FieldDescriptorProto::decode(body).map_err(|e| e.to_string())?;
            let name = f.name();
            let slot = if name.eq_ignore_ascii_case(CHANGE_TYPE_COLUMN) {
                Some(&mut change_type)
            } else if name.eq_ignore_ascii_case(CHANGE_SEQUENCE_COLUMN) {
                Some(&mut sequence)
            } else {
                None
            };
            if let Some(slot) = slot {
                if f.r#type() != prost_types::field_descriptor_proto::Type::String {
                    return Err(format!("{name} must be a string field"));
                }
                *slot = u32::try_from(f.number()).ok();
                continue;
            }
        }
        put_field(&mut kept, number, value);
    }
    match (change_type, sequence) {
        (None, None) => Ok((kept, None)),
        (None, Some(_)) => {
            Err(format!("{CHANGE_SEQUENCE_COLUMN} is only allowed with {CHANGE_TYPE_COLUMN}"))
        }
        (Some(change_type), sequence) => Ok((kept, Some(PseudoFields { change_type, sequence }))),
    }
}

/// Every row without its pseudo-columns (for the ordinary row checks).
///
/// # Errors
/// The row errors, by index in the request.
pub fn plain_rows(
    rows: &[bytes::Bytes],
    pseudo: PseudoFields,
) -> Result<Vec<bytes::Bytes>, Vec<(usize, String)>> {
    let mut plain = Vec::with_capacity(rows.len());
    let mut errors = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match split_row(row, pseudo) {
            Ok((bytes, _)) => plain.push(bytes::Bytes::from(bytes)),
            Err(e) => errors.push((i, e)),
        }
    }
    if errors.is_empty() { Ok(plain) } else { Err(errors) }
}

/// Splits one row into its plain row bytes and its change.
///
/// # Errors
/// The row error the service reports: a missing or invalid `_CHANGE_TYPE`,
/// an invalid `_CHANGE_SEQUENCE_NUMBER`.
pub fn split_row(row: &[u8], pseudo: PseudoFields) -> Result<(Vec<u8>, Change), String> {
    let mut kept = Vec::with_capacity(row.len());
    let mut kind = None;
    let mut sequence = None;
    for field in proto_wire::fields(row) {
        let (number, value) = field?;
        let text = || match value {
            Raw::Len(b) => std::str::from_utf8(b).map_err(|_| "not UTF-8".to_string()),
            _ => Err("not a string".to_string()),
        };
        if number == pseudo.change_type {
            let t = text()?;
            kind = Some(ChangeType::from_pseudo_column(t).ok_or_else(|| {
                format!("Invalid {CHANGE_TYPE_COLUMN} value {t:?}: expected UPSERT or DELETE")
            })?);
        } else if Some(number) == pseudo.sequence {
            sequence = Some(ChangeSequence::parse(text()?)?);
        } else {
            put_field(&mut kept, number, value);
        }
    }
    let kind = kind.ok_or_else(|| format!("{CHANGE_TYPE_COLUMN} is missing"))?;
    Ok((kept, Change { kind, sequence }))
}

/// Checks a primary key against the table's columns: 1 to 16 top-level,
/// non-repeated columns, each named once.
///
/// # Errors
/// Why the key cannot be declared.
pub fn check_primary_key(columns: &[TableFieldSchema], key: &[String]) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_PRIMARY_KEY_COLUMNS {
        return Err(format!("a primary key has 1 to {MAX_PRIMARY_KEY_COLUMNS} columns"));
    }
    for (i, name) in key.iter().enumerate() {
        let Some(c) = columns.iter().find(|c| c.name.eq_ignore_ascii_case(name)) else {
            return Err(format!("primary key column {name} is not in the table"));
        };
        if c.mode() == Mode::Repeated {
            return Err(format!("primary key column {name} is REPEATED"));
        }
        if key.iter().take(i).any(|k| k.eq_ignore_ascii_case(name)) {
            return Err(format!("primary key column {name} is named twice"));
        }
    }
    Ok(())
}

/// The rows a read shows, by index into `rows`, in ingestion order. With a
/// primary key, per key the last change wins: by sequence number when both
/// have one (a tie goes to the later ingestion), by ingestion otherwise; a
/// row without a change (written outside CDC) counts as an `UPSERT` without
/// a sequence number. A winning `DELETE` shows nothing.
///
/// # Errors
/// A stored row that no longer decodes.
pub fn merged(
    rows: &[StoredRow],
    columns: &[TableFieldSchema],
    key: &[String],
) -> Result<Vec<usize>, String> {
    let key_index: Vec<usize> = key
        .iter()
        .filter_map(|k| columns.iter().position(|c| c.name.eq_ignore_ascii_case(k)))
        .collect();
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let values = row.values()?;
        let cells: Vec<_> = key_index.iter().map(|&k| values.get(k)).collect();
        entries.push((format!("{cells:?}"), row.change()));
    }
    Ok(pick(entries))
}

/// [`merged`] over (key, change) in ingestion order.
fn pick(entries: Vec<(String, Option<Change>)>) -> Vec<usize> {
    let upsert = Change { kind: ChangeType::Upsert, sequence: None };
    let mut winners: HashMap<String, (usize, Change)> = HashMap::new();
    for (i, (id, change)) in entries.into_iter().enumerate() {
        let change = change.unwrap_or_else(|| upsert.clone());
        let newer = match winners.get(&id) {
            Some((_, current)) => match (&change.sequence, &current.sequence) {
                (Some(new), Some(old)) => new >= old,
                _ => true,
            },
            None => true,
        };
        if newer {
            winners.insert(id, (i, change));
        }
    }
    let mut visible: Vec<usize> = winners
        .into_values()
        .filter(|(_, c)| c.kind == ChangeType::Upsert)
        .map(|(i, _)| i)
        .collect();
    visible.sort_unstable();
    visible
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Writes one field back (the canonical encoding of what was read).
fn put_field(out: &mut Vec<u8>, number: u32, value: Raw<'_>) {
    put_varint(out, (u64::from(number) << 3) | u64::from(value.wire_type()));
    match value {
        Raw::Varint(v) => put_varint(out, v),
        Raw::Fixed64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Raw::Len(b) => {
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Raw::Fixed32(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::storage::table_field_schema::Type;

    fn column(name: &str, mode: Mode) -> TableFieldSchema {
        TableFieldSchema {
            name: name.into(),
            r#type: Type::Int64 as i32,
            mode: mode as i32,
            ..Default::default()
        }
    }

    fn string_field(name: &str, number: i32) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            r#type: Some(prost_types::field_descriptor_proto::Type::String as i32),
            ..Default::default()
        }
    }

    #[test]
    fn splits_pseudo_columns_off_descriptor_and_rows() {
        let descriptor = prost_types::DescriptorProto {
            name: Some("Row".into()),
            field: vec![string_field("id", 1), string_field("_change_type", 7)],
            ..Default::default()
        };
        let (kept, pseudo) = split_descriptor(&descriptor.encode_to_vec()).unwrap();
        let pseudo = pseudo.unwrap();
        assert_eq!(pseudo, PseudoFields { change_type: 7, sequence: None });
        let kept = prost_types::DescriptorProto::decode(&kept[..]).unwrap();
        assert_eq!(kept.field.len(), 1);

        // id = "a", _change_type = "DELETE"
        let mut row = vec![0x0A, 1, b'a', 0x3A, 6];
        row.extend_from_slice(b"DELETE");
        let (plain, change) = split_row(&row, pseudo).unwrap();
        assert_eq!(plain, vec![0x0A, 1, b'a']);
        assert_eq!(change.kind, ChangeType::Delete);

        let mut bad = vec![0x3A, 6];
        bad.extend_from_slice(b"INSERT");
        assert!(split_row(&bad, pseudo).unwrap_err().contains("Invalid _CHANGE_TYPE"));
        assert!(split_row(&[0x0A, 1, b'a'], pseudo).unwrap_err().contains("missing"));

        let only_seq = prost_types::DescriptorProto {
            field: vec![string_field("_CHANGE_SEQUENCE_NUMBER", 2)],
            ..Default::default()
        };
        assert!(split_descriptor(&only_seq.encode_to_vec()).is_err());
    }

    #[test]
    fn primary_keys_are_checked() {
        let cols = vec![column("id", Mode::Required), column("tags", Mode::Repeated)];
        assert!(check_primary_key(&cols, &["ID".into()]).is_ok());
        assert!(check_primary_key(&cols, &[]).is_err());
        assert!(check_primary_key(&cols, &["tags".into()]).is_err());
        assert!(check_primary_key(&cols, &["nope".into()]).is_err());
        assert!(check_primary_key(&cols, &["id".into(), "id".into()]).is_err());
        let many: Vec<String> = (0..17).map(|i| format!("c{i}")).collect();
        assert!(check_primary_key(&cols, &many).is_err());
    }

    #[test]
    fn the_highest_sequence_wins_and_deletes_remove() {
        let seq = |s: &str| Some(ChangeSequence::parse(s).unwrap());
        let up = |k: &str, s: &str| {
            (k.to_string(), Some(Change { kind: ChangeType::Upsert, sequence: seq(s) }))
        };
        let del = |k: &str, s: &str| {
            (k.to_string(), Some(Change { kind: ChangeType::Delete, sequence: seq(s) }))
        };
        let entries = vec![
            up("1", "1"),
            up("1", "3"),
            up("1", "2"), // arrives late, older: loses
            up("2", "1"),
            del("2", "2"),
            ("3".to_string(), None), // no change: an upsert in ingestion order
            del("4", "5"),
            up("4", "5"), // same sequence number: the later ingestion wins
        ];
        assert_eq!(pick(entries), vec![1, 5, 7]);
    }
}
