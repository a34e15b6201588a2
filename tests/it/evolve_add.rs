//! `UNKNOWN_FIELDS=add` through the real handler, the emulator (gRPC and
//! REST) and moto: new fields become NULLABLE columns, the records that
//! brought them land with their values, nothing is dead-lettered or lost,
//! concurrent patches merge, and a crash at every step of the change still
//! gives exactly once. Columns not visible in time: `evolve_spill.rs`.

use std::sync::Arc;

use anyhow::Context as _;

use crate::common::{Harness, col};
use crate::events::{self, Rec, seq};
use crate::handler_support::{World, event, failures, invoke};
use kinesis_bigquery::bigquery::TablesClient;
use kinesis_bigquery::delivery::CrashPoints;
use kinesis_bigquery::evolve::columns::add_columns;
use kinesis_bigquery::pb::storage::TableFieldSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use serde_json::{Value, json};

pub fn rec(i: usize, extra: Value) -> Rec {
    let mut v: Value = serde_json::from_slice(&events::row_json(i, 150)).unwrap();
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    Rec { sequence_number: seq(i), partition_key: "k".into(), data: v.to_string().into_bytes() }
}

/// Ten records; 3 and 7 bring new fields of every kind, 5 a null-only one.
pub fn mixed_batch(shard: &str) -> anyhow::Result<aws_lambda_events::event::kinesis::KinesisEvent> {
    let records: Vec<Rec> = (0..10)
        .map(|i| match i {
            3 => rec(
                i,
                json!({"plan": "pro", "ctx": {"ip": "10.0.0.1", "hops": 2}, "scores": [1, 2.5]}),
            ),
            5 => rec(i, json!({"gone": null})),
            7 => rec(i, json!({"plan": "free", "ctx": {"ip": "10.0.0.2", "ok": true}})),
            _ => rec(i, json!({})),
        })
        .collect();
    event(events::event(shard, &records))
}

fn env(world: &World) -> Vec<(&'static str, String)> {
    vec![
        ("UNKNOWN_FIELDS", "add".into()),
        ("BIGQUERY_REST_ENDPOINT", world.harness.emulator.rest_endpoint()),
    ]
}

