//! `kinesis-bigquery check` with `WRITE_MODE=cdc`, against the emulator run
//! as users run it (`kinesis-bigquery emulator --table ... --primary-key
//! ...`): a table declared with a primary key passes, one without fails with
//! the reason and what to do, and so do ROW_FORMAT=arrow, a change-type
//! field the table has no column for, and a missing REST endpoint.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_kinesis-bigquery");

/// `kinesis-bigquery emulator` as a child process, killed on drop.
struct EmulatorProcess {
    child: Child,
    grpc: String,
    rest: String,
}

impl Drop for EmulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keyed` has `PRIMARY KEY (id)`, `plain` has none; same schema.
async fn start_emulator(dir: &Path) -> anyhow::Result<EmulatorProcess> {
    let schema = dir.join("schema.json");
    std::fs::write(
        &schema,
        r#"[{"name":"id","type":"INTEGER","mode":"REQUIRED"},
            {"name":"v","type":"INTEGER"},{"name":"op","type":"STRING"}]"#,
    )?;
    let mut child = Command::new(BIN)
        .args(["emulator", "--grpc", "127.0.0.1:0", "--rest", "127.0.0.1:0"])
        .arg("--table")
        .arg(format!("proj.ds.keyed={}", schema.display()))
        .arg("--table")
        .arg(format!("proj.ds.plain={}", schema.display()))
        .args(["--primary-key", "proj.ds.keyed=id"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let mut emulator = EmulatorProcess { child, grpc: String::new(), rest: String::new() };
    let mut parts = line.trim().split(' ').skip(2);
    let (Some(grpc), Some(rest)) = (parts.next(), parts.next()) else {
        let mut err = String::new();
        if let Some(e) = emulator.child.stderr.as_mut() {
            std::io::Read::read_to_string(e, &mut err)?;
        }
        anyhow::bail!("no ready line: {line:?} {err}");
    };
    emulator.grpc = grpc.trim_start_matches("grpc=").to_string();
    emulator.rest = rest.trim_start_matches("rest=").to_string();
    Ok(emulator)
}

/// Runs `check` on `table` in CDC mode with file sinks, plus `extra`
/// (an empty value removes the variable).
async fn check(
    emulator: &EmulatorProcess,
    dir: &Path,
    table: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<(Output, String)> {
    let mut env = vec![
        ("BIGQUERY_TABLE", format!("proj.ds.{table}")),
        ("BIGQUERY_ENDPOINT", emulator.grpc.clone()),
        ("BIGQUERY_REST_ENDPOINT", emulator.rest.clone()),
        ("WRITE_MODE", "cdc".to_string()),
        ("CDC_CHANGE_TYPE_FIELD", "op".to_string()),
        ("SPILL_URL", format!("file://{}/spill", dir.display())),
        ("DLQ_URL", format!("file://{}/dlq.ndjson", dir.display())),
    ];
    for (k, v) in extra {
        env.retain(|(name, _)| name != k);
        if !v.is_empty() {
            env.push((k, v.to_string()));
        }
    }
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("check").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd.envs(env);
    let out = cmd.output().await?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((out, stdout))
}

fn line<'a>(stdout: &'a str, prefix: &str) -> Option<&'a str> {
    stdout.lines().find(|l| l.starts_with(prefix))
}

#[tokio::test]
async fn check_verifies_the_primary_key_and_says_what_is_wrong() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emulator = start_emulator(dir.path()).await?;

    // The emulator's tables.get shows the key as the service does.
    let get = |t: &str| {
        reqwest::get(format!("{}/bigquery/v2/projects/proj/datasets/ds/tables/{t}", emulator.rest))
    };
    let keyed: serde_json::Value = get("keyed").await?.json().await?;
    assert_eq!(keyed["tableConstraints"]["primaryKey"]["columns"], serde_json::json!(["id"]));
    let plain: serde_json::Value = get("plain").await?.json().await?;
    assert_eq!(plain["schema"]["fields"][0]["name"], "id", "{plain}");
    assert!(plain.get("tableConstraints").is_none(), "{plain}");

    let (out, stdout) = check(&emulator, dir.path(), "keyed", &[]).await?;
    assert!(out.status.success(), "{stdout}");
    let found = line(&stdout, "ok   WRITE_MODE").ok_or_else(|| anyhow::anyhow!("{stdout}"))?;
    assert!(found.contains("primary key (id); _CHANGE_TYPE from field op"), "{found}");

    let (out, stdout) = check(&emulator, dir.path(), "plain", &[]).await?;
    assert!(!out.status.success(), "{stdout}");
    let failed = line(&stdout, "FAIL WRITE_MODE").ok_or_else(|| anyhow::anyhow!("{stdout}"))?;
    assert!(failed.contains("proj.ds.plain"), "{failed}");
    assert!(failed.contains("no primary key"), "{failed}");
    assert!(failed.contains("PRIMARY KEY (column, ...) NOT ENFORCED"), "{failed}");
    // The other probes still report.
    assert!(line(&stdout, "ok   SPILL_URL").is_some(), "{stdout}");
    Ok(())
}

#[tokio::test]
async fn check_refuses_arrow_a_field_without_a_column_and_a_missing_rest_endpoint()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let emulator = start_emulator(dir.path()).await?;

    let (out, stdout) = check(&emulator, dir.path(), "keyed", &[("ROW_FORMAT", "arrow")]).await?;
    assert!(!out.status.success(), "{stdout}");
    assert!(line(&stdout, "FAIL configuration").is_some(), "{stdout}");
    assert!(stdout.contains("ROW_FORMAT=\"arrow\"") && stdout.contains("proto"), "{stdout}");

    let field = [("CDC_CHANGE_TYPE_FIELD", "metadata.operation")];
    let (out, stdout) = check(&emulator, dir.path(), "keyed", &field).await?;
    assert!(!out.status.success(), "{stdout}");
    let failed = line(&stdout, "FAIL WRITE_MODE").ok_or_else(|| anyhow::anyhow!("{stdout}"))?;
    assert!(failed.contains("no column metadata"), "{failed}");
    // With UNKNOWN_FIELDS=ignore the field is read and not written: fine.
    let ignore = [field[0], ("UNKNOWN_FIELDS", "ignore")];
    let (out, stdout) = check(&emulator, dir.path(), "keyed", &ignore).await?;
    assert!(out.status.success(), "{stdout}");

    // A plain-http endpoint (the emulator) has no REST default to guess.
    let (out, stdout) =
        check(&emulator, dir.path(), "keyed", &[("BIGQUERY_REST_ENDPOINT", "")]).await?;
    assert!(!out.status.success(), "{stdout}");
    let failed = line(&stdout, "FAIL WRITE_MODE").ok_or_else(|| anyhow::anyhow!("{stdout}"))?;
    assert!(failed.contains("BIGQUERY_REST_ENDPOINT"), "{failed}");
    Ok(())
}

#[test]
fn a_primary_key_the_table_cannot_have_stops_the_emulator_with_the_reason() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let schema = dir.path().join("schema.json");
    std::fs::write(&schema, r#"[{"name":"id","type":"INTEGER","mode":"REQUIRED"}]"#)?;
    let run = |key: &str| {
        Command::new(BIN)
            .args(["emulator", "--grpc", "127.0.0.1:0", "--rest", "127.0.0.1:0"])
            .arg("--table")
            .arg(format!("proj.ds.t={}", schema.display()))
            .args(["--primary-key", key])
            .output()
    };
    for (key, why) in [
        ("proj.ds.t=nope", "nope is not in the table"),
        ("proj.ds.other=id", "other"),
        ("proj.ds.t", "PROJECT.DATASET.TABLE=COLUMN[,COLUMN...]"),
    ] {
        let out = run(key)?;
        assert!(!out.status.success(), "{key}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{key}: {stderr}");
        assert!(out.stdout.is_empty(), "{key}: no ready line");
    }
    Ok(())
}
