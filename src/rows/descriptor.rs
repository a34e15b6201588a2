//! The compiled schema → the self-contained proto2 `DescriptorProto` sent as
//! `ProtoSchema.proto_descriptor` (fact sheet §2.3: nested types only, matched
//! by field name; §4.1 type mapping, as JsonStreamWriter builds it).
//!
//! A column whose name is not a proto identifier travels under Google's
//! `col_…` placeholder with the real name in the `column_name` field option
//! (extension 454943157, fact sheet §1.1). prost's `prost_types::FieldOptions`,
//! which the generated `ProtoSchema` uses, keeps no extensions, so [`build`]
//! cannot carry it; [`build_bytes`] writes the same descriptor as raw bytes
//! with the option set, for a sender that puts raw descriptor bytes on the wire.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use super::schema::{Field, Fields, Mode, Ty, is_proto_identifier};
use super::schema::{Key, WT_LEN, WT_VARINT};
use super::wire::{begin_len, end_len, put_bytes, put_key, put_varint};

/// `extend google.protobuf.FieldOptions { optional string column_name = 454943157; }`
/// (google/cloud/bigquery/storage/v1/annotations.proto).
const COLUMN_NAME_FIELD: u32 = 454_943_157;

/// The top-level message name; nested message names start with an upper-case
/// letter, field names are lower-case or `col_…`, so they never collide.
pub(crate) const ROOT: &str = "Row";

pub(crate) fn build(fields: &Fields) -> DescriptorProto {
    message(ROOT, &format!(".{ROOT}"), fields)
}

fn message(name: &str, full: &str, fields: &Fields) -> DescriptorProto {
    let mut msg = DescriptorProto { name: Some(name.to_string()), ..Default::default() };
    for f in &fields.fields {
        let mut fd = FieldDescriptorProto {
            name: Some(f.proto_name.clone()),
            number: Some(f.number as i32),
            label: Some(label(f) as i32),
            r#type: Some(proto_type(&f.ty) as i32),
            ..Default::default()
        };
        if let Some((prefix, sub)) = nested(f) {
            let type_name = format!("{prefix}{}", f.number);
            let type_full = format!("{full}.{type_name}");
            fd.type_name = Some(type_full.clone());
            msg.nested_type.push(message(&type_name, &type_full, sub));
        }
        msg.field.push(fd);
    }
    msg
}

fn label(f: &Field) -> Label {
    match f.mode {
        Mode::Nullable => Label::Optional,
        Mode::Required => Label::Required,
        Mode::Repeated => Label::Repeated,
    }
}

pub(crate) fn proto_type(ty: &Ty) -> Type {
    match ty {
        Ty::Bool => Type::Bool,
        Ty::Int64 | Ty::Timestamp | Ty::Time | Ty::DateTime => Type::Int64,
        Ty::Date => Type::Int32,
        Ty::Float64 => Type::Double,
        Ty::String(_) | Ty::Geography | Ty::Json | Ty::Interval => Type::String,
        Ty::Bytes(_) | Ty::Decimal(_) => Type::Bytes,
        Ty::Struct(_) | Ty::Range(..) => Type::Message,
    }
}

/// The descriptor of [`build`] serialized, with the `column_name` option on
/// every placeholder-named field (field numbers from descriptor.proto:
/// DescriptorProto name 1, field 2, nested_type 3; FieldDescriptorProto
/// name 1, number 3, label 4, type 5, type_name 6, options 8).
pub(crate) fn build_bytes(fields: &Fields) -> Vec<u8> {
    let mut out = Vec::new();
    message_bytes(ROOT, &format!(".{ROOT}"), fields, &mut out);
    out
}

fn message_bytes(name: &str, full: &str, fields: &Fields, out: &mut Vec<u8>) {
    let k = |n, wt| Key::new(n, wt);
    put_bytes(out, &k(1, WT_LEN), name.as_bytes());
    for f in &fields.fields {
        let at = begin_len(out, &k(2, WT_LEN));
        put_bytes(out, &k(1, WT_LEN), f.proto_name.as_bytes());
        put_key(out, &k(3, WT_VARINT));
        put_varint(out, u64::from(f.number));
        put_key(out, &k(4, WT_VARINT));
        put_varint(out, label(f) as u64);
        put_key(out, &k(5, WT_VARINT));
        put_varint(out, proto_type(&f.ty) as u64);
        if let Some((prefix, _)) = nested(f) {
            put_bytes(out, &k(6, WT_LEN), format!("{full}.{prefix}{}", f.number).as_bytes());
        }
        if !is_proto_identifier(&f.name) {
            let opts = begin_len(out, &k(8, WT_LEN));
            put_bytes(out, &k(COLUMN_NAME_FIELD, WT_LEN), f.name.as_bytes());
            end_len(out, opts);
        }
        end_len(out, at);
    }
    for f in &fields.fields {
        if let Some((prefix, sub)) = nested(f) {
            let type_name = format!("{prefix}{}", f.number);
            let at = begin_len(out, &k(3, WT_LEN));
            message_bytes(&type_name, &format!("{full}.{type_name}"), sub, out);
            end_len(out, at);
        }
    }
}

fn nested(f: &Field) -> Option<(&'static str, &Fields)> {
    match &f.ty {
        Ty::Struct(sub) => Some(("S", sub)),
        Ty::Range(bounds) => Some(("R", bounds)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::storage::TableSchema;
    use crate::pb::storage::table_field_schema::{Mode as M, Type as T};
    use prost::Message as _;
    use prost_reflect::{DescriptorPool, DynamicMessage, Value};

    use crate::rows::schema::test_column as col;

    #[test]
    fn raw_bytes_equal_the_prost_descriptor_plus_column_names() {
        let schema = TableSchema {
            fields: vec![
                col("id", T::Int64, M::Required, vec![]),
                col("user name", T::String, M::Nullable, vec![]),
                col(
                    "addr",
                    T::Struct,
                    M::Repeated,
                    vec![col("zip-code", T::String, M::Nullable, vec![])],
                ),
            ],
        };
        let fields = crate::rows::schema::compile(&schema).unwrap();
        let typed = build(&fields);
        let raw = build_bytes(&fields);
        // prost drops the unknown extension (leaving empty options): the rest is identical.
        let mut back = prost_types::DescriptorProto::decode(raw.as_slice()).unwrap();
        back.field[1].options = None;
        back.nested_type[0].field[0].options = None;
        assert_eq!(back, typed);
        // A pool that knows the extension reads the real names back.
        let pool = DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let ext =
            pool.get_extension_by_name("google.cloud.bigquery.storage.v1.column_name").unwrap();
        let desc = pool.get_message_by_name("google.protobuf.DescriptorProto").unwrap();
        let msg = DynamicMessage::decode(desc, raw.as_slice()).unwrap();
        let fields = msg.get_field_by_name("field").unwrap();
        let Value::List(list) = fields.as_ref() else { panic!() };
        let Value::Message(second) = &list[1] else { panic!() };
        assert_eq!(second.get_field_by_name("name").unwrap().as_str(), Some("col_dXNlciBuYW1l"));
        let Value::Message(opts) = second.get_field_by_name("options").unwrap().into_owned() else {
            panic!()
        };
        assert_eq!(opts.get_extension(&ext).as_str(), Some("user name"));
        assert_eq!(typed.nested_type[0].name.as_deref(), Some("S3"));
        assert_eq!(typed.field[2].type_name.as_deref(), Some(".Row.S3"));
    }
}
