//! `_default` and COMMITTED streams: visibility and offset semantics, through
//! a real tonic client over TCP.

use crate::emulator_support;

use emulator_support::*;
use kinesis_bigquery::pb::storage::storage_error::StorageErrorCode;
use kinesis_bigquery::pb::storage::write_stream::Type as StreamType;
use tonic::Code;

#[tokio::test]
async fn default_stream_rows_are_visible_and_offsets_are_refused() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;

    let r = conn
        .append(request(
            &t.default_stream(),
            Some(&simple_descriptor()),
            None,
            vec![row(1, "a"), row(2, "b")],
        ))
        .await?;
    assert_eq!(outcome(&r), Ok(None), "no offset comes back on _default");
    assert_eq!(r.write_stream, t.default_stream());
    let r = conn.append(request("", None, None, vec![row(3, "c")])).await?;
    assert_eq!(outcome(&r), Ok(None));

    let rows = emu.read_rows(&t)?;
    assert_eq!(
        rows,
        vec![
            serde_json::json!({"id": "1", "name": "a"}),
            serde_json::json!({"id": "2", "name": "b"}),
            serde_json::json!({"id": "3", "name": "c"}),
        ]
    );

    let r = conn.append(request("", None, Some(3), vec![row(4, "d")])).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);
    assert_eq!(emu.read_rows(&t)?.len(), 3, "a refused request writes nothing");
    assert_eq!(emu.routing_headers(), vec![format!("write_stream={}", t.default_stream())]);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn committed_stream_offsets_already_exists_and_out_of_range() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let stream = create_stream(&mut c, &t, StreamType::Committed).await;
    assert!(stream.starts_with(&format!("{}/streams/", t.path())));
    let mut conn = Conn::open(&mut c, &stream).await?;

    let r = conn
        .append(request(
            &stream,
            Some(&simple_descriptor()),
            Some(0),
            vec![row(1, "a"), row(2, "b")],
        ))
        .await?;
    assert_eq!(outcome(&r), Ok(Some(0)));
    assert_eq!(emu.read_rows(&t)?.len(), 2, "COMMITTED rows are visible once acked");

    // A retry of the same request: ALREADY_EXISTS, nothing written twice.
    let r = conn.append(request("", None, Some(0), vec![row(1, "a"), row(2, "b")])).await?;
    let (code, msg) = outcome(&r).unwrap_err();
    assert_eq!(code, Code::AlreadyExists);
    assert!(msg.contains("expected offset 2, received 0"), "{msg}");
    assert_eq!(storage_code(&r), Some(StorageErrorCode::OffsetAlreadyExists));

    // A gap: OUT_OF_RANGE.
    let r = conn.append(request("", None, Some(5), vec![row(9, "x")])).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::OutOfRange);
    assert_eq!(storage_code(&r), Some(StorageErrorCode::OffsetOutOfRange));

    // The right offset carries on, on the same connection.
    let r = conn.append(request("", None, Some(2), vec![row(3, "c")])).await?;
    assert_eq!(outcome(&r), Ok(Some(2)));
    // No offset: appended at the end.
    let r = conn.append(request("", None, None, vec![row(4, "d")])).await?;
    assert_eq!(outcome(&r), Ok(Some(3)));

    assert_eq!(ids(&emu.read_rows(&t)?), ["1", "2", "3", "4"]);
    emu.shutdown().await;
    Ok(())
}
