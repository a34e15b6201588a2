//! The writer's proto schema, checked against the table the way the service
//! checks it, before any row of a connection is decoded.
//!
//! The `DescriptorProto` of `ProtoSchema.writer_schema` must be
//! self-contained (fact sheet §1.3). It is loaded as a proto2 file into a
//! fresh prost-reflect pool that also knows the `column_name` extension, so a
//! field can target a column whose name is not a proto identifier (§1.1).
//! Columns are matched by name, case-insensitively (§2.3); a writer field the
//! table lacks is SCHEMA_MISMATCH_EXTRA_FIELDS and a proto type the column
//! cannot take (§4.1) is INVALID_ARGUMENT.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{
    Cardinality, DescriptorPool, ExtensionDescriptor, FieldDescriptor, Kind, MessageDescriptor,
};
use tonic::Code;

use super::errors::Failure;
use crate::pb::storage::TableFieldSchema;
use crate::pb::storage::storage_error::StorageErrorCode;
use crate::pb::storage::table_field_schema::{Mode, Type};

const COLUMN_NAME_EXTENSION: &str = "google.cloud.bigquery.storage.v1.column_name";

/// How one writer field feeds one table column.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    pub proto: FieldDescriptor,
    /// The proto field's number, kind and cardinality, looked up once.
    pub number: u32,
    pub kind: Kind,
    pub repeated: bool,
    /// Index of the column among its parent's fields (stable: columns are only appended).
    pub column: usize,
    pub bq_type: Type,
    /// For STRUCT columns: the nested message's plan.
    pub sub: Option<Plan>,
}

/// The mapping from a writer message to a table (or STRUCT) field list.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub fields: Vec<FieldPlan>,
}

impl Plan {
    /// The index of the field numbered `number`; writers emit fields in
    /// order, so `hint` (the index after the previous field) nearly always hits.
    pub fn position(&self, number: u32, hint: usize) -> Option<usize> {
        match self.fields.get(hint) {
            Some(f) if f.number == number => Some(hint),
            _ => self.fields.iter().position(|f| f.number == number),
        }
    }
}

/// A writer schema accepted for a table: the message to decode rows with and its plan.
#[derive(Debug, Clone)]
pub struct ProtoWriter {
    pub message: MessageDescriptor,
    pub plan: Plan,
}

fn base_pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).ok()).as_ref()
}

/// Loads `descriptor` (the raw bytes of the writer's `DescriptorProto`, so its
/// field options survive) and checks it against `columns`.
///
/// # Errors
/// INVALID_ARGUMENT for an unusable descriptor or an incompatible field;
/// INVALID_ARGUMENT with SCHEMA_MISMATCH_EXTRA_FIELDS for a field the table lacks.
pub fn load(
    descriptor: &[u8],
    columns: &[TableFieldSchema],
    entity: &str,
) -> Result<ProtoWriter, Failure> {
    let parsed = prost_types::DescriptorProto::decode(descriptor)
        .map_err(|e| Failure::invalid(format!("Invalid proto schema: {e}")))?;
    if parsed.name().is_empty() {
        return Err(Failure::invalid("Invalid proto schema: the descriptor has no name"));
    }
    let package = package_of(&parsed);
    let mut pool = base_pool().cloned().unwrap_or_default();
    let mut file = Vec::with_capacity(descriptor.len() + 64);
    prost::encoding::string::encode(1, &"emulator/writer_schema.proto".to_string(), &mut file);
    if !package.is_empty() {
        prost::encoding::string::encode(2, &package, &mut file);
    }
    prost::encoding::bytes::encode(4, &descriptor.to_vec(), &mut file);
    prost::encoding::string::encode(12, &"proto2".to_string(), &mut file);
    pool.decode_file_descriptor_proto(file.as_slice())
        .map_err(|e| Failure::invalid(format!("Invalid proto schema: {e}")))?;
    let full = if package.is_empty() {
        parsed.name().to_string()
    } else {
        format!("{package}.{}", parsed.name())
    };
    let message = pool
        .get_message_by_name(&full)
        .ok_or_else(|| Failure::invalid("Invalid proto schema: root message not found"))?;
    let ext = pool.get_extension_by_name(COLUMN_NAME_EXTENSION);
    let plan = plan_for(&message, columns, ext.as_ref(), "", entity, 0)?;
    Ok(ProtoWriter { message, plan })
}

/// A self-contained descriptor may still name its nested types fully
/// qualified, with the package of the file it came from
/// (`.pkg.Row.Nested`); the file we rebuild takes that package so those
/// names resolve. Relative names resolve either way.
fn package_of(d: &prost_types::DescriptorProto) -> String {
    let root = d.name();
    let mut names = Vec::new();
    collect_type_names(d, &mut names);
    for n in names {
        let Some(rest) = n.strip_prefix('.') else { continue };
        if rest == root || rest.starts_with(&format!("{root}.")) {
            return String::new();
        }
        if let Some(i) = rest
            .find(&format!(".{root}."))
            .or_else(|| rest.strip_suffix(&format!(".{root}")).map(str::len))
        {
            return rest[..i].to_string();
        }
    }
    String::new()
}

