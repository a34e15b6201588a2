//! `kinesis-bigquery emulator` as a process: the ready line, tables from
//! `bq` schema files, REST and gRPC answering, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use kinesis_bigquery::pb::storage::GetWriteStreamRequest;
use kinesis_bigquery::pb::storage::big_query_write_client::BigQueryWriteClient;

#[tokio::test]
async fn emulator_command_prints_ready_serves_tables_and_stops_on_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        r#"[{"name":"id","type":"INTEGER","mode":"REQUIRED"},{"name":"msg","type":"STRING"}]"#,
    )?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinesis-bigquery"))
        .args([
            "emulator",
            "--grpc",
            "127.0.0.1:0",
            "--rest",
            "127.0.0.1:0",
            "--idle-timeout-secs",
            "30",
        ])
        .arg("--table")
        .arg(format!("proj.ds.events={}", schema.display()))
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    assert!(line.starts_with("emulator ready grpc=http://127.0.0.1:"), "{line}");
    let mut parts = line.trim().split(' ').skip(2);
    let grpc = parts.next().unwrap().trim_start_matches("grpc=").to_string();
    let rest = parts.next().unwrap().trim_start_matches("rest=").to_string();

    let table: serde_json::Value =
        reqwest::get(format!("{rest}/bigquery/v2/projects/proj/datasets/ds/tables/events"))
            .await?
            .json()
            .await?;
    assert_eq!(table["schema"]["fields"][0]["name"], "id");
    let mut client = BigQueryWriteClient::connect(grpc).await?;
    let stream = client
        .get_write_stream(GetWriteStreamRequest {
            name: "projects/proj/datasets/ds/tables/events/streams/_default".into(),
            view: 2,
        })
        .await?
        .into_inner();
    assert_eq!(stream.table_schema.map(|s| s.fields.len()), Some(2));

    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status()?.success());
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "{status:?}");
    Ok(())
}

#[test]
fn a_bad_table_argument_fails_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_kinesis-bigquery"))
        .args([
            "emulator",
            "--grpc",
            "127.0.0.1:0",
            "--rest",
            "127.0.0.1:0",
            "--table",
            "proj.ds.t=/nonexistent/schema.json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/schema.json"), "{err}");
}
