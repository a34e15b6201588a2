//! The emulator does what the service does when a table's schema changes:
//! `tables.patch` guarded by the etag (412 on a stale one), only the changes
//! the service allows, `tables.insert`, and the Storage Write side catching
//! up after a delay — `updated_schema` on open connections, a writer
//! descriptor with the new column refused until then.

use std::time::Duration;

use crate::emulator_support;

use emulator_support::*;
use kinesis_bigquery::emulator::EmulatorConfig;
use kinesis_bigquery::pb::storage::storage_error::StorageErrorCode;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use prost_types::field_descriptor_proto::{Label, Type as PType};
use serde_json::{Value, json};
use tonic::Code;

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (status, if body.is_empty() { Value::Null } else { serde_json::from_str(&body).unwrap() })
}

fn with(fields: &Value, extra: Value) -> Value {
    let mut f = fields.clone();
    f.as_array_mut().unwrap().push(extra);
    json!({"schema": {"fields": f}})
}

#[tokio::test]
async fn patch_is_guarded_by_the_etag_and_allows_only_additions() -> anyhow::Result<()> {
    let emu = start().await;
    let http = reqwest::Client::new();
    let base = format!("{}/bigquery/v2/projects/proj/datasets/ds/tables", emu.rest_endpoint());
    let body = json!({
        "tableReference": {"projectId": "proj", "datasetId": "ds", "tableId": "ev"},
        "schema": {"fields": [{"name": "id", "type": "INTEGER", "mode": "REQUIRED"},
                              {"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "STRING"}]}]}
    });
    let (code, created) = send(http.post(&base).json(&body)).await;
    assert_eq!(code, 200, "{created}");
    let url = format!("{base}/ev");
    let (_, got) = send(http.get(&url)).await;
    let etag0 = got["etag"].as_str().unwrap().to_string();
    assert_eq!(created["etag"], got["etag"]);
    let fields = got["schema"]["fields"].clone();

    // The first writer wins and the etag moves on.
    let add_a = with(&fields, json!({"name": "a", "type": "STRING", "mode": "NULLABLE"}));
    let (code, patched) = send(http.patch(&url).header("If-Match", &etag0).json(&add_a)).await;
    assert_eq!(code, 200, "{patched}");
    assert_ne!(patched["etag"].as_str(), Some(etag0.as_str()));

    // The second, still holding the old etag, is refused and changes nothing.
    let add_b = with(&fields, json!({"name": "b", "type": "INTEGER", "mode": "NULLABLE"}));
    let (code, err) = send(http.patch(&url).header("If-Match", &etag0).json(&add_b)).await;
    assert_eq!(code, 412, "{err}");
    assert_eq!(err["error"]["status"], "FAILED_PRECONDITION");
    assert_eq!(err["error"]["errors"][0]["reason"], "conditionNotMet");
    let (_, now) = send(http.get(&url)).await;
    let names: Vec<&str> = now["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(names, ["id", "r", "a"]);

    // Re-read, merge, retry with the fresh etag: both columns.
    let etag1 = now["etag"].as_str().unwrap().to_string();
    let merged = with(&now["schema"]["fields"], json!({"name": "b", "type": "INTEGER"}));
    let (code, ok) = send(http.patch(&url).header("If-Match", &etag1).json(&merged)).await;
    assert_eq!(code, 200, "{ok}");
    assert_eq!(ok["schema"]["fields"].as_array().map(Vec::len), Some(4));

    // A RECORD may gain a NULLABLE subfield.
    let mut nested = ok["schema"]["fields"].clone();
    nested[1]["fields"].as_array_mut().unwrap().push(json!({"name": "y", "type": "FLOAT"}));
    let (code, ok) = send(http.patch(&url).json(&json!({"schema": {"fields": nested}}))).await;
    assert_eq!(code, 200, "{ok}");
    assert_eq!(ok["schema"]["fields"][1]["fields"][1]["name"], "y");

    // What the service refuses: a REQUIRED new column, a retyped or dropped one.
    let current = ok["schema"]["fields"].clone();
    let required = with(&current, json!({"name": "c", "type": "STRING", "mode": "REQUIRED"}));
    let mut retyped = current.clone();
    retyped[2]["type"] = json!("INTEGER");
    let mut dropped = current.clone();
    dropped.as_array_mut().unwrap().pop();
    for bad in
        [required, json!({"schema": {"fields": retyped}}), json!({"schema": {"fields": dropped}})]
    {
        let (code, err) = send(http.patch(&url).json(&bad)).await;
        assert_eq!(code, 400, "{bad} → {err}");
    }
    // A patch without a schema still checks the etag.
    let (code, _) = send(http.patch(&url).header("If-Match", &etag0).json(&json!({}))).await;
    assert_eq!(code, 412);
    emu.shutdown().await;
    Ok(())
}

/// proto2 `Row { id = 1; name = 2; note = 3 }`: a writer that knows the new column.
fn descriptor_with_note() -> prost_types::DescriptorProto {
    let mut d = simple_descriptor();
    d.field.push(pfield("note", 3, PType::String, Label::Optional));
    d
}

#[tokio::test]
async fn writers_see_a_new_column_only_once_it_has_propagated() -> anyhow::Result<()> {
    // A delay no test waits out: the test ends the wait itself with `publish_schema`.
    let emu = start_with(EmulatorConfig {
        schema_delay: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let stream = t.default_stream();
    let mut old = Conn::open(&mut c, &stream).await?;
    let r =
        old.append(request(&stream, Some(&simple_descriptor()), None, vec![row(1, "a")])).await?;
    assert_eq!(outcome(&r), Ok(None));

    emu.add_columns(&t, vec![col("note", Type::String, Mode::Nullable)])?;
    // REST shows the column at once ...
    assert_eq!(emu.table_schema(&t)?.fields.len(), 3);
    // ... but writers do not: the new descriptor is refused, old connections hear nothing.
    let mut fresh = Conn::open(&mut c, &stream).await?;
    let with_note = Enc::new().int64(1, 2).string(2, "b").string(3, "n").done();
    let r = fresh
        .append(request(&stream, Some(&descriptor_with_note()), None, vec![with_note.clone()]))
        .await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);
    assert_eq!(storage_code(&r), Some(StorageErrorCode::SchemaMismatchExtraFields));
    let r = old.append(request(&stream, None, None, vec![row(3, "c")])).await?;
    assert_eq!((outcome(&r), r.updated_schema.is_some()), (Ok(None), false));

    emu.publish_schema(&t)?;
    // Once visible: the open connection is told once, and the new descriptor is taken.
    let r = old.append(request(&stream, None, None, vec![row(4, "d")])).await?;
    let names: Vec<String> =
        r.updated_schema.iter().flat_map(|s| s.fields.iter().map(|f| f.name.clone())).collect();
    assert_eq!(names, ["id", "name", "note"]);
    let r = old.append(request(&stream, None, None, vec![row(5, "e")])).await?;
    assert!(r.updated_schema.is_none());
    let mut fresh = Conn::open(&mut c, &stream).await?;
    let r = fresh
        .append(request(&stream, Some(&descriptor_with_note()), None, vec![with_note]))
        .await?;
    assert_eq!(outcome(&r), Ok(None));
    let rows = emu.read_rows(&t)?;
    assert_eq!(ids(&rows), ["1", "3", "4", "5", "2"]);
    assert_eq!(rows[4], json!({"id": "2", "name": "b", "note": "n"}));
    assert_eq!(rows[0]["note"], Value::Null);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_write_side_catches_up_after_the_configured_delay() -> anyhow::Result<()> {
    // A short delay, waited out by polling GetWriteStream (the writer's view), not a sleep.
    let emu = start_with(EmulatorConfig {
        schema_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    emu.add_columns(&t, vec![col("note", Type::String, Mode::Nullable)])?;
    let view = |c: &mut Client| {
        let req = kinesis_bigquery::pb::storage::GetWriteStreamRequest {
            name: t.default_stream(),
            view: kinesis_bigquery::pb::storage::WriteStreamView::Full as i32,
        };
        let mut c = c.clone();
        async move {
            c.get_write_stream(req)
                .await
                .map(|r| r.into_inner().table_schema.map(|s| s.fields.len()))
        }
    };
    assert_eq!(view(&mut c).await?, Some(2));
    let mut polls = 0;
    while view(&mut c).await? != Some(3) {
        polls += 1;
        assert!(polls < 1_000_000, "the schema never propagated");
        tokio::task::yield_now().await;
    }
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn tables_insert_creates_a_table_writers_can_use() -> anyhow::Result<()> {
    let emu = start().await;
    let http = reqwest::Client::new();
    let base = format!("{}/bigquery/v2/projects/proj/datasets/ds/tables", emu.rest_endpoint());
    let body = json!({
        "tableReference": {"projectId": "proj", "datasetId": "ds", "tableId": "made"},
        "schema": {"fields": [{"name": "id", "type": "INT64", "mode": "REQUIRED"},
                              {"name": "name", "type": "STRING"}]}
    });
    let (code, made) = send(http.post(&base).json(&body)).await;
    assert_eq!(code, 200, "{made}");
    let t: kinesis_bigquery::table::TableName = "proj.ds.made".parse()?;
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    let r = conn
        .append(request(&t.default_stream(), Some(&simple_descriptor()), None, vec![row(7, "x")]))
        .await?;
    assert_eq!(outcome(&r), Ok(None));
    assert_eq!(emu.read_rows(&t)?, vec![json!({"id": "7", "name": "x"})]);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_open_connection_hears_of_the_column_once_the_configured_delay_passes()
-> anyhow::Result<()> {
    // The delay runs out on its own (no `publish_schema`): appended rows on
    // an open connection poll it, each answered, until one carries the news.
    let emu = start_with(EmulatorConfig {
        schema_delay: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let stream = t.default_stream();
    let mut old = Conn::open(&mut c, &stream).await?;
    let r =
        old.append(request(&stream, Some(&simple_descriptor()), None, vec![row(1, "a")])).await?;
    assert_eq!(outcome(&r), Ok(None));
    emu.add_columns(&t, vec![col("note", Type::String, Mode::Nullable)])?;
    let mut id = 2;
    let announced = loop {
        let r = old.append(request(&stream, None, None, vec![row(id, "x")])).await?;
        assert_eq!(outcome(&r), Ok(None));
        if let Some(schema) = r.updated_schema {
            break schema;
        }
        // Until then a writer that already knows the column is refused.
        let mut fresh = Conn::open(&mut c, &stream).await?;
        let with_note = Enc::new().int64(1, 1000 + id).string(2, "n").string(3, "n").done();
        let refused = fresh
            .append(request(&stream, Some(&descriptor_with_note()), None, vec![with_note]))
            .await?;
        // The delay may end between the two calls; refused or taken, never anything else.
        if outcome(&refused).is_ok() {
            break old
                .append(request(&stream, None, None, vec![row(id + 1, "y")]))
                .await?
                .updated_schema
                .expect("the open connection is told once the column is visible");
        }
        assert_eq!(storage_code(&refused), Some(StorageErrorCode::SchemaMismatchExtraFields));
        id += 1;
        assert!(id < 1_000_000, "the schema never propagated");
        tokio::task::yield_now().await;
    };
    let names: Vec<&str> = announced.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["id", "name", "note"]);
    emu.shutdown().await;
    Ok(())
}
