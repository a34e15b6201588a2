//! The compiled schema → the self-contained proto2 `DescriptorProto` sent as
//! `ProtoSchema.proto_descriptor` (fact sheet §2.3: nested types only, matched
//! by field name; §4.1 type mapping, as JsonStreamWriter builds it).
//!
//! Known gap: a column whose name is not a proto identifier travels under
//! Google's `col_…` placeholder, and the real name belongs in the
//! `column_name` field option (extension 454943157). prost's
//! `prost_types::FieldOptions`, which the generated `ProtoSchema` uses, keeps
//! no extensions, so the option cannot be carried by this type; the
//! placeholder is reversible (base64url of the name) for servers that decode it.

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto};

use super::schema::{Field, Fields, Mode, Ty};

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
        let nested = match &f.ty {
            Ty::Struct(sub) => Some(("S", sub)),
            Ty::Range(bounds) => Some(("R", bounds)),
            _ => None,
        };
        if let Some((prefix, sub)) = nested {
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