fn collect_type_names(d: &prost_types::DescriptorProto, out: &mut Vec<String>) {
    out.extend(
        d.field.iter().filter(|f| !f.type_name().is_empty()).map(|f| f.type_name().to_string()),
    );
    for n in &d.nested_type {
        collect_type_names(n, out);
    }
}

/// The column a writer field targets: the `column_name` extension if set, else the field name.
fn column_name(f: &FieldDescriptor, ext: Option<&ExtensionDescriptor>) -> String {
    if let Some(ext) = ext {
        let opts = f.options();
        if opts.has_extension(ext)
            && let Some(s) = opts.get_extension(ext).as_str()
        {
            return s.to_string();
        }
    }
    f.name().to_string()
}

const MAX_DEPTH: usize = 15;

fn plan_for(
    msg: &MessageDescriptor,
    columns: &[TableFieldSchema],
    ext: Option<&ExtensionDescriptor>,
    path: &str,
    entity: &str,
    depth: usize,
) -> Result<Plan, Failure> {
    if depth > MAX_DEPTH {
        // BigQuery nests RECORDs at most 15 levels deep.
        return Err(Failure::invalid("Invalid proto schema: nesting deeper than 15 levels"));
    }
    let mut plan = Plan::default();
    for f in msg.fields() {
        let name = column_name(&f, ext);
        let Some(column) = columns.iter().position(|c| c.name.eq_ignore_ascii_case(&name)) else {
            return Err(Failure::storage(
                Code::InvalidArgument,
                StorageErrorCode::SchemaMismatchExtraFields,
                entity,
                format!(
                    "Input schema has more fields than BigQuery schema, extra fields: '{path}{name}'"
                ),
            ));
        };
        let col = &columns[column];
        let bq_type = Type::try_from(col.r#type).unwrap_or(Type::Unspecified);
        let mismatch = |why: &str| {
            Failure::invalid(format!(
                "The proto field mismatched with BigQuery field at {path}{name}, the proto field type {}, \
                 BigQuery field type {}: {why}",
                kind_name(&f.kind()),
                bq_type.as_str_name()
            ))
        };
        if f.is_map() {
            return Err(mismatch("map fields are not supported"));
        }
        let repeated_col = col.mode == Mode::Repeated as i32;
        match (f.cardinality() == Cardinality::Repeated, repeated_col) {
            (true, false) => return Err(mismatch("a repeated field needs a REPEATED column")),
            (false, true) => return Err(mismatch("a REPEATED column needs a repeated field")),
            _ => {}
        }
        let sub = match (bq_type, f.kind()) {
            (Type::Struct, Kind::Message(m)) => {
                Some(plan_for(&m, &col.fields, ext, &format!("{path}{name}."), entity, depth + 1)?)
            }
            (Type::Struct, _) => return Err(mismatch("a STRUCT column needs a message field")),
            (Type::Range, Kind::Message(m)) => {
                let elem =
                    col.range_element_type.as_ref().and_then(|e| Type::try_from(e.r#type).ok());
                let elem = elem.unwrap_or(Type::Unspecified);
                for part in m.fields() {
                    if part.name() != "start" && part.name() != "end" {
                        return Err(mismatch("a RANGE message has only `start` and `end`"));
                    }
                    if !compatible(elem, &part.kind()) {
                        return Err(mismatch("the RANGE bounds do not fit the element type"));
                    }
                }
                None
            }
            (_, kind) => {
                if !compatible(bq_type, &kind) {
                    return Err(mismatch("incompatible types"));
                }
                None
            }
        };
        plan.fields.push(FieldPlan {
            number: f.number(),
            kind: f.kind(),
            repeated: f.cardinality() == Cardinality::Repeated,
            proto: f,
            column,
            bq_type,
            sub,
        });
    }
    Ok(plan)
}

/// Well-known wrapper/value messages arrive inlined in the self-contained
/// descriptor, so they are recognized by their simple name and shape.
pub fn well_known(m: &MessageDescriptor) -> Option<&'static str> {
    const NAMES: [&str; 11] = [
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
        "Timestamp",
        "Duration",
    ];
    let name = NAMES.into_iter().find(|n| *n == m.name())?;
    let shape_ok = match name {
        "Timestamp" | "Duration" => m.get_field_by_name("seconds").is_some_and(|f| f.number() == 1),
        _ => m.get_field_by_name("value").is_some_and(|f| f.number() == 1),
    };
    shape_ok.then_some(name)
}

/// The proto types a column of `t` accepts (fact sheet §4.1), sint/fixed
/// variants counting as their plain integer type.
pub fn compatible(t: Type, kind: &Kind) -> bool {
    use Kind as K;
    let signed32 = matches!(kind, K::Int32 | K::Sint32 | K::Sfixed32);
    let signed64 = matches!(kind, K::Int64 | K::Sint64 | K::Sfixed64);
    let unsigned32 = matches!(kind, K::Uint32 | K::Fixed32);
    let unsigned64 = matches!(kind, K::Uint64 | K::Fixed64);
    let wk = match kind {
        K::Message(m) => well_known(m),
        _ => None,
    };
    let wk_is = |names: &[&str]| wk.is_some_and(|w| names.contains(&w));
    match t {
        Type::Bool => {
            signed32
                || signed64
                || unsigned32
                || unsigned64
                || matches!(kind, K::Bool)
                || wk_is(&["BoolValue"])
        }
        Type::Bytes => matches!(kind, K::Bytes | K::String) || wk_is(&["BytesValue"]),
        Type::Int64 => {
            signed32
                || signed64
                || unsigned32
                || matches!(kind, K::Enum(_))
                || wk_is(&["Int32Value", "Int64Value", "UInt32Value"])
        }
        Type::Double => {
            matches!(kind, K::Double | K::Float) || wk_is(&["DoubleValue", "FloatValue"])
        }
        Type::String => matches!(kind, K::String | K::Enum(_)) || wk_is(&["StringValue"]),
        Type::Numeric | Type::Bignumeric => {
            signed32
                || signed64
                || unsigned32
                || unsigned64
                || matches!(kind, K::Double | K::Float | K::String | K::Bytes)
                || wk_is(&["BytesValue"])
        }
        Type::Timestamp => signed32 || signed64 || unsigned32 || wk_is(&["Timestamp"]),
        Type::Date => signed32 || signed64 || matches!(kind, K::String),
        Type::Datetime | Type::Time => signed64 || matches!(kind, K::String),
        Type::Geography | Type::Json => matches!(kind, K::String),
        Type::Interval => matches!(kind, K::String) || wk_is(&["Duration"]),
        Type::Struct | Type::Range | Type::Unspecified => false,
    }
}

pub fn kind_name(k: &Kind) -> String {
    match k {
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar rows of fact sheet §4.1, both what is accepted and what is not.
    #[test]
    fn accepted_proto_types_follow_the_docs_table() {
        use Kind as K;
        let accepts: &[(Type, &[Kind])] = &[
            (Type::Bool, &[K::Bool, K::Int32, K::Int64, K::Uint32, K::Uint64]),
            (Type::Bytes, &[K::Bytes, K::String]),
            (Type::Int64, &[K::Int32, K::Int64, K::Uint32, K::Sint64, K::Sfixed32]),
            (Type::Double, &[K::Double, K::Float]),
            (Type::String, &[K::String]),
            (
                Type::Numeric,
                &[
                    K::Int32,
                    K::Int64,
                    K::Uint32,
                    K::Uint64,
                    K::Double,
                    K::Float,
                    K::String,
                    K::Bytes,
                ],
            ),
            (Type::Bignumeric, &[K::Int64, K::String, K::Bytes]),
            (Type::Timestamp, &[K::Int64, K::Int32, K::Uint32]),
            (Type::Date, &[K::Int32, K::Int64, K::String]),
            (Type::Datetime, &[K::String, K::Int64]),
            (Type::Time, &[K::String, K::Int64]),
            (Type::Geography, &[K::String]),
            (Type::Json, &[K::String]),
            (Type::Interval, &[K::String]),
        ];
        for (t, kinds) in accepts {
            for k in *kinds {
                assert!(compatible(*t, k), "{t:?} should take {k:?}");
            }
        }
        let refuses: &[(Type, &[Kind])] = &[
            (Type::Bool, &[K::String, K::Double]),
            (Type::Bytes, &[K::Int64]),
            (Type::Int64, &[K::Uint64, K::String, K::Double, K::Bool]),
            (Type::Double, &[K::Int64, K::String]),
            (Type::String, &[K::Bytes, K::Int64]),
            (Type::Timestamp, &[K::String, K::Uint64, K::Double]),
            (Type::Date, &[K::Double, K::Bytes]),
            (Type::Datetime, &[K::Int32]),
            (Type::Json, &[K::Bytes]),
            (Type::Struct, &[K::String]),
        ];
        for (t, kinds) in refuses {
            for k in *kinds {
                assert!(!compatible(*t, k), "{t:?} should refuse {k:?}");
            }
        }
    }
}

#[cfg(test)]
mod proto3_tests {
    use super::*;
    use crate::pb::storage::table_field_schema::Mode;
    use prost_types::field_descriptor_proto::{Label, Type as PType};
    use prost_types::{DescriptorProto, FieldDescriptorProto, OneofDescriptorProto};

    #[test]
    fn proto3_optional_descriptors_load() {
        let d = DescriptorProto {
            name: Some("Row".into()),
            field: vec![FieldDescriptorProto {
                name: Some("id".into()),
                number: Some(1),
                r#type: Some(PType::Int64 as i32),
                label: Some(Label::Optional as i32),
                oneof_index: Some(0),
                proto3_optional: Some(true),
                ..Default::default()
            }],
            oneof_decl: vec![OneofDescriptorProto {
                name: Some("_id".into()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let cols = vec![TableFieldSchema {
            name: "id".into(),
            r#type: Type::Int64 as i32,
            mode: Mode::Nullable as i32,
            ..Default::default()
        }];
        let w = load(&d.encode_to_vec(), &cols, "s");
        assert!(w.is_ok(), "{:?}", w.err());
    }
}
