//! Stream lifecycle from the fault endpoint, seen by a real client: a stream
//! garbage-collected now answers NOT_FOUND to every stream RPC, a re-created
//! table has none of its old streams, a dropped table is gone, and a held
//! request lands after its connection is reset.

use crate::emulator_support;

use emulator_support::*;
use kinesis_bigquery::pb::storage::write_stream::Type as StreamType;
use kinesis_bigquery::pb::storage::{FinalizeWriteStreamRequest, GetWriteStreamRequest};
use serde_json::json;
use tonic::Code;

async fn post(emu: &kinesis_bigquery::emulator::Emulator, body: serde_json::Value) -> u16 {
    let url = format!("{}/emulator/v1/faults", emu.rest_endpoint());
    reqwest::Client::new().post(&url).json(&body).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn expired_and_replaced_streams_answer_not_found() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s = create_stream(&mut c, &t, StreamType::Committed).await;
    let mut conn = Conn::open(&mut c, &s).await?;
    let r =
        conn.append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(1, "a")])).await?;
    assert_eq!(outcome(&r), Ok(Some(0)));

    assert_eq!(post(&emu, json!({"kind": "expire_stream", "name": s})).await, 200);
    let r = conn.append(request("", None, Some(1), vec![row(2, "b")])).await;
    let code = match r {
        Ok(resp) => outcome(&resp).unwrap_err().0,
        Err(status) => status.code(),
    };
    assert_eq!(code, Code::NotFound);
    let get = c.get_write_stream(GetWriteStreamRequest { name: s.clone(), view: 0 }).await;
    assert_eq!(get.unwrap_err().code(), Code::NotFound);
    let fin = c.finalize_write_stream(FinalizeWriteStreamRequest { name: s.clone() }).await;
    assert_eq!(fin.unwrap_err().code(), Code::NotFound);
    assert_eq!(ids(&emu.read_rows(&t)?), ["1"], "the rows it wrote stay in the table");
    // Expiring it again names no stream.
    assert_eq!(post(&emu, json!({"kind": "expire_stream", "name": s})).await, 400);

    let s2 = create_stream(&mut c, &t, StreamType::Committed).await;
    assert_eq!(post(&emu, json!({"kind": "recreate_table", "table": t.to_string()})).await, 200);
    let fin = c.finalize_write_stream(FinalizeWriteStreamRequest { name: s2 }).await;
    assert_eq!(fin.unwrap_err().code(), Code::NotFound);
    assert!(emu.read_rows(&t)?.is_empty(), "CREATE OR REPLACE empties the table");
    let s3 = create_stream(&mut c, &t, StreamType::Committed).await;

    assert_eq!(post(&emu, json!({"kind": "drop_table", "table": t.to_string()})).await, 200);
    let fin = c.finalize_write_stream(FinalizeWriteStreamRequest { name: s3 }).await;
    assert_eq!(fin.unwrap_err().code(), Code::NotFound);
    assert!(emu.read_rows(&t).is_err());
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_held_request_lands_after_its_connection_is_gone() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s = create_stream(&mut c, &t, StreamType::Committed).await;
    assert_eq!(post(&emu, json!({"kind": "hold"})).await, 200);
    let mut conn = Conn::open(&mut c, &s).await?;
    let err = conn
        .append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(1, "a")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    drop(conn);
    assert!(emu.read_rows(&t)?.is_empty(), "not applied yet");
    assert_eq!(emu.held(), 1);
    assert_eq!(post(&emu, json!({"kind": "release_held"})).await, 200);
    assert_eq!(ids(&emu.read_rows(&t)?), ["1"], "applied with nobody listening");
    // A retry of the same offset now finds it written.
    let mut conn = Conn::open(&mut c, &s).await?;
    let r =
        conn.append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(1, "a")])).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::AlreadyExists);
    emu.shutdown().await;
    Ok(())
}
