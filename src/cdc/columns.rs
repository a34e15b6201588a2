//! The two pseudo-columns on the wire: two STRING fields added to the
//! writer's proto descriptor, numbered after the table's own fields, and
//! appended to every row the encoder writes. Protobuf fields may come in
//! any order and a message is the concatenation of its fields, so the
//! pseudo-columns follow the row bytes without touching them.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use super::{CdcSettings, ChangeSequence, ChangeType};
use crate::rows::RecordMeta;

/// Pseudo-column names (BigQuery matches them case-insensitively; this is
/// how the documentation spells them).
pub const CHANGE_TYPE_COLUMN: &str = "_CHANGE_TYPE";
pub const CHANGE_SEQUENCE_COLUMN: &str = "_CHANGE_SEQUENCE_NUMBER";

/// `DescriptorProto.field` (field 2, length-delimited).
const DESCRIPTOR_FIELD_KEY: u8 = (2 << 3) | 2;

/// One record whose change cannot be written: it goes to the dead-letter
/// queue with this reason, and nothing else of its batch is affected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct CdcError {
    /// The configured field the value was read from (empty for the Kinesis
    /// position).
    pub field: String,
    pub why: String,
}

/// What the encoder adds for CDC: where the change type and sequence number
/// come from, and the field numbers they travel under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CdcColumns {
    settings: CdcSettings,
    type_number: u32,
    sequence_number: u32,
}

impl CdcColumns {
    /// Numbers the pseudo-columns after every field of `descriptor` (the
    /// table's top-level row message).
    pub fn new(settings: CdcSettings, descriptor: &DescriptorProto) -> Self {
        let last = descriptor.field.iter().filter_map(|f| f.number).max().unwrap_or(0);
        let last = u32::try_from(last).unwrap_or(0);
        Self { settings, type_number: last + 1, sequence_number: last + 2 }
    }

    pub fn settings(&self) -> &CdcSettings {
        &self.settings
    }

    fn fields(&self) -> [FieldDescriptorProto; 2] {
        let field = |name: &str, number: u32| FieldDescriptorProto {
            name: Some(name.to_string()),
            number: Some(number as i32),
            label: Some(Label::Optional as i32),
            r#type: Some(Type::String as i32),
            ..Default::default()
        };
        [
            field(CHANGE_TYPE_COLUMN, self.type_number),
            field(CHANGE_SEQUENCE_COLUMN, self.sequence_number),
        ]
    }

    /// Adds the pseudo-columns to the typed descriptor.
    pub fn extend_descriptor(&self, descriptor: &mut DescriptorProto) {
        descriptor.field.extend(self.fields());
    }

    /// Adds the pseudo-columns to a serialized `DescriptorProto` (the raw
    /// bytes that keep the `column_name` options): appended `field` entries
    /// merge into the repeated field.
    pub fn extend_descriptor_bytes(&self, bytes: &mut Vec<u8>) {
        for f in self.fields() {
            let body = f.encode_to_vec();
            bytes.push(DESCRIPTOR_FIELD_KEY);
            put_varint(bytes, body.len() as u64);
            bytes.extend_from_slice(&body);
        }
    }

    /// The change a record carries.
    ///
    /// # Errors
    /// [`CdcError`] when its change type or sequence number cannot be read.
    pub fn change_of(
        &self,
        json: &[u8],
        meta: &RecordMeta<'_>,
    ) -> Result<(ChangeType, ChangeSequence), CdcError> {
        let fail = |field: String| move |why: String| CdcError { field: field.clone(), why };
        let change = match &self.settings.change_type_field {
            None => ChangeType::Upsert,
            Some(path) => {
                let name = path.to_string();
                let value = path.find(json).map_err(fail(name.clone()))?;
                ChangeType::from_field(&name, value).map_err(fail(name))?
            }
        };
        let sequence = match &self.settings.sequence_field {
            None => ChangeSequence::from_kinesis(meta.sequence_number, meta.sub_sequence_number)
                .map_err(fail(String::new()))?,
            Some(path) => {
                let name = path.to_string();
                let value = path.find(json).map_err(fail(name.clone()))?;
                ChangeSequence::from_field(&name, value).map_err(fail(name))?
            }
        };
        Ok((change, sequence))
    }

