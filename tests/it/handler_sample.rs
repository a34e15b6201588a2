//! The handler on real inputs: the sample event (plain records, a KPL
//! aggregate, a truncated record), the KPL files, an empty event — against
//! the emulator, with state and spillover in S3 and dead letters in SQS
//! (moto), all through the real clients.

use crate::common;
use crate::events;
use crate::handler_support;

use base64::Engine as _;
use common::{fixture, sample_event};
use handler_support::{World, event, failures, invoke};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_event_lands_rows_and_one_dead_letter() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&[]).await?;
    let response = invoke(&deps, sample_event()?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(world.row_ids()?, ["p0", "p1", "e1-0", "e1-1", "e1-2", "e1-3", "e1-4", "p4"]);

    let letters = world.dead_letters().await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["reason"], "invalid_json");
    assert_eq!(letter["shard_id"], "shardId-000000000006");
    assert_eq!(letter["sequence_number"], sample_event()?.records[3].kinesis.sequence_number);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(letter["data_base64"].as_str().unwrap_or_default())?;
    assert_eq!(raw, br#"{"event_id":"p3","type":"map","user_id":"not-a-number""#);

    // Kinesis retrying the same batch (a lost response) adds nothing.
    let again = invoke(&deps, sample_event()?).await?;
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(world.row_ids()?.len(), 8);
    // The first letter is still invisible (received above); a resent one would show.
    assert!(world.dead_letters().await?.is_empty());
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregates_are_deaggregated_and_a_bad_checksum_is_dead_lettered() -> anyhow::Result<()>
{
    let world = World::start().await?;
    let deps = world.deps(&[]).await?;
    let records: Vec<events::Rec> = ["agg-5.bin", "agg-200.bin", "agg-5-bad-md5.bin"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Ok(events::Rec {
                sequence_number: events::seq(i),
                partition_key: "user-9".into(),
                data: std::fs::read(fixture(&format!("kpl/{f}")))?,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let response = invoke(&deps, event(events::event("shardId-000000000001", &records))?).await?;
    assert!(response.batch_item_failures.is_empty(), "{:?}", failures(&response));

    let expected: Vec<String> = ["agg-5", "agg-200"]
        .iter()
        .flat_map(|f| {
            let path = fixture(&format!("kpl/{f}.expected.json"));
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            v["sub_records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["data"]["event_id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(expected.len(), 205);
    assert_eq!(world.row_ids()?, expected);

    let letters = world.dead_letters().await?;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["reason"], "kpl_checksum");
    assert_eq!(letters[0]["sequence_number"], events::seq(2));
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_event_is_an_empty_response() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&[]).await?;
    let response = invoke(&deps, event(serde_json::json!({"Records": []}))?).await?;
    assert_eq!(serde_json::to_value(&response)?, serde_json::json!({"batchItemFailures": []}));
    assert!(world.row_ids()?.is_empty());
    assert!(world.dead_letters().await?.is_empty());
    world.harness.shutdown().await;
    Ok(())
}
