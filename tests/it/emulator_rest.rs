//! The REST subset over real HTTP: tables.insert/get/patch/delete,
//! tabledata.list paging and value forms, datasets, and the faults endpoint.

use crate::emulator_support;

use emulator_support::*;
use serde_json::{Value, json};
use tonic::Code;

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (status, if body.is_empty() { Value::Null } else { serde_json::from_str(&body).unwrap() })
}

#[tokio::test]
async fn tables_insert_get_patch_delete() -> anyhow::Result<()> {
    let emu = start().await;
    let http = reqwest::Client::new();
    let base = format!("{}/bigquery/v2/projects/proj/datasets", emu.rest_endpoint());
    let (code, ds) = send(
        http.post(&base)
            .json(&json!({"datasetReference": {"projectId": "proj", "datasetId": "ds"}})),
    )
    .await;
    assert_eq!((code, ds["datasetReference"]["datasetId"].clone()), (200, json!("ds")));

    let body = json!({
        "tableReference": {"projectId": "proj", "datasetId": "ds", "tableId": "events"},
        "schema": {"fields": [{"name": "id", "type": "INT64", "mode": "REQUIRED"},
                              {"name": "r", "type": "RECORD", "fields": [{"name": "x", "type": "FLOAT"}]}]}
    });
    let (code, table) = send(http.post(format!("{base}/ds/tables")).json(&body)).await;
    assert_eq!(code, 200, "{table}");
    assert_eq!(table["kind"], "bigquery#table");
    assert_eq!(table["id"], "proj:ds.events");
    assert_eq!(
        table["tableReference"],
        json!({"projectId": "proj", "datasetId": "ds", "tableId": "events"})
    );
    assert_eq!(
        table["schema"]["fields"][0],
        json!({"name": "id", "type": "INTEGER", "mode": "REQUIRED"})
    );
    assert_eq!(table["schema"]["fields"][1]["type"], "RECORD");
    assert_eq!(table["numRows"], "0");
    assert!(table["etag"].is_string());

    let (code, err) = send(http.post(format!("{base}/ds/tables")).json(&body)).await;
    assert_eq!((code, err["error"]["code"].clone()), (409, json!(409)));

    // PATCH adds a NULLABLE column; a REQUIRED one is refused.
    let mut fields = table["schema"]["fields"].clone();
    fields
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "note", "type": "STRING", "mode": "NULLABLE"}));
    let (code, patched) = send(
        http.patch(format!("{base}/ds/tables/events")).json(&json!({"schema": {"fields": fields}})),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["schema"]["fields"][2]["name"], "note");
    let mut bad = patched["schema"]["fields"].clone();
    bad.as_array_mut().unwrap().push(json!({"name": "must", "type": "STRING", "mode": "REQUIRED"}));
    let (code, _) = send(
        http.patch(format!("{base}/ds/tables/events")).json(&json!({"schema": {"fields": bad}})),
    )
    .await;
    assert_eq!(code, 400);

    let (code, got) = send(http.get(format!("{base}/ds/tables/events"))).await;
    assert_eq!((code, got["schema"]["fields"].as_array().map(Vec::len)), (200, Some(3)));
    let (code, _) = send(http.delete(format!("{base}/ds/tables/events"))).await;
    assert_eq!(code, 204);
    let (code, err) = send(http.get(format!("{base}/ds/tables/events"))).await;
    assert_eq!(code, 404);
    assert_eq!(err["error"]["errors"][0]["reason"], "notFound");
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn tabledata_list_pages_and_renders_values_as_the_api_does() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    let schema = kinesis_bigquery::emulator::parse_bq_schema(
        r#"[{"name":"id","type":"INTEGER","mode":"REQUIRED"},{"name":"name","type":"STRING"},
            {"name":"tags","type":"STRING","mode":"REPEATED"},
            {"name":"r","type":"RECORD","fields":[{"name":"ts","type":"TIMESTAMP"}]}]"#,
    )?;
    emu.create_table(&t, schema)?;
    let mut d = message(
        "Row",
        vec![
            pfield(
                "id",
                1,
                prost_types::field_descriptor_proto::Type::Int64,
                prost_types::field_descriptor_proto::Label::Optional,
            ),
            pfield(
                "tags",
                3,
                prost_types::field_descriptor_proto::Type::String,
                prost_types::field_descriptor_proto::Label::Repeated,
            ),
            pmsg_field("r", 4, "R", prost_types::field_descriptor_proto::Label::Optional),
        ],
    );
    d.nested_type.push(message(
        "R",
        vec![pfield(
            "ts",
            1,
            prost_types::field_descriptor_proto::Type::Int64,
            prost_types::field_descriptor_proto::Label::Optional,
        )],
    ));
    let rows = (0..5)
        .map(|i| {
            Enc::new()
                .int64(1, i)
                .string(3, "a")
                .string(3, "b")
                .message(4, Enc::new().int64(1, 1_500_000))
                .done()
        })
        .collect();
    let mut c = client(&emu).await;
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    assert!(
        outcome(&conn.append(request(&t.default_stream(), Some(&d), None, rows)).await?).is_ok()
    );

    let http = reqwest::Client::new();
    let url = format!(
        "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}/data",
        emu.rest_endpoint(),
        t.project(),
        t.dataset(),
        t.table()
    );
    let (code, page) = send(
        http.get(&url).query(&[("maxResults", "2"), ("formatOptions.useInt64Timestamp", "true")]),
    )
    .await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["kind"], "bigquery#tableDataList");
    assert_eq!(page["totalRows"], "5");
    assert_eq!(
        page["rows"][0],
        json!({"f": [{"v": "0"}, {"v": null}, {"v": [{"v": "a"}, {"v": "b"}]}, {"v": {"f": [{"v": "1500000"}]}}]})
    );
    let token = page["pageToken"].as_str().unwrap().to_string();
    let (_, page2) =
        send(http.get(&url).query(&[("maxResults", "2"), ("pageToken", token.as_str())])).await;
    assert_eq!(page2["rows"][0]["f"][0]["v"], "2");
    assert_eq!(
        page2["rows"][0]["f"][3]["v"]["f"][0]["v"], "1.5",
        "float seconds without useInt64Timestamp"
    );
    let (_, last) = send(http.get(&url).query(&[("startIndex", "4")])).await;
    assert_eq!(last["rows"].as_array().map(Vec::len), Some(1));
    assert!(last.get("pageToken").is_none());
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn faults_endpoint_sets_and_clears_faults() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let http = reqwest::Client::new();
    let url = format!("{}/emulator/v1/faults", emu.rest_endpoint());
    let (code, _) = send(http.post(&url).json(&json!({"kind": "fail", "method": "GetWriteStream", "code": "PERMISSION_DENIED", "times": 1}))).await;
    assert_eq!(code, 200);
    let mut c = client(&emu).await;
    let get = || kinesis_bigquery::pb::storage::GetWriteStreamRequest {
        name: t.default_stream(),
        view: 0,
    };
    assert_eq!(c.get_write_stream(get()).await.unwrap_err().code(), Code::PermissionDenied);
    assert!(c.get_write_stream(get()).await.is_ok(), "only the next call fails");

    send(http.post(&url).json(&json!({"kind": "down"}))).await;
    assert_eq!(c.get_write_stream(get()).await.unwrap_err().code(), Code::Unavailable);
    let (code, _) = send(http.delete(&url)).await;
    assert_eq!(code, 204);
    assert!(c.get_write_stream(get()).await.is_ok());

    let (code, _) = send(http.post(&url).json(&json!({"kind": "nonsense"}))).await;
    assert_eq!(code, 400);
    emu.shutdown().await;
    Ok(())
}
