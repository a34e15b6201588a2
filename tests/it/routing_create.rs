//! `CREATE_TABLES=true`: a routed table that does not exist is created with
//! `tables.insert` from `TABLE_SCHEMA_URL` (the emulator's REST API, the
//! schema in moto's S3 or a file), and with `UNKNOWN_FIELDS=add` it grows.

use crate::common;
use crate::events;
use crate::handler_support::{event, failures, invoke};
use crate::routing::{Routed, data_rec, rec};

use kinesis_bigquery::bigquery::{TablesClient, TablesError};
use kinesis_bigquery::check;
use kinesis_bigquery::route::{SchemaUrl, TableCreator};
use serde_json::json;

const SHARD: &str = "shardId-000000000005";

fn events_schema_json() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(common::fixture("events.schema.json"))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tables_are_created_from_the_schema_in_s3() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    let s3 = r.harness().moto.s3_client();
    let bucket = &r.world.bucket;
    let body = events_schema_json()?.into_bytes();
    s3.put_object().bucket(bucket).key("schemas/search.json").body(body.into()).send().await?;
    let deps = r
        .deps(&[
            ("CREATE_TABLES", "true".into()),
            ("TABLE_SCHEMA_URL", format!("s3://{bucket}/schemas/{{type}}.json")),
            ("BIGQUERY_REST_ENDPOINT", r.harness().emulator.rest_endpoint()),
        ])
        .await?;
    // `search` has a schema object; `map` has none.
    let recs = vec![rec(0, "search"), rec(1, "map"), rec(2, "search")];
    let response = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(r.rows("search")?, ["e0", "e2"]);
    assert_eq!(r.harness().emulator.table_schema(&r.table("search")?)?, common::events_schema()?);
    let letters = r.world.dead_letters().await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "no_such_table");
    assert_eq!(letters[0]["sequence_number"], events::seq(1));
    let error = letters[0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("schemas/map.json"), "{error}");
    assert!(r.harness().emulator.table_schema(&r.table("map")?).is_err());
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_someone_else_created_first_counts_as_created() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("search.json"), events_schema_json()?)?;
    let tables = TablesClient::new(&r.harness().emulator.rest_endpoint().parse()?)?;
    let template: kinesis_bigquery::route::TableTemplate =
        r.template().parse().map_err(anyhow::Error::msg)?;
    let url = format!("file://{}/{{type}}.json", dir.path().display());
    let creator = TableCreator {
        tables: tables.clone(),
        schema_url: SchemaUrl::parse(&url, Some("type")).map_err(anyhow::Error::msg)?,
        s3: None,
    };
    let search = r.create("search")?;
    // The service answers 409 to the second insert...
    let again = tables.insert(&search, &common::events_schema()?).await;
    assert!(matches!(again, Err(TablesError::Exists(_))), "{again:?}");
    // ...which the creator takes as the table being there.
    creator.create(&template, &search, "search").await?;
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_table_grows_with_unknown_fields_add() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    let dir = tempfile::tempdir()?;
    let schema = json!([
        {"name": "event_id", "type": "STRING", "mode": "REQUIRED"},
        {"name": "type", "type": "STRING", "mode": "NULLABLE"},
    ]);
    std::fs::write(dir.path().join("schema.json"), schema.to_string())?;
    let deps = r
        .deps(&[
            ("CREATE_TABLES", "true".into()),
            ("TABLE_SCHEMA_URL", format!("file://{}/schema.json", dir.path().display())),
            ("UNKNOWN_FIELDS", "add".into()),
            ("BIGQUERY_REST_ENDPOINT", r.harness().emulator.rest_endpoint()),
        ])
        .await?;
    let recs = vec![
        data_rec(0, json!({"event_id": "e0", "type": "signup"})),
        data_rec(1, json!({"event_id": "e1", "type": "signup", "plan": "pro"})),
    ];
    let response = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let rows = r.harness().emulator.read_rows(&r.table("signup")?)?;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["plan"], "pro");
    assert!(r.world.dead_letters().await?.is_empty());
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_routing_is_on_and_reads_a_shared_schema() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("schema.json"), events_schema_json()?)?;
    // File sinks: the check's own AWS configuration has no moto behind it.
    let config_with = |schema: &str| {
        r.world.config(&[
            ("BIGQUERY_TABLE", r.template()),
            ("CREATE_TABLES", "true".into()),
            ("TABLE_SCHEMA_URL", format!("file://{}/{schema}", dir.path().display())),
            ("BIGQUERY_REST_ENDPOINT", r.harness().emulator.rest_endpoint()),
            ("STATE_URL", format!("file://{}/state", dir.path().display())),
            ("SPILL_URL", format!("file://{}/spill", dir.path().display())),
            ("DLQ_URL", format!("file://{}/dlq.ndjson", dir.path().display())),
        ])
    };
    let report = check::run(&config_with("schema.json")?).await;
    let text = report.to_string();
    assert!(report.ok(), "{text}");
    assert!(text.contains("routing on field \"type\""), "{text}");
    assert!(text.contains("TABLE_SCHEMA_URL") && text.contains("7 columns"), "{text}");

    // A schema that is not there fails the check, naming the variable.
    let report = check::run(&config_with("none.json")?).await;
    let failed: Vec<&str> =
        report.findings.iter().filter(|f| f.outcome.is_err()).map(|f| f.variable).collect();
    assert_eq!(failed, ["TABLE_SCHEMA_URL"], "{report}");
    r.world.harness.shutdown().await;
    Ok(())
}
