//! The built binary, run the way Lambda runs it: a Runtime API server on
//! 127.0.0.1 speaks the documented protocol (`GET
//! /2018-06-01/runtime/invocation/next` hands out an event with the
//! `Lambda-Runtime-*` headers; the function answers on
//! `POST .../invocation/{id}/response` or `.../error`), and the binary,
//! started with `AWS_LAMBDA_RUNTIME_API` set and no subcommand, must pick
//! the Lambda mode by itself, land the rows and post the right response.

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kinesis_bigquery::emulator::{self, EmulatorConfig};
use kinesis_bigquery::table::TableName;
use serde_json::Value;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, mpsc};

const SAMPLE: &str = include_str!("../fixtures/kinesis-event-sample.json");
const SCHEMA: &str = include_str!("../fixtures/events.schema.json");
const FUNCTION_ARN: &str = "arn:aws:lambda:us-east-2:123456789012:function:kinesis-bigquery";

/// What the function posted back, by route (read through `Debug` in failures).
#[derive(Debug)]
#[allow(dead_code)]
enum Posted {
    Response { request_id: String, body: Value },
    Error { route: String, body: Value },
}

struct RuntimeApi {
    /// Events still to hand out, with their request ids.
    pending: Mutex<Vec<(String, Bytes)>>,
    posted: mpsc::UnboundedSender<Posted>,
    /// Headers of every `/next` answer, to check the context the binary saw.
    deadline_ms: u64,
}

async fn next(State(api): State<Arc<RuntimeApi>>) -> Response {
    let item = api.pending.lock().await.pop();
    match item {
        Some((request_id, body)) => {
            let mut headers = HeaderMap::new();
            let pairs = [
                ("lambda-runtime-aws-request-id", request_id),
                ("lambda-runtime-deadline-ms", api.deadline_ms.to_string()),
                ("lambda-runtime-invoked-function-arn", FUNCTION_ARN.to_string()),
                ("lambda-runtime-trace-id", "Root=1-00000000-000000000000000000000000".into()),
            ];
            for (k, v) in pairs {
                headers.insert(k, v.parse().unwrap());
            }
            (StatusCode::OK, headers, body).into_response()
        }
        // Lambda freezes the process between invocations; long-polling
        // forever is the closest a test server gets.
        None => std::future::pending::<Response>().await,
    }
}

async fn response(
    State(api): State<Arc<RuntimeApi>>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.posted.send(Posted::Response { request_id, body });
    StatusCode::ACCEPTED
}

async fn error(
    State(api): State<Arc<RuntimeApi>>,
    Path(route): Path<String>,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.posted.send(Posted::Error { route, body });
    StatusCode::ACCEPTED
}

async fn init_error(State(api): State<Arc<RuntimeApi>>, body: Bytes) -> StatusCode {
    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let _ = api.posted.send(Posted::Error { route: "init".into(), body });
    StatusCode::ACCEPTED
}

/// Starts the Runtime API on 127.0.0.1:0 with `events` to hand out (first
/// element first); returns its `host:port` and the channel of posts.
fn drain<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    pipe: Option<R>,
) -> tokio::task::JoinHandle<std::io::Result<String>> {
    tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            p.read_to_string(&mut text).await?;
        }
        Ok(text)
    })
}

