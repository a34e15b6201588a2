//! Failure routing through the whole handler (DESIGN.md, "Failure
//! routing"): BigQuery down → spillover and a response that says all
//! landed; BigQuery and the spillover down → the response starts at the
//! first record not landed; the dead-letter queue down → the bad record is
//! reported not landed.

use crate::common;
use crate::events;
use crate::handler_support;

use common::sample_event;
use handler_support::{World, event, failures, invoke};

const SHARD: &str = "shardId-000000000002";

/// `n` good records from `first`, with the records at `bad` replaced by
/// truncated JSON.
fn records(first: usize, n: usize, bad: &[usize]) -> Vec<events::Rec> {
    let mut recs = events::plain_records(first, n, 200);
    for r in recs.iter_mut().enumerate().filter(|(i, _)| bad.contains(&(first + i))).map(|(_, r)| r)
    {
        r.data = br#"{"event_id":"broken","#.to_vec();
    }
    recs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigquery_down_spills_and_reports_everything_landed() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&[]).await?;
    world.harness.emulator.faults().set_down(true);

    let response = invoke(&deps, sample_event()?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert!(world.row_ids()?.is_empty());
    assert_eq!(world.dead_letters().await?.len(), 1);

    // The eight good records are in spillover objects, readable with zstd.
    let keys = world.objects("spill/").await?;
    assert!(!keys.is_empty());
    let s3 = world.harness.moto.s3_client();
    let mut spilled = Vec::new();
    for key in &keys {
        let object = s3.get_object().bucket(&world.bucket).key(key).send().await?;
        let bytes = object.body.collect().await?.into_bytes();
        let text = String::from_utf8(zstd::decode_all(&bytes[..])?)?;
        // First line the header, then one line per record.
        spilled.extend(text.lines().skip(1).map(str::to_string));
    }
    assert_eq!(spilled.len(), 8, "{keys:?}");
    world.harness.emulator.faults().set_down(false);
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigquery_and_spillover_down_report_the_first_record_not_landed() -> anyhow::Result<()> {
    let world = World::start().await?;
    let deps = world.deps(&[]).await?;
    // A first invocation lands records 0..5.
    let first = invoke(&deps, event(events::event(SHARD, &records(0, 5, &[])))?).await?;
    assert!(first.batch_item_failures.is_empty());
    assert_eq!(world.row_ids()?.len(), 5);

    // Then BigQuery goes down and the spillover bucket is gone: Kinesis
    // resends 0..5 with 5..10 behind them; record 6 is bad JSON.
    let broken =
        world.deps(&[("SPILL_URL", format!("s3://{}-missing/spill", world.bucket))]).await?;
    world.harness.emulator.faults().set_down(true);
    let response = invoke(&broken, event(events::event(SHARD, &records(0, 10, &[6])))?).await?;
    // 0..5 landed before, 5 is stuck: the response starts there, and only there.
    assert_eq!(failures(&response), vec![events::seq(5)]);
    world.harness.emulator.faults().set_down(false);

    // Kinesis retries from 5 once BigQuery is back: every good record once.
    let retry = invoke(&deps, event(events::event(SHARD, &records(5, 5, &[6])))?).await?;
    assert!(retry.batch_item_failures.is_empty(), "{:?}", failures(&retry));
    let ids = world.row_ids()?;
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4", "e5", "e7", "e8", "e9"]);
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_record_counts_as_landed_before_the_stuck_one() -> anyhow::Result<()> {
    let world = World::start().await?;
    let broken =
        world.deps(&[("SPILL_URL", format!("s3://{}-missing/spill", world.bucket))]).await?;
    world.harness.emulator.faults().set_down(true);
    // Record 0 is bad (to the DLQ: landed); record 1 cannot land anywhere.
    let response = invoke(&broken, event(events::event(SHARD, &records(0, 3, &[0])))?).await?;
    assert_eq!(failures(&response), vec![events::seq(1)]);
    assert_eq!(world.dead_letters().await?.len(), 1);
    world.harness.emulator.faults().set_down(false);
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_the_queue_refuses_is_reported_not_landed() -> anyhow::Result<()> {
    let world = World::start().await?;
    let missing_queue = format!("{}-missing", world.queue);
    let deps = world.deps(&[("DLQ_URL", missing_queue)]).await?;
    let response = invoke(&deps, event(events::event(SHARD, &records(0, 3, &[1])))?).await?;
    assert_eq!(failures(&response), vec![events::seq(1)]);
    // Record 0 landed in the table whatever happened after it.
    assert_eq!(world.row_ids()?.first().map(String::as_str), Some("e0"));
    world.harness.shutdown().await;
    Ok(())
}
