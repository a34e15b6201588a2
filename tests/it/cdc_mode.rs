//! `WRITE_MODE=cdc` through the real handler into the emulator: updates and
//! deletes converge by primary key, a retried batch changes nothing, an
//! unreadable change is a dead letter, and a table or a format CDC cannot
//! use is refused.

use crate::cdc_support::{Change, cdc_env, expected, keyed_world, record, table};
use crate::events::{self, Rec};
use crate::handler_support::{event, failures, invoke};
use kinesis_bigquery::config::Config;

fn changes() -> Vec<Change> {
    vec![
        Change { id: 1, v: 10, op: "c" },
        Change { id: 2, v: 20, op: "c" },
        Change { id: 1, v: 11, op: "u" },
        Change { id: 3, v: 30, op: "r" },
        Change { id: 2, v: 20, op: "d" },
        Change { id: 1, v: 12, op: "u" },
        Change { id: 4, v: 40, op: "c" },
        Change { id: 4, v: 41, op: "u" },
    ]
}

fn records(changes: &[Change]) -> Vec<Rec> {
    changes.iter().enumerate().map(|(i, c)| record(i, c)).collect()
}

#[tokio::test]
async fn updates_and_deletes_converge_and_a_replay_changes_nothing() -> anyhow::Result<()> {
    let world = keyed_world().await?;
    let deps = world.deps(&cdc_env()).await?;
    let all = changes();
    let recs = records(&all);
    let response = invoke(&deps, event(events::event("shardId-000000000000", &recs))?).await?;
    assert!(failures(&response).is_empty());
    assert_eq!(table(&world)?, expected(&all));
    assert_eq!(table(&world)?.into_iter().collect::<Vec<_>>(), vec![(1, 12), (3, 30), (4, 41)]);

    // Kinesis redelivers an older, overlapping batch (a retry after a lost
    // response): the same changes with the same sequence numbers.
    let replay: Vec<Rec> = recs.into_iter().take(5).collect();
    invoke(&deps, event(events::event("shardId-000000000000", &replay))?).await?;
    assert_eq!(table(&world)?, expected(&all));
    Ok(())
}

#[tokio::test]
async fn an_unreadable_change_is_a_dead_letter_with_its_reason() -> anyhow::Result<()> {
    let world = keyed_world().await?;
    let deps = world.deps(&cdc_env()).await?;
    let mut all = changes();
    // Debezium's truncate is no row change.
    all.insert(2, Change { id: 9, v: 90, op: "t" });
    let response =
        invoke(&deps, event(events::event("shardId-000000000000", &records(&all)))?).await?;
    assert!(failures(&response).is_empty());
    let letters = world.dead_letters().await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "change_unreadable");
    assert_eq!(letters[0]["field_path"], "op");
    assert!(letters[0]["error"].as_str().unwrap_or("").contains("\"t\""), "{}", letters[0]);
    let landed: Vec<Change> = all.into_iter().filter(|c| c.op != "t").collect();
    assert_eq!(table(&world)?, expected(&landed));
    Ok(())
}

#[tokio::test]
async fn without_a_change_type_field_every_record_is_an_upsert() -> anyhow::Result<()> {
    let world = keyed_world().await?;
    let deps = world.deps(&[("WRITE_MODE", "cdc".into())]).await?;
    let all = changes();
    invoke(&deps, event(events::event("shardId-000000000000", &records(&all)))?).await?;
    let as_upserts: Vec<Change> = all.iter().map(|c| Change { op: "u", ..c.clone() }).collect();
    assert_eq!(table(&world)?, expected(&as_upserts));
    Ok(())
}

#[tokio::test]
async fn cdc_rows_on_a_table_without_a_primary_key_do_not_land() -> anyhow::Result<()> {
    let world = keyed_world().await?;
    let plain = world.harness.new_table(crate::cdc_support::keyed_schema())?;
    let deps =
        world.deps(&[cdc_env(), vec![("BIGQUERY_TABLE", plain.to_string())]].concat()).await?;
    let response =
        invoke(&deps, event(events::event("shardId-000000000000", &records(&changes())))?).await?;
    assert!(world.harness.emulator.read_rows(&plain)?.is_empty());
    // Nothing is lost: the batch is spilled (or handed back to Kinesis).
    let spilled = world.objects("spill").await?;
    assert!(!spilled.is_empty() || !failures(&response).is_empty());
    Ok(())
}

#[test]
fn cdc_with_arrow_rows_is_refused_at_start() {
    let env = [
        ("BIGQUERY_TABLE", "p.d.t"),
        ("SPILL_URL", "file:///tmp/spill"),
        ("DLQ_URL", "file:///tmp/dlq.ndjson"),
        ("WRITE_MODE", "cdc"),
        ("ROW_FORMAT", "arrow"),
    ];
    let e = Config::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
        .unwrap_err();
    assert!(e.to_string().contains("ROW_FORMAT"), "{e}");
}
