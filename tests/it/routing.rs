//! Routing by record (issue 14, item 2) through the whole handler: a
//! templated `BIGQUERY_TABLE` sends each record to the table its `type`
//! field names, each (shard, table) with its own write stream and state, on
//! the emulator (gRPC + REST) and moto (S3 state and spillover, SQS letters).

use crate::common::{self, DATASET, Harness, PROJECT};
use crate::events::{self, Rec};
use crate::handler_support::{World, event, failures, invoke};

use kinesis_bigquery::table::TableName;
use serde_json::{Value, json};
use tonic::Code;

const SHARD: &str = "shardId-000000000004";

/// A world whose tables are `r_<uuid>_<type>`: the template's prefix is
/// fresh per test, so tests run in parallel.
pub struct Routed {
    pub world: World,
    prefix: String,
}

impl Routed {
    pub async fn start() -> anyhow::Result<Self> {
        let world = World::start().await?;
        Ok(Self { world, prefix: format!("r_{}_", uuid::Uuid::new_v4().simple()) })
    }

    pub fn template(&self) -> String {
        format!("{PROJECT}.{DATASET}.{}{{type}}", self.prefix)
    }

    pub fn table(&self, kind: &str) -> anyhow::Result<TableName> {
        Ok(TableName::new(PROJECT, DATASET, &format!("{}{kind}", self.prefix))?)
    }

    /// Creates the table of `kind` in the emulator (the events schema).
    pub fn create(&self, kind: &str) -> anyhow::Result<TableName> {
        let t = self.table(kind)?;
        self.harness().emulator.create_table(&t, common::events_schema()?)?;
        Ok(t)
    }

    pub fn harness(&self) -> &Harness {
        &self.world.harness
    }

    pub async fn deps(
        &self,
        overrides: &[(&'static str, String)],
    ) -> anyhow::Result<kinesis_bigquery::handler::Deps> {
        let mut all = vec![("BIGQUERY_TABLE", self.template())];
        all.extend(overrides.iter().cloned());
        self.world.deps(&all).await
    }

    /// The `event_id`s in the table of `kind`, in write order.
    pub fn rows(&self, kind: &str) -> anyhow::Result<Vec<String>> {
        let rows = self.harness().emulator.read_rows(&self.table(kind)?)?;
        Ok(rows.iter().map(|r| r["event_id"].as_str().unwrap_or("?").to_string()).collect())
    }
}

/// Record `i` of the shard: `{"event_id":"e<i>","type":<kind>,"user_id":i}`.
pub fn rec(i: usize, kind: &str) -> Rec {
    data_rec(i, json!({"event_id": format!("e{i}"), "type": kind, "user_id": i}))
}

pub fn data_rec(i: usize, data: Value) -> Rec {
    Rec {
        sequence_number: events::seq(i),
        partition_key: format!("k{i}"),
        data: data.to_string().into_bytes(),
    }
}

/// The letters' (event_id or sequence number, reason), sorted.
fn letter_reasons(letters: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = letters
        .iter()
        .map(|l| {
            (
                l["sequence_number"].as_str().unwrap_or("?").to_string(),
                l["reason"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_land_in_the_table_their_field_names_once() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    r.create("search")?;
    r.create("browse")?;
    let deps = r.deps(&[]).await?;
    let recs = vec![
        rec(0, "search"),
        rec(1, "browse"),
        data_rec(2, json!({"event_id": "e2", "user_id": 2})),
        rec(3, "search"),
        rec(4, "map"),
        data_rec(5, json!({"event_id": "e5", "type": "a.b"})),
        data_rec(6, json!({"event_id": "e6", "type": 6})),
        rec(7, "browse"),
    ];
    let response = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(r.rows("search")?, ["e0", "e3"]);
    assert_eq!(r.rows("browse")?, ["e1", "e7"]);
    let letters = r.world.dead_letters().await?;
    assert_eq!(
        letter_reasons(&letters),
        [
            (events::seq(2), "no_route".to_string()),
            (events::seq(4), "no_such_table".to_string()),
            (events::seq(5), "no_route".to_string()),
            (events::seq(6), "no_route".to_string()),
        ]
    );
    let no_such = letters.iter().find(|l| l["reason"] == "no_such_table");
    assert_eq!(
        no_such.map(|l| l["table"].clone()),
        Some(json!(r.table("map")?.to_string())),
        "{letters:?}"
    );
    let no_route = letters.iter().find(|l| l["reason"] == "no_route");
    assert_eq!(no_route.map(|l| l["table"].clone()), Some(json!(r.template())));

    // Each table has its own state object, keyed by the table.
    let states = r.world.objects("state/").await?;
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.iter().any(|k| k.contains(&format!("{}search/", r.prefix))), "{states:?}");

    // Kinesis resends the batch (a warm container): no row twice.
    let again = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&again), Vec::<String>::new());
    assert_eq!(r.rows("search")?, ["e0", "e3"]);
    assert_eq!(r.rows("browse")?, ["e1", "e7"]);
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_table_failing_leaves_the_others_landed_and_the_response_exact() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    r.create("search")?;
    let browse = r.create("browse")?;
    // The spillover is unreachable, so a table whose appends fail has nowhere
    // to put its records: they must go back to Kinesis, and only they.
    let missing_spill = format!("s3://{}-missing/spill", r.world.bucket);
    let broken = r.deps(&[("SPILL_URL", missing_spill)]).await?;
    r.harness().emulator.faults().fail_table(&browse, 10_000, Code::Unavailable);
    let recs: Vec<Rec> =
        (0..10).map(|i| rec(i, if i == 3 || i == 6 { "browse" } else { "search" })).collect();
    let response = invoke(&broken, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), vec![events::seq(3)]);
    assert_eq!(r.rows("search")?, ["e0", "e1", "e2", "e4", "e5", "e7", "e8", "e9"]);
    assert!(r.rows("browse")?.is_empty());

    // BigQuery takes browse rows again; Kinesis resends from record 3. Each
    // table's state skips what it holds: every record once.
    r.harness().emulator.faults().clear();
    let deps = r.deps(&[]).await?;
    let retry = invoke(&deps, event(events::event(SHARD, &recs[3..]))?).await?;
    assert_eq!(failures(&retry), Vec::<String>::new());
    assert_eq!(r.rows("search")?, ["e0", "e1", "e2", "e4", "e5", "e7", "e8", "e9"]);
    assert_eq!(r.rows("browse")?, ["e3", "e6"]);
    assert!(r.world.dead_letters().await?.is_empty());
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_past_max_tables_go_back_to_kinesis_and_land_on_the_retry() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    for kind in ["a", "b", "c"] {
        r.create(kind)?;
    }
    let deps = r.deps(&[("MAX_TABLES", "2".into())]).await?;
    let kinds = ["a", "b", "a", "c", "b", "c", "a"];
    let recs: Vec<Rec> = kinds.iter().enumerate().map(|(i, k)| rec(i, k)).collect();
    let response = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), vec![events::seq(3)]);
    assert_eq!(r.rows("a")?, ["e0", "e2", "e6"]);
    assert_eq!(r.rows("b")?, ["e1", "e4"]);
    assert!(r.rows("c")?.is_empty());

