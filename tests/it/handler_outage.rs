//! A cold start during a BigQuery outage (issue 12, scenario 4): the
//! container cannot read the table schema, yet its invocations spill the
//! records raw and answer success; a warm container keeps trying and
//! appends once BigQuery answers; the backfill encodes the spilled records
//! against the live schema, each row exactly once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use kinesis_bigquery::backfill::BackfillDeps;
use kinesis_bigquery::delivery::state::{Claim, ClaimedRows, fingerprint};
use kinesis_bigquery::delivery::store::StateStore;
use kinesis_bigquery::delivery::{Boundary, CrashPoints, ShardState, WriteMode, state_key};
use kinesis_bigquery::handler;
use kinesis_bigquery::source::{Position, SequenceNumber};
use kinesis_bigquery::spill::{SpillFilter, SpillReason, SpillSink, SpilledBatch};

use crate::backfill_support;
use crate::events;
use crate::handler_support::{World, event, failures, invoke};

const SHARD: &str = "shardId-000000000004";

/// Every spillover object, read back.
async fn spilled(sink: &dyn SpillSink) -> anyhow::Result<Vec<SpilledBatch>> {
    let mut out = Vec::new();
    for key in sink.list(&SpillFilter::default()).await? {
        out.push(sink.read(&key).await?);
    }
    Ok(out)
}

fn position(i: usize) -> anyhow::Result<Position> {
    Ok(Position { sequence_number: SequenceNumber::new(&events::seq(i))?, sub_sequence_number: 0 })
}

async fn shard_state(world: &World, store: &dyn StateStore) -> anyhow::Result<ShardState> {
    let key = state_key(&world.table, events::STREAM_ARN, SHARD);
    let (bytes, _) = store.load(&key).await?.context("the shard has a state")?;
    Ok(ShardState::from_json(&bytes)?)
}

async fn backfill(world: &World, state: Option<Arc<dyn StateStore>>) -> anyhow::Result<()> {
    let mut deps: BackfillDeps =
        backfill_support::deps(&world.harness.emulator, world.spill_sink()?, None).await;
    deps.state = state;
    let summary = backfill_support::run(&deps, &backfill_support::options()).await;
    anyhow::ensure!(summary.failed == 0, "backfill failed: {summary:?}");
    Ok(())
}

fn ids(from: usize, to: usize) -> Vec<String> {
    let mut ids: Vec<String> = (from..to).map(|i| format!("e{i}")).collect();
    ids.sort();
    ids
}

