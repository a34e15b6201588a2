//! `UNKNOWN_FIELDS=add` when the new columns do not become visible to the
//! writers in time (issue 14, item 1): the records that need them are
//! spilled (reason `awaiting_columns`), the rest of the batch lands, the
//! invocation answers success, and the backfill writes the spilled records
//! once the columns are visible — leaving them in place until then. A crash
//! at every step of it still lands each record exactly once.

use std::sync::Arc;

use anyhow::Context as _;
use std::time::Duration;

use crate::backfill_support;
use crate::common::Harness;
use crate::events::{self, seq};
use crate::evolve_add::{mixed_batch, rec};
use crate::handler_support::{World, event, failures};
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use kinesis_bigquery::backfill::{BackfillDeps, Summary};
use kinesis_bigquery::delivery::{CrashPoints, state_key};
use kinesis_bigquery::dlq;
use kinesis_bigquery::emulator::EmulatorConfig;
use kinesis_bigquery::handler::{self, Deps};
use kinesis_bigquery::rows::UnknownFields;
use kinesis_bigquery::sink_url::SinkUrl;
use kinesis_bigquery::spill::{SpillFilter, SpillReason};
use serde_json::json;

const SHARD: &str = "shardId-000000000000";

/// A world whose emulator shows new columns to writers only when the test
/// says so (`publish_schema`): a delay no invocation waits out.
async fn slow_world() -> anyhow::Result<World> {
    let harness = Harness::start_with(EmulatorConfig {
        schema_delay: Duration::from_secs(3600),
        ..Default::default()
    })
    .await?;
    let table = harness.new_events_table()?;
    Ok(World {
        table,
        bucket: harness.new_bucket().await?,
        queue: harness.new_queue().await?,
        dir: tempfile::tempdir()?,
        harness,
    })
}

/// A cold start with `UNKNOWN_FIELDS=add` and no margin or reserve, so a
/// short invocation timeout is all the time the batch has.
async fn deps(world: &World) -> anyhow::Result<Deps> {
    let mut deps = world
        .deps(&[
            ("UNKNOWN_FIELDS", "add".into()),
            ("BIGQUERY_REST_ENDPOINT", world.harness.emulator.rest_endpoint()),
            ("DEADLINE_MARGIN_MS", "0".into()),
        ])
        .await?;
    deps.delivery_mut().context("connected")?.spill_reserve = Duration::ZERO;
    Ok(deps)
}

/// One invocation that may run `timeout`: the schema step waits half of it.
async fn invoke(
    deps: &Deps,
    ev: KinesisEvent,
    timeout: Duration,
) -> anyhow::Result<KinesisEventResponse> {
    let local = handler::local_event(ev, timeout);
    handler::handle(local, deps).await.map_err(|e| anyhow::anyhow!("{e}"))
}

/// The backfill an operator runs with the Lambda's settings.
async fn backfill_deps(world: &World) -> anyhow::Result<BackfillDeps> {
    let aws = world.harness.moto.sdk_config();
    let queue = dlq::open(&world.queue.parse::<SinkUrl>()?, None, &aws)?;
    let mut deps =
        backfill_support::deps(&world.harness.emulator, world.spill_sink()?, Some(queue)).await;
    deps.state = Some(world.state_store()?);
    deps.encoder.unknown_fields = UnknownFields::Add;
    Ok(deps)
}

