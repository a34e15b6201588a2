//! The moto server (local S3 + SQS) the integration tests talk to through the
//! real AWS SDK.
//!
//! `scripts/test` starts one moto server for the whole run and exports
//! `MOTO_ENDPOINT`. When a test is run bare (`cargo test` without the script),
//! the first test of the process starts `.venv/bin/moto_server` itself on a free
//! port, watched by a small shell loop that stops it when the test process
//! exits (ready when moto prints its "Running on" line); without a `.venv`
//! the test fails and says to run `scripts/test`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

/// Region the tests use; moto accepts any, the SDK needs one.
pub const REGION: &str = "us-east-1";

/// A running moto server.
#[derive(Clone, Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
}

/// The moto server for this test process: `MOTO_ENDPOINT` when set, else one
/// started once from `.venv/bin/moto_server`.
pub fn moto() -> anyhow::Result<Moto> {
    static STARTED: OnceLock<Result<Moto, String>> = OnceLock::new();
    if let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") {
        return Ok(Moto { endpoint });
    }
    STARTED.get_or_init(|| start_own().map_err(|e| format!("{e:#}"))).clone().map_err(|e| {
        anyhow::anyhow!("{e}\nRun the whole suite with `scripts/test`, which sets up moto.")
    })
}

fn start_own() -> anyhow::Result<Moto> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if !bin.exists() {
        bail!("MOTO_ENDPOINT is not set and {} does not exist", bin.display());
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let log = std::env::temp_dir().join(format!("kbq-moto-{port}.log"));
    // The loop stops moto once this process is gone: statics are never
    // dropped, so the test process cannot stop it itself. moto's output comes
    // back through the pipe: its "Running on" line is the readiness signal.
    let script = format!(
        "'{bin}' -H 127.0.0.1 -p {port} 2>&1 </dev/null & m=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 1; done; \
         kill $m 2>/dev/null",
        bin = bin.display(),
        parent = std::process::id(),
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("spawning moto_server")?;
    let out = child.stdout.take().context("moto_server's output")?;
    let mut lines = BufReader::new(out).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.context("reading moto_server's output")?;
        let ready = line.contains("Running on");
        seen.push(line);
        if ready {
            break;
        }
    }
    // Keep draining into the log, so moto never blocks on a full pipe.
    let mut file = std::fs::File::create(&log)?;
    for line in &seen {
        writeln!(file, "{line}")?;
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
        }
    });
    if !answers(port) {
        bail!("moto_server on port {port} did not answer; its output:\n{}", seen.join("\n"));
    }
    Ok(Moto { endpoint: format!("http://127.0.0.1:{port}") })
}

/// Whether moto's own API answers with HTTP 200 on this port.
fn answers(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /moto-api/data.json HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if conn.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    conn.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head.ends_with(b"200")
}

fn credentials() -> Credentials {
    Credentials::new("test", "test", None, None, "kbq-tests")
}

impl Moto {
    /// An S3 client on moto: path-style addressing, since `bucket.127.0.0.1`
    /// does not resolve.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn sqs_client(&self) -> aws_sdk_sqs::Client {
        let conf = aws_sdk_sqs::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(credentials())
            .endpoint_url(&self.endpoint)
            .build();
        aws_sdk_sqs::Client::from_conf(conf)
    }

    /// An `SdkConfig` pointing every service at moto, for code that builds its
    /// own clients from one. S3 clients built from it still need
    /// `force_path_style(true)`.
    pub fn sdk_config(&self) -> aws_config::SdkConfig {
        aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(credentials()))
            .endpoint_url(&self.endpoint)
            .build()
    }

    /// A new, empty bucket with a uuid name, so tests can run in parallel.
    pub async fn new_bucket(&self) -> anyhow::Result<String> {
        let name = format!("kbq-{}", uuid::Uuid::new_v4().simple());
        self.s3_client().create_bucket().bucket(&name).send().await?;
        Ok(name)
    }

    /// A new, empty standard queue with a uuid name; returns its URL.
    pub async fn new_queue(&self) -> anyhow::Result<String> {
        let name = format!("kbq-{}", uuid::Uuid::new_v4().simple());
        let out = self.sqs_client().create_queue().queue_name(&name).send().await?;
        out.queue_url.context("CreateQueue answered without a queue URL")
    }
}
