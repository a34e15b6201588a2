//! The built binary's `invoke` and `check` commands, and what it logs: with
//! every log level up to TRACE for every library, no credential placed in
//! the environment ever appears in any output line.

use crate::common;
use crate::handler_support;

use handler_support::World;
use std::process::Output;

const BIN: &str = env!("CARGO_BIN_EXE_kinesis-bigquery");
/// Markers standing in for credentials; moto accepts any key.
const KEY_ID: &str = "AKIAMARKERKEYID0000X";
const SECRET: &str = "secretMARKER/do-not-log+0123456789abcdefXYZ";
const SESSION: &str = "sessionMARKERtokenvalue0123456789";
const GCP_KEY: &str = "-----BEGIN PRIVATE KEY-----gcpMARKERkey";

/// Runs the binary with `args` and the world's environment (AWS SDK pointed
/// at moto through its standard variables), plus `extra`.
async fn run(world: &World, args: &[&str], extra: &[(&str, String)]) -> anyhow::Result<Output> {
    let key_file = world.dir.path().join("gcp-key.json");
    std::fs::write(
        &key_file,
        format!(r#"{{"type":"service_account","private_key":"{GCP_KEY}","client_email":"x@y"}}"#),
    )?;
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in world.env(&[]) {
        cmd.env(k, v);
    }
    cmd.env("AWS_ENDPOINT_URL", &world.harness.moto.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", SESSION)
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key_file)
        .env("GOOGLE_API_KEY", GCP_KEY);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    Ok(cmd.output().await?)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_credentials(all: &str) {
    for marker in [KEY_ID, SECRET, SESSION, GCP_KEY, "MARKER"] {
        assert!(!all.contains(marker), "{marker:?} leaked into the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_prints_the_response_and_logs_no_credentials_even_at_trace() -> anyhow::Result<()> {
    let world = World::start().await?;
    let event = common::fixture("kinesis-event-sample.json");
    let event = event.to_string_lossy().into_owned();
    for (round, filter) in [("LOG_LEVEL", "trace"), ("RUST_LOG", "trace")].iter().enumerate() {
        let out = run(&world, &["invoke", "--event", &event], &[(filter.0, filter.1.to_string())])
            .await?;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        // stdout: the response, and nothing else.
        assert_eq!(stdout.trim(), r#"{"batchItemFailures":[]}"#);
        // stderr: JSON log lines, the summary and the EMF line among them.
        let lines: Vec<serde_json::Value> =
            stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let summary = lines
            .iter()
            .find(|l| l["message"] == "invocation summary")
            .ok_or_else(|| anyhow::anyhow!("no summary in {stderr}"))?;
        // The second round is a Kinesis retry: all nine user records landed before.
        let (rows, skipped) = if round == 0 { (8, 0) } else { (0, 9) };
        assert_eq!(summary["rows"], rows, "{summary}");
        assert_eq!(summary["skipped"], skipped, "{summary}");
        assert!(lines.iter().any(|l| l["_aws"]["CloudWatchMetrics"].is_array()));
        // The verbose levels really were on (else this test could not fail):
        // our debug lines, and with RUST_LOG=trace the libraries' TRACE lines
        // too (the AWS SDK's resolved identity among them).
        assert!(lines.iter().any(|l| l["message"] == "shard delivered"), "no DEBUG line");
        if round == 1 {
            let traces = lines.iter().filter(|l| l["level"] == "TRACE").count();
            assert!(traces > 50, "only {traces} TRACE lines");
            assert!(stderr.contains("resolved identity"), "AWS SDK trace lines missing");
        }
        assert_no_credentials(&stdout);
        assert_no_credentials(&stderr);
    }
    assert_eq!(world.row_ids()?.len(), 8);
    world.harness.shutdown().await;
    Ok(())
}

/// `check` says what a cold start would refuse: a `BATCH_MAX_BYTES` the
/// table's own request overhead (its writer schema) leaves no room for rows in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_a_batch_max_bytes_the_table_schema_fills() -> anyhow::Result<()> {
    use kinesis_bigquery::pb::storage::TableSchema;
    use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
    let mut world = World::start().await?;
    let wide = TableSchema {
        fields: (0..4000)
            .map(|i| common::col(&format!("c{i:04}"), Type::String, Mode::Nullable))
            .collect(),
    };
    world.table = world.harness.new_table(wide)?;
    let tight = [("BATCH_MAX_BYTES", kinesis_bigquery::batch::MIN_BATCH_MAX_BYTES.to_string())];
    let out = run(&world, &["check"], &tight).await?;
    let (stdout, _) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("FAIL BATCH_MAX_BYTES")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok   BIGQUERY_TABLE")), "{stdout}");
    let out = run(&world, &["check"], &[]).await?;
    let (stdout, _) = text(&out);
    assert!(stdout.lines().any(|l| l.starts_with("ok   BATCH_MAX_BYTES")), "{stdout}");
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_each_sink_and_fails_on_any() -> anyhow::Result<()> {
    let world = World::start().await?;
    let out = run(&world, &["check"], &[("RUST_LOG", "trace".into())]).await?;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for var in ["BIGQUERY_TABLE", "STATE_URL", "SPILL_URL", "DLQ_URL"] {
        assert!(stdout.lines().any(|l| l.starts_with(&format!("ok   {var}"))), "{var}: {stdout}");
    }
    assert!(stdout.contains("7 columns: event_id STRING"), "{stdout}");
    assert_no_credentials(&stdout);
    assert_no_credentials(&stderr);

    // A missing queue fails that probe, the others still report.
    let out = run(&world, &["check"], &[("DLQ_URL", format!("{}-missing", world.queue))]).await?;
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.lines().any(|l| l.starts_with("FAIL DLQ_URL")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("ok   SPILL_URL")), "{stdout}");

    // Bad configuration: every problem listed, nothing probed.
    let out =
        run(&world, &["check"], &[("WRITE_MODE", "twice".into()), ("BATCH_MAX_ROWS", "0".into())])
            .await?;
    let (stdout, _) = text(&out);
    assert!(!out.status.success());
    assert!(stdout.contains("WRITE_MODE=\"twice\"") && stdout.contains("BATCH_MAX_ROWS=\"0\""));
    world.harness.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn without_a_command_or_runtime_api_it_explains_itself() -> anyhow::Result<()> {
    let out =
        tokio::process::Command::new(BIN).env_remove("AWS_LAMBDA_RUNTIME_API").output().await?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AWS_LAMBDA_RUNTIME_API"));
    Ok(())
}