async fn backfill(world: &World) -> anyhow::Result<Summary> {
    let deps = backfill_deps(world).await?;
    Ok(backfill_support::run(&deps, &backfill_support::options()).await)
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn all_ten() -> Vec<String> {
    (0..10).map(|i| format!("e{i}")).collect()
}

#[tokio::test]
async fn records_whose_columns_are_not_visible_in_time_are_spilled_and_backfilled_once()
-> anyhow::Result<()> {
    let world = slow_world().await?;
    let deps = deps(&world).await?;
    // Records 3 and 7 bring new fields; 5 only a null one (it needs nothing).
    let response = invoke(&deps, mixed_batch(SHARD)?, Duration::from_secs(2)).await?;
    assert!(failures(&response).is_empty(), "{response:?}");
    let others = ["e0", "e1", "e2", "e4", "e5", "e6", "e8", "e9"];
    assert_eq!(world.row_ids()?, others);
    assert!(world.dead_letters().await?.is_empty());

    // The two records wait in one object of their own, listed by the state.
    let sink = world.spill_sink()?;
    let keys = sink.list(&SpillFilter::default()).await?;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let object = sink.read(&keys[0]).await?;
    assert_eq!(object.reason, SpillReason::AwaitingColumns);
    let spilled: Vec<String> =
        object.records.iter().map(|r| r.position.sequence_number.to_string()).collect();
    assert_eq!(spilled, [seq(3), seq(7)]);
    assert_eq!(world.objects("spill/").await?.len(), 1);
    let state = world.state_store()?;
    let (bytes, _) =
        state.load(&state_key(&world.table, events::STREAM_ARN, SHARD)).await?.expect("state");
    let state: serde_json::Value = serde_json::from_slice(&bytes)?;
    assert_eq!(state["spills"], json!([keys[0].path()]));

    // Kinesis redelivers the batch (a retry after a lost response): nothing twice.
    let again = invoke(&deps, mixed_batch(SHARD)?, Duration::from_secs(2)).await?;
    assert!(failures(&again).is_empty(), "{again:?}");
    assert_eq!(world.row_ids()?, others);
    assert_eq!(sink.list(&SpillFilter::default()).await?.len(), 1);

    // Before the columns are visible the backfill leaves the object where it is.
    let early = backfill(&world).await?;
    assert_eq!((early.replayed, early.failed), (0, 1), "{early:?}");
    assert!(early.failures[0].1.contains("columns"), "{:?}", early.failures);
    assert_eq!(sink.list(&SpillFilter::default()).await?.len(), 1);
    assert_eq!(world.row_ids()?, others);
    assert!(world.dead_letters().await?.is_empty());

    // Once visible, it writes them with their new values, once.
    world.harness.emulator.publish_schema(&world.table)?;
    let done = backfill(&world).await?;
    assert_eq!((done.replayed, done.failed, done.rows), (1, 0, 2), "{done:?}");
    assert!(sink.list(&SpillFilter::default()).await?.is_empty());
    let rows = world.harness.emulator.read_rows(&world.table)?;
    assert_eq!(sorted(world.row_ids()?), all_ten());
    let third = rows.iter().find(|r| r["event_id"] == "e3").expect("e3");
    assert_eq!((third["plan"].clone(), third["ctx"]["hops"].clone()), (json!("pro"), json!("2")));
    let seventh = rows.iter().find(|r| r["event_id"] == "e7").expect("e7");
    assert_eq!(seventh["ctx"]["ok"], true);
    let rerun = backfill(&world).await?;
    assert_eq!((rerun.objects, rerun.rows), (0, 0), "{rerun:?}");
    assert_eq!(world.row_ids()?.len(), 10);
    assert!(world.dead_letters().await?.is_empty());

    // A later batch sees the columns and needs no spill.
    let later = vec![rec(10, json!({"plan": "team"}))];
    let response =
        invoke(&deps, event(events::event(SHARD, &later))?, Duration::from_secs(2)).await?;
    assert!(failures(&response).is_empty(), "{response:?}");
    assert_eq!(world.row_ids()?.len(), 11);
    assert!(sink.list(&SpillFilter::default()).await?.is_empty());
    world.harness.shutdown().await;
    Ok(())
}

/// Boundaries of one invocation whose columns do not become visible.
async fn spill_boundaries() -> anyhow::Result<usize> {
    let world = slow_world().await?;
    let mut deps = deps(&world).await?;
    let counting = Arc::new(CrashPoints::counting());
    deps.delivery_mut().context("connected")?.crash = Some(Arc::clone(&counting));
    invoke(&deps, mixed_batch(SHARD)?, Duration::from_millis(600)).await?;
    let log: Vec<String> = counting.log().iter().map(|b| format!("{b:?}")).collect();
    assert_eq!(log[..2], ["BeforeSchemaPatch", "AfterSchemaPatch"]);
    assert!(log.iter().any(|b| b == "BeforeSpill"), "{log:?}");
    world.harness.shutdown().await;
    Ok(counting.seen())
}

#[tokio::test]
async fn a_crash_at_every_step_of_the_spill_path_still_lands_each_record_once() -> anyhow::Result<()>
{
    let steps = spill_boundaries().await?;
    for at in 0..steps {
        let world = slow_world().await?;
        let mut crashing = deps(&world).await?;
        crashing.delivery_mut().context("connected")?.crash = Some(Arc::new(CrashPoints::at(at)));
        invoke(&crashing, mixed_batch(SHARD)?, Duration::from_millis(600)).await?;
        // Half the retries find the columns visible by then: an exclusion
        // already persisted still sends its record to the spillover.
        if at % 2 == 1 {
            world.harness.emulator.publish_schema(&world.table)?;
        }
        let fresh = deps(&world).await?;
        let retry = invoke(&fresh, mixed_batch(SHARD)?, Duration::from_millis(600)).await?;
        assert!(failures(&retry).is_empty(), "crash point {at}: {retry:?}");
        world.harness.emulator.publish_schema(&world.table)?;
        let summary = backfill(&world).await?;
        assert!(!summary.left_behind(), "crash point {at}: {summary:?}");
        assert_eq!(sorted(world.row_ids()?), all_ten(), "crash point {at}");
        let rows = world.harness.emulator.read_rows(&world.table)?;
        let third = rows.iter().find(|r| r["event_id"] == "e3").expect("e3");
        assert_eq!(third["plan"], "pro", "crash point {at}");
        assert!(world.dead_letters().await?.is_empty(), "crash point {at}");
        world.harness.shutdown().await;
    }
    Ok(())
}