    // The retry starts at record 3: c and b are its first two tables, so a
    // (record 6, already in its table) is past the bound this time. It goes
    // back again, unseen; the checkpoint still moved on.
    let retry = invoke(&deps, event(events::event(SHARD, &recs[3..]))?).await?;
    assert_eq!(failures(&retry), vec![events::seq(6)]);
    assert_eq!(r.rows("c")?, ["e3", "e5"]);
    let last = invoke(&deps, event(events::event(SHARD, &recs[6..]))?).await?;
    assert_eq!(failures(&last), Vec::<String>::new());
    assert_eq!(r.rows("a")?, ["e0", "e2", "e6"]);
    assert_eq!(r.rows("b")?, ["e1", "e4"]);
    assert_eq!(r.rows("c")?, ["e3", "e5"]);
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_bigquery_will_not_open_is_spilled_raw_and_backfilled_once() -> anyhow::Result<()> {
    use kinesis_bigquery::delivery::store;
    use kinesis_bigquery::sink_url::SinkUrl;
    use kinesis_bigquery::spill::{self, SpillFilter};

    let r = Routed::start().await?;
    r.create("search")?;
    r.create("browse")?;
    let deps = r.deps(&[]).await?;
    // A warm container: `search` is open, `browse` not yet.
    let first = invoke(&deps, event(events::event(SHARD, &[rec(0, "search")]))?).await?;
    assert_eq!(failures(&first), Vec::<String>::new());
    // Then BigQuery stops answering schema reads: `browse` cannot be opened.
    r.harness().emulator.faults().fail_next("GetWriteStream", 10_000, Code::Unavailable, "");
    let recs = vec![rec(0, "search"), rec(1, "search"), rec(2, "browse"), rec(3, "search")];
    let response = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(r.rows("search")?, ["e0", "e1", "e3"]);
    assert!(r.rows("browse")?.is_empty());

    let aws = r.harness().moto.sdk_config();
    let spill_url: SinkUrl = format!("s3://{}/spill", r.world.bucket).parse()?;
    let sink = spill::open(&spill_url, &aws)?;
    let keys = sink.list(&SpillFilter::default()).await?;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let batch = sink.read(&keys[0]).await?;
    assert_eq!(batch.table, r.table("browse")?);
    assert_eq!(batch.records.len(), 1);

    // BigQuery is back: the backfill writes the spilled record to its table.
    r.harness().emulator.faults().clear();
    let state_url: SinkUrl = format!("s3://{}/state", r.world.bucket).parse()?;
    let mut backfill =
        crate::backfill_support::deps(&r.harness().emulator, sink.clone(), None).await;
    backfill.state = Some(store::open(&state_url, &aws)?);
    let summary =
        crate::backfill_support::run(&backfill, &crate::backfill_support::options()).await;
    assert_eq!(summary.failed, 0, "{summary:?}");
    assert_eq!(r.rows("browse")?, ["e2"]);
    assert_eq!(r.rows("search")?, ["e0", "e1", "e3"]);
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_routes_clicks_by_type_exactly_once_under_every_fault() -> anyhow::Result<()> {
    use kinesis_bigquery::demo::{self, DemoArgs, DemoMode, FaultSet};
    let args = DemoArgs {
        mode: DemoMode::ExactlyOnce,
        records: 800,
        shards: 2,
        batch_size: 250,
        format: kinesis_bigquery::rows::RowFormat::Proto,
        faults: "all".parse::<FaultSet>().map_err(anyhow::Error::msg)?,
        seed: 11,
        keep: false,
        quiet: true,
        routing: true,
        new_field: false,
    };
    let report = demo::run(&args).await?;
    assert!(report.passed(), "{report}");
    let tables: Vec<&str> = report.routed.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tables, ["clicks_view", "clicks_click", "clicks_add_to_cart", "clicks_purchase"]);
    assert!(report.routed.iter().all(|(_, rows)| *rows > 0), "{report}");
    assert_eq!(report.routed.iter().map(|(_, rows)| rows).sum::<u64>(), report.rows_in_table);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_routes_to_each_tables_default_stream() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    r.create("search")?;
    r.create("browse")?;
    let deps = r.deps(&[("WRITE_MODE", "at_least_once".into())]).await?;
    let recs = vec![rec(0, "browse"), rec(1, "search"), rec(2, "browse"), rec(3, "nope")];
    let response = invoke(&deps, event(events::event(SHARD, &recs))?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    assert_eq!(r.rows("browse")?, ["e0", "e2"]);
    assert_eq!(r.rows("search")?, ["e1"]);
    let letters = r.world.dead_letters().await?;
    assert_eq!(letter_reasons(&letters), [(events::seq(3), "no_such_table".to_string())]);
    // No state in this mode.
    assert!(r.world.objects("state/").await?.is_empty());
    r.world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_to_the_same_tables_keep_a_state_per_shard_and_table() -> anyhow::Result<()> {
    let r = Routed::start().await?;
    r.create("search")?;
    r.create("browse")?;
    let deps = r.deps(&[]).await?;
    let other = "shardId-000000000009";
    let mut json = events::event(SHARD, &[rec(0, "search"), rec(1, "browse")]);
    let second = events::event(other, &[rec(2, "browse"), rec(3, "search")]);
    if let (Some(a), Some(b)) = (json["Records"].as_array_mut(), second["Records"].as_array()) {
        a.extend(b.iter().cloned());
    }
    // Both shards open the same two tables at once (first open wins).
    let response = invoke(&deps, event(json.clone())?).await?;
    assert_eq!(failures(&response), Vec::<String>::new());
    let mut search = r.rows("search")?;
    let mut browse = r.rows("browse")?;
    search.sort();
    browse.sort();
    assert_eq!(search, ["e0", "e3"]);
    assert_eq!(browse, ["e1", "e2"]);
    assert_eq!(r.world.objects("state/").await?.len(), 4);
    // The same event again: every (shard, table) state skips it.
    let again = invoke(&deps, event(json)?).await?;
    assert_eq!(failures(&again), Vec::<String>::new());
    assert_eq!(r.rows("search")?.len() + r.rows("browse")?.len(), 4);
    r.world.harness.shutdown().await;
    Ok(())
}
