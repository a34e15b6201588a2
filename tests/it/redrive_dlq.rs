//! `kinesis-bigquery redrive` against the emulator and moto: letters the
//! Lambda dead-lettered for a missing column come back once the column
//! exists — written exactly once, removed from the queue, duplicates
//! dropped, the rest left with their reason refreshed; a dry run changes
//! nothing; a crash after parking neither loses nor duplicates.

use std::time::Duration;

use crate::common::col;
use crate::events::{self, Rec, seq};
use crate::handler_support::{World, event, failures, invoke};
use kinesis_bigquery::backfill::{BackfillDeps, Progress};
use kinesis_bigquery::batch::BatchLimits;
use kinesis_bigquery::bigquery::{AppenderOptions, WriteClient};
use kinesis_bigquery::dlq;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::redrive::{self, Letters, RedriveDeps, RedriveError, RedriveOptions};
use kinesis_bigquery::rows::{EncoderOptions, RowFormat, UnknownFields};
use kinesis_bigquery::sink_url::SinkUrl;
use kinesis_bigquery::spill::FileSpill;
use serde_json::{Value, json};
use std::sync::Arc;

/// Records 0..4: 1 and 3 carry a field the table lacks, 2 is not JSON
/// (cut short after a field the table lacks: `invalid_json` whatever the
/// encoder meets first, in the Lambda and in the redrive alike).
fn batch() -> Vec<Rec> {
    (0..4)
        .map(|i| {
            let mut v: Value = serde_json::from_slice(&events::row_json(i, 150)).unwrap();
            if i % 2 == 1 {
                v["plan"] = json!(format!("p{i}"));
            }
            let data = if i == 2 {
                br#"{"nope": 1, "event_id": "e2"#.to_vec()
            } else {
                v.to_string().into_bytes()
            };
            Rec { sequence_number: seq(i), partition_key: "k".into(), data }
        })
        .collect()
}

/// The `(event_id, plan)` of rows that came back from the queue (the
/// handler wrote e0 itself, twice, being at-least-once).
fn redriven(world: &World) -> anyhow::Result<Vec<(String, String)>> {
    Ok(world
        .harness
        .emulator
        .read_rows(&world.table)?
        .iter()
        .filter(|r| r["event_id"] != "e0")
        .map(|r| {
            (r["event_id"].as_str().unwrap_or("?").into(), r["plan"].as_str().unwrap_or("?").into())
        })
        .collect())
}

/// Dead-letters the batch twice (at-least-once mode retried), so each
/// letter is in the queue two times.
async fn dead_letter_twice(world: &World, dlq_url: &str) -> anyhow::Result<()> {
    let deps = world
        .deps(&[("WRITE_MODE", "at_least_once".into()), ("DLQ_URL", dlq_url.to_string())])
        .await?;
    for _ in 0..2 {
        let r = invoke(&deps, event(events::event("shardId-000000000000", &batch()))?).await?;
        assert!(failures(&r).is_empty());
    }
    Ok(())
}

async fn redrive_deps(
    world: &World,
    dlq_url: &str,
    work: &std::path::Path,
) -> anyhow::Result<RedriveDeps> {
    let url: SinkUrl = dlq_url.parse()?;
    let aws = world.harness.moto.sdk_config();
    let letters = match &url {
        SinkUrl::Sqs { queue_url } => {
            Letters::Sqs { client: world.harness.moto.sqs_client(), queue_url: queue_url.clone() }
        }
        SinkUrl::File { path } => Letters::File { path: path.clone() },
        SinkUrl::S3 { .. } => anyhow::bail!("not a queue"),
    };
    let client = WriteClient::connect(&world.harness.emulator.endpoint()).await?;
    Ok(RedriveDeps {
        letters,
        backfill: BackfillDeps {
            client,
            spill: Arc::new(FileSpill::new(work.to_path_buf())),
            state: None,
            dlq: Some(dlq::open(&url, None, &aws)?),
            encoder: EncoderOptions {
                format: RowFormat::Proto,
                unknown_fields: UnknownFields::Reject,
            },
            cdc: None,
            limits: BatchLimits::default(),
            appender: AppenderOptions::default(),
            append_timeout: Duration::from_secs(30),
        },
    })
}

fn options(dry_run: bool) -> RedriveOptions {
    RedriveOptions { dry_run, max_letters: 1000, visibility_secs: 60, crash_after_park: false }
}

#[tokio::test]
async fn letters_that_now_fit_are_written_once_and_leave_the_queue() -> anyhow::Result<()> {
    let world = World::start().await?;
    let queue = world.queue.clone();
    dead_letter_twice(&world, &queue).await?;
    world
        .harness
        .emulator
        .add_columns(&world.table, vec![col("plan", Type::String, Mode::Nullable)])?;
    let work = tempfile::tempdir()?;
    let deps = redrive_deps(&world, &queue, work.path()).await?;

    // A dry run says what would happen, by reason, and touches nothing.
    let dry = redrive::run(&deps, &options(true), &Progress::Silent).await?;
    assert_eq!(dry.read, 6);
    assert_eq!(dry.fits.get("unknown_field"), Some(&2));
    assert_eq!(dry.still.get("invalid_json"), Some(&1));
    assert_eq!(dry.duplicates, 3);
    assert!(redriven(&world)?.is_empty());

    let done = redrive::run(&deps, &options(false), &Progress::Silent).await?;
    assert_eq!((done.read, done.duplicates, done.rows_written), (6, 3, 2));
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    };
    assert_eq!(redriven(&world)?, pairs(&[("e1", "p1"), ("e3", "p3")]));
    // Only the record that still cannot be a row is left, its letter refreshed.
    let left = world.dead_letters().await?;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["reason"], "invalid_json");
    assert_eq!(left[0]["sequence_number"], seq(2));

    // A rerun finds nothing new that fits: it writes nothing.
    let again = redrive::run(&deps, &options(false), &Progress::Silent).await?;
    assert_eq!(again.rows_written, 0);
    assert_eq!(redriven(&world)?.len(), 2);
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_crash_after_parking_neither_loses_nor_duplicates() -> anyhow::Result<()> {
    let world = World::start().await?;
    let file = world.dir.path().join("dlq.ndjson");
    let url = format!("file://{}", file.display());
    dead_letter_twice(&world, &url).await?;
    world
        .harness
        .emulator
        .add_columns(&world.table, vec![col("plan", Type::String, Mode::Nullable)])?;
    let work = tempfile::tempdir()?;
    let deps = redrive_deps(&world, &url, work.path()).await?;
    let crashing = RedriveOptions { crash_after_park: true, ..options(false) };
    let err = redrive::run(&deps, &crashing, &Progress::Silent).await.unwrap_err();
    assert!(matches!(err, RedriveError::Crash));
    assert!(redriven(&world)?.is_empty());
    // The letters are all still there; the rerun finds them parked.
    let rerun = redrive::run(&deps, &options(false), &Progress::Silent).await?;
    assert_eq!(rerun.already_parked, 2);
    assert_eq!(rerun.rows_written, 2);
    let mut ids: Vec<String> = redriven(&world)?.into_iter().map(|(id, _)| id).collect();
    ids.sort();
    assert_eq!(ids, ["e1", "e3"]);
    let left: Vec<Value> = std::fs::read_to_string(&file)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    // The record that still does not fit stays (both copies: the file is
    // deduplicated only for what is redriven; the refreshed copy replaces one).
    assert!(left.iter().all(|l| l["reason"] == "invalid_json"), "{left:?}");
    assert!(!left.is_empty());
    world.harness.shutdown().await;
    Ok(())
}