async fn runtime_api(
    events: Vec<(String, Bytes)>,
    deadline_ms: u64,
) -> anyhow::Result<(String, mpsc::UnboundedReceiver<Posted>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut pending = events;
    pending.reverse();
    let api = Arc::new(RuntimeApi { pending: Mutex::new(pending), posted: tx, deadline_ms });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr.to_string(), rx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_invocations_through_the_runtime_api() -> anyhow::Result<()> {
    let table: TableName = "proj.lambda_rt.events".parse()?;
    // The sample's schema plus the arrival-time metadata column.
    let with_arrival = SCHEMA.trim_end().trim_end_matches(']').trim_end().to_string()
        + ",\n  {\"name\": \"_kinesis_approximate_arrival\", \"type\": \"TIMESTAMP\"}\n]";
    let schema = emulator::parse_bq_schema(&with_arrival)?;
    let emu = emulator::start(EmulatorConfig {
        tables: vec![(table.clone(), schema)],
        ..EmulatorConfig::default()
    })
    .await?;
    let dir = tempfile::tempdir()?;

    let empty = Bytes::from_static(br#"{"Records":[]}"#);
    // Arrival times as Kinesis may print them: a trailing zero, one digit,
    // six digits (aws_lambda_events reads `.120` as 12 ms and `.5` as 5 ms).
    let sample = SAMPLE
        .replace("1764064800.123", "1764064800.120")
        .replace("1764064801.123", "1764064801.5")
        .replace("1764064802.123", "1764064802.123456");
    let events = vec![("req-1".to_string(), Bytes::from(sample)), ("req-2".into(), empty)];
    let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let (api, mut posted) = runtime_api(events, now_ms + 120_000).await?;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kinesis-bigquery"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", &api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "kinesis-bigquery")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("BIGQUERY_TABLE", table.to_string())
        .env("BIGQUERY_ENDPOINT", emu.grpc_endpoint())
        .env("STATE_URL", format!("file://{}/state", dir.path().display()))
        .env("SPILL_URL", format!("file://{}/spill", dir.path().display()))
        .env("DLQ_URL", format!("file://{}/dlq.ndjson", dir.path().display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the built binary")?;

    // Drain the pipes while the binary runs, so a chatty log never blocks it.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut got = Vec::new();
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(60), posted.recv()).await {
            Ok(Some(p)) => got.push(p),
            _ => break,
        }
    }
    child.start_kill()?;
    child.wait().await?;
    let stdout = stdout.await??;
    let stderr = stderr.await??;
    anyhow::ensure!(got.len() == 2, "got {got:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");

    // The sample: every record landed (rows, or the truncated one in the DLQ).
    match &got[0] {
        Posted::Response { request_id, body } => {
            assert_eq!(request_id, "req-1");
            assert_eq!(body, &serde_json::json!({"batchItemFailures": []}));
        }
        other => panic!("expected a response for req-1, got {other:?}"),
    }
    match &got[1] {
        Posted::Response { request_id, body } => {
            assert_eq!(request_id, "req-2");
            assert_eq!(body, &serde_json::json!({"batchItemFailures": []}));
        }
        other => panic!("expected a response for req-2, got {other:?}"),
    }

    let rows = emu.read_rows(&table)?;
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["event_id"].as_str()).collect();
    assert_eq!(ids, ["p0", "p1", "e1-0", "e1-1", "e1-2", "e1-3", "e1-4", "p4"]);
    // Arrival times to the millisecond (the column keeps microseconds).
    let arrivals: Vec<&str> =
        rows.iter().filter_map(|r| r["_kinesis_approximate_arrival"].as_str()).collect();
    let millis: Vec<&str> = arrivals.iter().map(|t| t.get(..23).unwrap_or(t)).collect();
    assert_eq!(
        millis,
        [
            "2025-11-25T10:00:00.120",
            "2025-11-25T10:00:01.500",
            "2025-11-25T10:00:02.123",
            "2025-11-25T10:00:02.123",
            "2025-11-25T10:00:02.123",
            "2025-11-25T10:00:02.123",
            "2025-11-25T10:00:02.123",
            "2025-11-25T10:00:04.123",
        ],
        "{arrivals:?}"
    );
    let dlq = std::fs::read_to_string(dir.path().join("dlq.ndjson"))?;
    assert_eq!(dlq.lines().count(), 1, "{dlq}");

    // Lambda mode logs JSON and EMF to stdout: one summary and one EMF line per invocation.
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let emf: Vec<&Value> = lines.iter().filter(|l| l.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 2, "{stdout}");
    assert_eq!(emf[0]["Rows"], 8);
    assert_eq!(emf[0]["DeadLettered"], 1);
    assert_eq!(emf[1]["Records"], 0);
    let summaries = lines.iter().filter(|l| l["message"] == "invocation summary").count();
    assert_eq!(summaries, 2, "{stdout}");
    emu.shutdown().await;
    Ok(())
}