fn shape(fields: &[TableFieldSchema]) -> Vec<(String, Type, Mode)> {
    fields.iter().map(|f| (f.name.clone(), f.r#type(), f.mode())).collect()
}

#[tokio::test]
async fn new_fields_become_columns_and_their_records_land() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&env(&world)).await?;
    let response = invoke(&deps, mixed_batch("shardId-000000000000")?).await?;
    assert!(failures(&response).is_empty(), "{response:?}");

    let schema = world.harness.emulator.table_schema(&world.table)?;
    // One record's new columns are added in name order.
    let added = shape(&schema.fields[7..]);
    assert_eq!(
        added,
        [
            ("ctx".into(), Type::Struct, Mode::Nullable),
            ("plan".into(), Type::String, Mode::Nullable),
            ("scores".into(), Type::Double, Mode::Repeated),
        ]
    );
    // A later record's object adds a subfield to the new RECORD: hops, ip, then ok.
    let ctx: Vec<&str> = schema.fields[7].fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(ctx, ["hops", "ip", "ok"]);

    let rows = world.harness.emulator.read_rows(&world.table)?;
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["event_id"].as_str()).collect();
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"]);
    assert_eq!(rows[3]["plan"], "pro");
    assert_eq!(rows[3]["ctx"], json!({"ip": "10.0.0.1", "hops": "2", "ok": null}));
    assert_eq!(rows[3]["scores"], json!([1.0, 2.5]));
    assert_eq!(rows[7]["ctx"]["ok"], true);
    assert_eq!(rows[0]["plan"], Value::Null);
    assert!(world.dead_letters().await?.is_empty());

    // A value that conflicts with an existing column is still a mismatch.
    let bad = vec![rec(10, json!({"user_id": "not a number", "plan": "x"}))];
    let response = invoke(&deps, event(events::event("shardId-000000000000", &bad))?).await?;
    assert!(failures(&response).is_empty());
    assert_eq!(world.dead_letters().await?.len(), 1);
    assert_eq!(world.harness.emulator.read_rows(&world.table)?.len(), 10);
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_stale_etag_is_reread_and_merged_not_overwritten() -> anyhow::Result<()> {
    let harness = Harness::start().await?;
    let table = harness.new_events_table()?;
    let tables = TablesClient::new(&harness.emulator.rest_endpoint().parse()?)?;
    let seen = tables.get(&table).await?;
    // Another shard adds its column after we read the table.
    harness.emulator.add_columns(&table, vec![col("a", Type::String, Mode::Nullable)])?;
    let mut wanted = seen.schema.fields.clone();
    wanted.push(col("b", Type::Int64, Mode::Nullable));
    let after = add_columns(&tables, &table, &wanted, Some(seen)).await?;
    let names: Vec<&str> = after.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names[7..], ["a", "b"]);
    assert_eq!(harness.emulator.table_schema(&table)?, after);
    harness.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn two_shards_adding_different_columns_at_once_get_both() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&env(&world)).await?;
    let mut ev = event(events::event("shardId-000000000000", &[rec(0, json!({"from_a": 1}))]))?;
    let other = event(events::event("shardId-000000000001", &[rec(1, json!({"from_b": "x"}))]))?;
    ev.records.extend(other.records);
    let response = invoke(&deps, ev).await?;
    assert!(failures(&response).is_empty(), "{response:?}");
    let rows = world.harness.emulator.read_rows(&world.table)?;
    assert_eq!(rows.len(), 2);
    let a = rows.iter().find(|r| r["event_id"] == "e0").unwrap();
    let b = rows.iter().find(|r| r["event_id"] == "e1").unwrap();
    assert_eq!((a["from_a"].clone(), b["from_b"].clone()), (json!("1"), json!("x")));
    world.harness.shutdown().await;
    Ok(())
}

/// Boundaries of one invocation that adds columns: the schema steps, then delivery's.
async fn boundaries() -> anyhow::Result<usize> {
    let world = World::start().await?;
    let mut deps = world.deps(&env(&world)).await?;
    let counting = Arc::new(CrashPoints::counting());
    deps.delivery_mut().context("connected")?.crash = Some(Arc::clone(&counting));
    invoke(&deps, mixed_batch("shardId-000000000000")?).await?;
    let log = counting.log();
    assert_eq!(
        log.iter().take(3).map(|b| format!("{b:?}")).collect::<Vec<_>>(),
        ["BeforeSchemaPatch", "AfterSchemaPatch", "AfterSchemaVisible"]
    );
    world.harness.shutdown().await;
    Ok(counting.seen())
}

#[tokio::test]
async fn a_crash_at_every_step_of_the_change_still_lands_each_record_once() -> anyhow::Result<()> {
    let steps = boundaries().await?;
    for at in 0..steps {
        let world = World::start().await?;
        let mut crashing = world.deps(&env(&world)).await?;
        crashing.delivery_mut().context("connected")?.crash = Some(Arc::new(CrashPoints::at(at)));
        invoke(&crashing, mixed_batch("shardId-000000000000")?).await?;
        // The container died with it: a fresh one retries the batch.
        let fresh = world.deps(&env(&world)).await?;
        let retry = invoke(&fresh, mixed_batch("shardId-000000000000")?).await?;
        assert!(failures(&retry).is_empty(), "crash point {at}: {retry:?}");
        let mut ids = world.row_ids()?;
        ids.sort();
        let expected: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
        assert_eq!(ids, expected, "crash point {at}");
        let rows = world.harness.emulator.read_rows(&world.table)?;
        let third = rows.iter().find(|r| r["event_id"] == "e3").unwrap();
        assert_eq!(third["plan"], "pro", "crash point {at}");
        assert!(world.dead_letters().await?.is_empty(), "crash point {at}");
        world.harness.shutdown().await;
    }
    Ok(())
}
