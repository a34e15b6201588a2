//! Writer schema checks against the table: extra fields, incompatible
//! types, case-insensitive names, the `column_name` extension and nested
//! type names given relative or fully qualified.

use crate::emulator_support;

use emulator_support::*;
use kinesis_bigquery::pb::storage::storage_error::StorageErrorCode;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::pb::storage::{ProtoRows, TableSchema};
use prost_types::field_descriptor_proto::{Label, Type as PType};
use tonic::Code;

#[tokio::test]
async fn a_field_the_table_lacks_is_schema_mismatch_extra_fields() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let mut d = simple_descriptor();
    d.field.push(pfield("surprise", 3, PType::String, Label::Optional));
    let r = conn.append(request(&t.default_stream(), Some(&d), None, vec![row(1, "a")])).await?;
    let (code, msg) = outcome(&r).unwrap_err();
    assert_eq!(code, Code::InvalidArgument);
    assert!(msg.contains("surprise"), "{msg}");
    assert_eq!(storage_code(&r), Some(StorageErrorCode::SchemaMismatchExtraFields));
    assert!(emu.read_rows(&t)?.is_empty());
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn incompatible_types_and_cardinality_are_invalid_argument() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let cases = [
        message("Row", vec![pfield("id", 1, PType::String, Label::Optional)]), // STRING → INT64
        message("Row", vec![pfield("id", 1, PType::Uint64, Label::Optional)]), // uint64 → INT64 is not listed
        message("Row", vec![pfield("name", 1, PType::Double, Label::Optional)]), // double → STRING
        message("Row", vec![pfield("id", 1, PType::Int64, Label::Repeated)]), // repeated → non-REPEATED
    ];
    for d in cases {
        let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
        let r = conn.append(request(&t.default_stream(), Some(&d), None, vec![])).await?;
        assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument, "{d:?}");
        assert_eq!(storage_code(&r), None);
    }
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn names_match_case_insensitively_and_by_column_name_extension() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    let schema = TableSchema {
        fields: vec![
            col("Id", Type::Int64, Mode::Required),
            col("my-col", Type::String, Mode::Nullable),
        ],
    };
    emu.create_table(&t, schema)?;
    let id = prost::Message::encode_to_vec(&pfield("ID", 1, PType::Int64, Label::Optional));
    let other = field_with_column_name(
        &pfield("col_bXktY29s", 2, PType::String, Label::Optional),
        "my-col",
    );
    let req = RawRequest {
        write_stream: t.default_stream(),
        proto_rows: Some(RawProtoData {
            writer_schema: Some(RawSchema {
                proto_descriptor: descriptor_bytes("Row", &[id, other]),
            }),
            rows: Some(ProtoRows {
                serialized_rows: vec![Enc::new().int64(1, 7).string(2, "dash").done().into()],
            }),
        }),
    };
    let out = raw_append(&emu, vec![req]).await;
    let r = out[0].as_ref().map_err(|s| anyhow::anyhow!("{s:?}"))?;
    assert_eq!(outcome(r), Ok(None));
    assert_eq!(emu.read_rows(&t)?, vec![serde_json::json!({"Id": "7", "my-col": "dash"})]);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn nested_types_resolve_relative_or_fully_qualified() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    let schema = TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            record("inner", Mode::Nullable, vec![col("x", Type::String, Mode::Nullable)]),
        ],
    };
    emu.create_table(&t, schema)?;
    let mut c = client(&emu).await;
    for type_name in ["Inner", ".Row.Inner", ".some.pkg.Row.Inner"] {
        let mut d = message(
            "Row",
            vec![
                pfield("id", 1, PType::Int64, Label::Optional),
                pmsg_field("inner", 2, type_name, Label::Optional),
            ],
        );
        d.nested_type.push(message("Inner", vec![pfield("x", 1, PType::String, Label::Optional)]));
        let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
        let r = Enc::new().int64(1, 1).message(2, Enc::new().string(1, type_name)).done();
        let resp = conn.append(request(&t.default_stream(), Some(&d), None, vec![r])).await?;
        assert_eq!(outcome(&resp), Ok(None), "{type_name}: {resp:?}");
    }
    let rows = emu.read_rows(&t)?;
    assert_eq!(rows[2], serde_json::json!({"id": "1", "inner": {"x": ".some.pkg.Row.Inner"}}));
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn malformed_descriptors_are_errors_not_crashes() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    for garbage in [vec![0xFF, 0xFF, 0xFF], vec![], descriptor_bytes("Row", &[vec![0x0A, 0x80]])] {
        let req = RawRequest {
            write_stream: t.default_stream(),
            proto_rows: Some(RawProtoData {
                writer_schema: Some(RawSchema { proto_descriptor: garbage }),
                rows: None,
            }),
        };
        let out = raw_append(&emu, vec![req]).await;
        match &out[0] {
            Ok(r) => assert_eq!(outcome(r).unwrap_err().0, Code::InvalidArgument),
            Err(s) => assert_eq!(s.code(), Code::InvalidArgument),
        }
    }
    // A missing type reference is refused too.
    let mut c = client(&emu).await;
    let d = message("Row", vec![pmsg_field("id", 1, ".Nope", Label::Optional)]);
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn.append(request(&t.default_stream(), Some(&d), None, vec![])).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);
    emu.shutdown().await;
    Ok(())
}
