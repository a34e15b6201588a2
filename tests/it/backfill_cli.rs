//! The `kinesis-bigquery backfill` command as an operator runs it: the built
//! binary against the emulator, `file://` spillover and state; JSON progress
//! lines on a non-terminal stdout, the exit status says whether anything was
//! left behind.

use crate::backfill_support;
use crate::common;

use std::process::Command;

use backfill_support::*;
use common::Harness;
use kinesis_bigquery::delivery::store::{FileStateStore, StateStore};
use kinesis_bigquery::spill::{FileSpill, SpillSink};
use serde_json::Value;

/// Runs the binary without blocking the runtime the in-process emulator
/// serves on.
async fn backfill(args: &[&str]) -> (i32, Vec<Value>) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_kinesis-bigquery"))
            .arg("backfill")
            .args(&args)
            .env_remove("STATE_URL")
            .env_remove("DLQ_URL")
            .env_remove("WRITE_MODE")
            .env_remove("BIGQUERY_ENDPOINT")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out.status.code().unwrap_or(-1), lines)
}

#[tokio::test]
async fn json_progress_summary_and_exit_status() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let dir = tempfile::tempdir()?;
    let spill = FileSpill::new(dir.path().join("spill"));
    let state = FileStateStore::new(dir.path().join("state"));
    let good = records("shardId-000000000000", 0, 8);
    let mut with_bad = records("shardId-000000000001", 0, 3);
    with_bad.push(record("shardId-000000000001", 3, b"{oops".to_vec()));
    for recs in [&good, &with_bad] {
        let batch = spilled(&table, recs);
        spill.spill(&batch).await?;
        commit_state(&state as &dyn StateStore, &table, recs, &[&batch]).await;
    }
    let spill_url = format!("file://{}", dir.path().join("spill").display());
    let state_url = format!("file://{}", dir.path().join("state").display());
    let endpoint = h.emulator.grpc_endpoint();
    let base = ["--endpoint", &endpoint, "--state", &state_url];

    // exactly_once without --state is refused before anything is touched.
    let (code, _) = backfill(&[&spill_url, "--endpoint", &endpoint]).await;
    assert_ne!(code, 0);

    // Dry run: counts, exit 0, nothing written.
    let (code, lines) = backfill(&[&[spill_url.as_str(), "--dry-run"][..], &base].concat()).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["objects"], 2);
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(
        (summary["counted"].as_u64(), summary["dead_lettered"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(ids_in_table(&h.emulator, &table).is_empty());

    // No dead-letter queue: the object with a bad record stays, exit non-zero.
    let (code, lines) = backfill(&[&[spill_url.as_str()][..], &base].concat()).await;
    assert_ne!(code, 0);
    let objects: Vec<&Value> = lines.iter().filter(|l| l["event"] == "object").collect();
    assert_eq!(objects.len(), 2);
    assert!(
        objects.iter().any(
            |o| o["status"] == "failed" && o["error"].as_str().unwrap().contains("dead-letter")
        )
    );
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&good));

    // With a queue: everything lands, exit 0.
    let dlq = format!("file://{}", dir.path().join("dlq.ndjson").display());
    let (code, lines) = backfill(&[&[spill_url.as_str(), "--dlq", &dlq][..], &base].concat()).await;
    assert_eq!(code, 0, "{lines:?}");
    assert_eq!(lines.last().unwrap()["replayed"], 1);
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&[good, with_bad[..3].to_vec()].concat()));
    assert_eq!(letters(&dir.path().join("dlq.ndjson")).len(), 1);
    h.shutdown().await;
    Ok(())
}