    /// Appends the record's `_CHANGE_TYPE` and `_CHANGE_SEQUENCE_NUMBER` to
    /// the row just encoded at the end of `out`.
    ///
    /// # Errors
    /// [`CdcError`]; `out` is left as it was.
    pub fn append(
        &self,
        json: &[u8],
        meta: &RecordMeta<'_>,
        out: &mut Vec<u8>,
    ) -> Result<(), CdcError> {
        let (change, sequence) = self.change_of(json, meta)?;
        put_string(out, self.type_number, change.as_str());
        put_string(out, self.sequence_number, sequence.as_str());
        Ok(())
    }

    /// Bytes [`Self::append`] adds to a row at most (for request sizing).
    pub const MAX_ROW_BYTES: usize = 2 * (5 + 1) + 6 + (4 * 17 - 1);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_string(out: &mut Vec<u8>, number: u32, s: &str) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::{DescriptorPool, DynamicMessage, Value};
    use prost_types::FileDescriptorProto;

    fn row_descriptor() -> DescriptorProto {
        DescriptorProto {
            name: Some("Row".into()),
            field: vec![FieldDescriptorProto {
                name: Some("id".into()),
                number: Some(1),
                label: Some(Label::Optional as i32),
                r#type: Some(Type::Int64 as i32),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn meta() -> RecordMeta<'static> {
        RecordMeta {
            sequence_number: "49590338271490256608559692538361571095921575989136588898",
            sub_sequence_number: 2,
            ..Default::default()
        }
    }

    fn decode(descriptor: DescriptorProto, row: &[u8]) -> DynamicMessage {
        let file = FileDescriptorProto {
            name: Some("row.proto".into()),
            message_type: vec![descriptor],
            ..Default::default()
        };
        let pool = DescriptorPool::from_file_descriptor_set(prost_types::FileDescriptorSet {
            file: vec![file],
        })
        .unwrap();
        let msg = pool.get_message_by_name("Row").unwrap();
        DynamicMessage::decode(msg, row).unwrap()
    }

    #[test]
    fn rows_decode_with_the_extended_descriptor() {
        let settings =
            CdcSettings { change_type_field: Some("op".parse().unwrap()), sequence_field: None };
        let columns = CdcColumns::new(settings, &row_descriptor());
        let mut raw = row_descriptor().encode_to_vec();
        columns.extend_descriptor_bytes(&mut raw);
        let from_bytes = DescriptorProto::decode(&raw[..]).unwrap();
        let mut typed = row_descriptor();
        columns.extend_descriptor(&mut typed);
        assert_eq!(from_bytes, typed);

        let mut row = vec![0x08, 0x07]; // id = 7
        columns.append(br#"{"id":7,"op":"d"}"#, &meta(), &mut row).unwrap();
        let msg = decode(typed, &row);
        let get = |name: &str| msg.get_field_by_name(name).unwrap().into_owned();
        assert_eq!(get("id"), Value::I64(7));
        assert_eq!(get(CHANGE_TYPE_COLUMN), Value::String("DELETE".into()));
        let Value::String(seq) = get(CHANGE_SEQUENCE_COLUMN) else { panic!() };
        assert!(seq.ends_with("/0000000000000002"), "{seq}");
        assert!(seq.len() <= CdcColumns::MAX_ROW_BYTES);
    }

    #[test]
    fn unreadable_changes_name_their_field_and_leave_the_row() {
        let settings = CdcSettings {
            change_type_field: Some("metadata.operation".parse().unwrap()),
            sequence_field: Some("lsn".parse().unwrap()),
        };
        let columns = CdcColumns::new(settings, &row_descriptor());
        let mut row = vec![0x08, 0x07];
        let e = columns
            .append(br#"{"metadata":{"operation":"drop-table"},"lsn":1}"#, &meta(), &mut row)
            .unwrap_err();
        assert_eq!(e.field, "metadata.operation");
        let e = columns
            .append(br#"{"metadata":{"operation":"update"},"lsn":-1}"#, &meta(), &mut row)
            .unwrap_err();
        assert_eq!(e.field, "lsn");
        assert_eq!(row, vec![0x08, 0x07]);
        assert_eq!(
            columns.change_of(br#"{"metadata":{"operation":"load"},"lsn":"0/1"}"#, &meta()),
            Ok((
                ChangeType::Upsert,
                ChangeSequence::parse("0000000000000000/0000000000000001").unwrap()
            ))
        );
    }
}