/// One outage, cold start to backfill, in `mode`: two invocations spill
/// raw, the third (BigQuery back) appends, the backfill writes the rest.
async fn outage_then_recovery(mode: WriteMode) -> anyhow::Result<()> {
    let world = World::start().await?;
    let write_mode = match mode {
        WriteMode::AtLeastOnce => "at_least_once",
        _ => "exactly_once",
    };
    let env = [("WRITE_MODE", write_mode.to_string())];
    world.harness.emulator.faults().set_down(true);

    // Cold start: the schema cannot be read, the container starts anyway.
    let deps = world.deps(&env).await?;
    assert!(deps.delivery().is_none(), "BigQuery is down: nothing is connected");
    let first = events::plain_records(0, 5, 200);
    let response = invoke(&deps, event(events::event(SHARD, &first))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());

    // The records are in one raw object, bytes as sent, no offsets.
    let sink = world.spill_sink()?;
    let objects = spilled(sink.as_ref()).await?;
    assert_eq!(objects.len(), 1, "{objects:?}");
    let object = &objects[0];
    assert_eq!(object.write_mode, Some(mode));
    assert_eq!(object.write_stream, None);
    assert_eq!(object.shard_id, SHARD);
    let data: Vec<&[u8]> = object.records.iter().map(|r| &r.data[..]).collect();
    let sent: Vec<&[u8]> = first.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, sent);
    assert!(object.records.iter().all(|r| r.offset.is_none()));
    assert!(world.row_ids()?.is_empty());

    // Still down: the warm container tries again, spills again.
    let second = events::plain_records(5, 3, 200);
    let response = invoke(&deps, event(events::event(SHARD, &second))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(spilled(sink.as_ref()).await?.len(), 2);
    assert!(deps.delivery().is_none());

    let state = if mode == WriteMode::ExactlyOnce {
        let store = world.state_store()?;
        let shard = shard_state(&world, store.as_ref()).await?;
        // Both objects listed, the shard moved past them, nothing claimed.
        assert_eq!(shard.last_position, Some(position(7)?));
        assert_eq!(shard.spills.len(), 2, "{shard:?}");
        assert_eq!(shard.claim, Claim::Clean);
        assert_eq!(shard.next_offset, 0);
        Some(store)
    } else {
        None
    };

    // BigQuery is back: the next invocation connects and appends.
    world.harness.emulator.faults().set_down(false);
    let third = events::plain_records(8, 4, 200);
    let response = invoke(&deps, event(events::event(SHARD, &third))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert!(deps.delivery().is_some(), "connected once BigQuery answered");
    let mut rows = world.row_ids()?;
    rows.sort();
    assert_eq!(rows, ids(8, 12));

    // The backfill encodes the spilled records against the live schema.
    backfill(&world, state).await?;
    let mut rows = world.row_ids()?;
    rows.sort();
    assert_eq!(rows, ids(0, 12), "every record exactly once");
    assert!(spilled(sink.as_ref()).await?.is_empty(), "replayed objects are gone");
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_cold_start_in_an_outage_spills_raw_and_the_backfill_writes_once()
-> anyhow::Result<()> {
    outage_then_recovery(WriteMode::ExactlyOnce).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_cold_start_in_an_outage_spills_raw_and_the_backfill_writes_once()
-> anyhow::Result<()> {
    outage_then_recovery(WriteMode::AtLeastOnce).await
}

/// An attempt died right after its appends (its claim is in the state, its
/// rows in the stream, its commit never made); then BigQuery went away and
/// a new container gets the retried batch. Which claimed records landed is
/// only known to BigQuery, so each is spilled with its offset in the
/// claimed stream and Kinesis is told they landed; the backfill finalizes
/// the stream and writes only the records it does not hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_doubt_before_the_outage_is_spilled_with_its_offsets() -> anyhow::Result<()> {
    let world = World::start().await?;
    let records = events::plain_records(0, 8, 200);
    let connected = world.deps(&[]).await?;
    let response = invoke(&connected, event(events::event(SHARD, &records[..2]))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let mut crashing = world.deps(&[]).await?;
    crashing.delivery_mut().context("connected")?.crash =
        Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    let response = invoke(&crashing, event(events::event(SHARD, &records[2..4]))?).await?;
    assert_eq!(failures(&response), vec![events::seq(2)]);
    let store = world.state_store()?;
    let before = shard_state(&world, store.as_ref()).await?;
    assert!(matches!(&before.claim, Claim::Rows(rows) if rows.len() == 2), "{before:?}");

    world.harness.emulator.faults().set_down(true);
    let cold = world.deps(&[]).await?;
    let response = invoke(&cold, event(events::event(SHARD, &records[2..6]))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let objects = spilled(world.spill_sink()?.as_ref()).await?;
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(objects[0].reason, SpillReason::InDoubt);
    assert_eq!(objects[0].write_stream.as_deref(), Some(before.write_stream.as_str()));
    let offsets: Vec<Option<i64>> = objects[0].records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [Some(2), Some(3), Some(4), Some(5)]);
    let after = shard_state(&world, store.as_ref()).await?;
    assert_eq!(after.last_position, Some(position(5)?));
    assert_eq!((after.next_offset, &after.claim), (6, &Claim::Clean));
    assert_eq!(after.spills.len(), 1);

    world.harness.emulator.faults().set_down(false);
    backfill(&world, Some(store)).await?;
    let mut rows = world.row_ids()?;
    rows.sort();
    assert_eq!(rows, ids(0, 6), "the claimed rows once, the rest replayed");
    let response = invoke(&cold, event(events::event(SHARD, &records[6..]))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let mut rows = world.row_ids()?;
    rows.sort();
    assert_eq!(rows, ids(0, 8));
    world.harness.shutdown().await;
    Ok(())
}

/// A claim this batch does not continue (the event source mapping
/// discarded the batch that made it): only a fence can say what of that
/// batch landed, so during the outage the batch goes back to Kinesis,
/// nothing is spilled, and it lands once BigQuery answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_a_discarded_batch_during_an_outage_gives_the_batch_back() -> anyhow::Result<()>
{
    let world = World::start().await?;
    let records = events::plain_records(0, 4, 200);
    let connected = world.deps(&[]).await?;
    let response = invoke(&connected, event(events::event(SHARD, &records[..2]))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let store = world.state_store()?;
    let key = state_key(&world.table, events::STREAM_ARN, SHARD);
    let (bytes, version) = store.load(&key).await?.context("state written")?;
    let mut shard = ShardState::from_json(&bytes)?;
    // Claimed by an attempt of a batch whose records are not these.
    shard.claim = Claim::Rows(ClaimedRows::new(vec![fingerprint(&position(90)?)]));
    store.replace(&key, &shard.to_json(), &version).await?;

    world.harness.emulator.faults().set_down(true);
    let cold = world.deps(&[]).await?;
    let response = invoke(&cold, event(events::event(SHARD, &records))?).await?;
    assert_eq!(failures(&response), vec![events::seq(2)]);
    assert!(spilled(world.spill_sink()?.as_ref()).await?.is_empty());
    assert_eq!(shard_state(&world, store.as_ref()).await?, shard);

    world.harness.emulator.faults().set_down(false);
    let response = invoke(&cold, event(events::event(SHARD, &records[2..]))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let mut rows = world.row_ids()?;
    rows.sort();
    assert_eq!(rows, ids(0, 4));
    world.harness.shutdown().await;
    Ok(())
}

/// A BigQuery that takes the connection but does not answer costs an
/// invocation at most half its time left (`connect_budget`): the other half
/// is the spill's, so the records land before the working deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bigquery_that_does_not_answer_costs_at_most_half_the_time_left() -> anyhow::Result<()> {
    let world = World::start().await?;
    let env = [("DEADLINE_MARGIN_MS", "0".to_string())];
    world.harness.emulator.faults().set_down(true);
    let deps = world.deps(&env).await?;
    world.harness.emulator.faults().set_down(false);
    world.harness.emulator.faults().delay("GetWriteStream", Duration::from_secs(120));

    let records = events::plain_records(0, 3, 200);
    let lambda = handler::local_event(
        kinesis_bigquery::source::Event::from(event(events::event(SHARD, &records))?),
        Duration::from_millis(400),
    );
    let response = handler::handle(lambda, &deps).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert!(deps.delivery().is_none(), "the schema read never answered");
    let objects = spilled(world.spill_sink()?.as_ref()).await?;
    assert_eq!(objects.iter().map(|o| o.records.len()).sum::<usize>(), 3);
    // Given up by the budget, not by the RPC's own 60 s timeout.
    assert!(objects.iter().all(|o| o.error.contains("did not answer within")), "{objects:?}");
    // No shutdown: the emulator still holds the delayed call; the test's
    // runtime ends it.
    Ok(())
}

/// CDC: a plain raw spill, no state; the backfill applies the changes with
/// their original sequence numbers, so the table converges as if BigQuery
/// had never been away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdc_cold_start_in_an_outage_spills_raw_and_the_backfill_converges() -> anyhow::Result<()> {
    use crate::cdc_support::{Change, cdc_env, expected, keyed_world, record, table};
    let world = keyed_world().await?;
    world.harness.emulator.faults().set_down(true);
    let deps = world.deps(&cdc_env()).await?;
    let changes = [
        Change { id: 1, v: 10, op: "c" },
        Change { id: 2, v: 20, op: "c" },
        Change { id: 1, v: 11, op: "u" },
        Change { id: 2, v: 20, op: "d" },
    ];
    let recs: Vec<events::Rec> = changes.iter().enumerate().map(|(i, c)| record(i, c)).collect();
    let response = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let sink = world.spill_sink()?;
    let objects = spilled(sink.as_ref()).await?;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].write_mode, Some(WriteMode::Cdc));
    assert_eq!(objects[0].records.len(), changes.len());

    world.harness.emulator.faults().set_down(false);
    let mut backfill = backfill_support::deps(&world.harness.emulator, sink, None).await;
    backfill.cdc = Some(deps.config.cdc.clone());
    let summary = backfill_support::run(&backfill, &backfill_support::options()).await;
    assert_eq!(summary.replayed, 1, "{summary:?}");
    assert_eq!(table(&world)?, expected(&changes));
    world.harness.shutdown().await;
    Ok(())
}

/// `check` is a check: it still fails, naming the table, while BigQuery
/// is out of reach (only the Lambda rides the outage out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_while_bigquery_is_out_of_reach() -> anyhow::Result<()> {
    let world = World::start().await?;
    world.harness.emulator.faults().set_down(true);
    let report = kinesis_bigquery::check::run(&world.config(&[])?).await;
    assert!(!report.ok());
    let table = report.findings.iter().find(|f| f.variable == "BIGQUERY_TABLE");
    assert!(table.is_some_and(|f| f.outcome.is_err()), "{:?}", report.findings);
    world.harness.emulator.faults().set_down(false);
    world.harness.shutdown().await;
    Ok(())
}
