//! The `kinesis-bigquery` command: wiring only; every subcommand's work lives in the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kinesis_bigquery::check;
use kinesis_bigquery::config::{self, Config};
use kinesis_bigquery::handler::{self, Deps};
use kinesis_bigquery::metrics::{LogOutput, Redactor, init_logging};
use kinesis_bigquery::source;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "kinesis-bigquery",
    version,
    about = "Kinesis Data Streams to BigQuery, exactly once"
)]
struct Cli {
    /// Without a command: `lambda` when AWS_LAMBDA_RUNTIME_API is set.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve invocations through the Lambda Runtime API (the `bootstrap` mode).
    Lambda,
    /// Run one invocation of the same handler on a Lambda event JSON file and
    /// print the partial batch response.
    Invoke {
        /// A Kinesis event as Lambda delivers it (`{"Records":[...]}`).
        #[arg(long)]
        event: PathBuf,
        /// The invocation's time limit, as a Lambda function timeout.
        #[arg(long, default_value_t = 900)]
        timeout_secs: u64,
    },
    /// Validate the configuration and reach the table, bucket(s) and queue.
    Check,
    /// Run the local BigQuery emulator (Storage Write gRPC + REST subset) until SIGINT/SIGTERM.
    #[cfg(feature = "local")]
    Emulator(kinesis_bigquery::emulator::cli::EmulatorArgs),
    /// Replay spillover objects into BigQuery, exactly once.
    Backfill(kinesis_bigquery::backfill::BackfillArgs),
    /// Bring dead letters back once the table fits them, exactly once.
    Redrive(kinesis_bigquery::redrive::RedriveArgs),
    /// Run the whole pipeline locally with injected faults and check exactly-once.
    #[cfg(feature = "local")]
    Demo(kinesis_bigquery::demo::DemoArgs),
}

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        None if config::in_lambda_runtime() => Command::Lambda,
        None => {
            eprintln!("no command given (and AWS_LAMBDA_RUNTIME_API is not set); see --help");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Lambda => lambda(started).await,
            Command::Invoke { event, timeout_secs } => {
                invoke(&event, Duration::from_secs(timeout_secs), started).await
            }
            Command::Check => check_command().await,
            #[cfg(feature = "local")]
            Command::Emulator(args) => {
                kinesis_bigquery::emulator::cli::serve(args).await?;
                Ok(ExitCode::SUCCESS)
            }
            Command::Backfill(args) => backfill_command(args).await,
            Command::Redrive(args) => redrive_command(args).await,
            #[cfg(feature = "local")]
            Command::Demo(args) => {
                let report = kinesis_bigquery::demo::run(&args).await?;
                print!("{report}");
                Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Masks the values of credential variables in every log line.
fn redactor() -> Redactor {
    Redactor::new(config::credential_values())
}

async fn lambda(started: Instant) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    init_logging(&config.log_filter, LogOutput::Stdout, redactor());
    let deps = Deps::build(&config, LogOutput::Stdout).await?;
    tracing::info!(startup_ms = started.elapsed().as_millis() as u64, "ready");
    let deps = &deps;
    // Read as `source::Event`, not `aws_lambda_events::KinesisEvent`, whose
    // reader gets arrival-time fractions wrong (see source/lambda_event.rs).
    let service =
        lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<source::Event>| {
            handler::handle(event, deps)
        });
    lambda_runtime::run(service)
        .await
        .map_err(|e| anyhow::anyhow!("Lambda runtime stopped: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

async fn invoke(path: &PathBuf, timeout: Duration, started: Instant) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    init_logging(&config.log_filter, LogOutput::Stderr, redactor());
    // Parsed straight from the file: holding the whole JSON text next to the
    // parsed event would put both in the peak memory (issue 5: ≤ 3× the event).
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let event: source::Event =
        serde_json::from_reader(std::io::BufReader::with_capacity(1 << 16, file))
            .with_context(|| format!("{} is not a Kinesis event", path.display()))?;
    let deps = Deps::build(&config, LogOutput::Stderr).await?;
    tracing::info!(startup_ms = started.elapsed().as_millis() as u64, "ready");
    let response = handler::handle(handler::local_event(event, timeout), &deps)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string(&response)?);
    Ok(ExitCode::SUCCESS)
}

async fn check_command() -> anyhow::Result<ExitCode> {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL configuration");
            for p in &e.problems {
                println!("     {p}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    init_logging(&config.log_filter, LogOutput::Stderr, redactor());
    let report = check::run(&config).await;
    print!("{report}");
    Ok(if report.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn backfill_command(
    args: kinesis_bigquery::backfill::BackfillArgs,
) -> anyhow::Result<ExitCode> {
    use kinesis_bigquery::backfill::{Progress, run};
    init_logging(&config::LogFilter::default(), LogOutput::Stderr, redactor());
    let deps = args.deps().await?;
    let summary = run(&deps, &args.options(), &Progress::auto()).await?;
    // Non-zero when any object was left behind: a rerun retries it.
    Ok(if summary.left_behind() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn redrive_command(args: kinesis_bigquery::redrive::RedriveArgs) -> anyhow::Result<ExitCode> {
    use kinesis_bigquery::backfill::Progress;
    init_logging(&config::LogFilter::default(), LogOutput::Stderr, redactor());
    let deps = args.deps().await?;
    let summary = kinesis_bigquery::redrive::run(&deps, &args.options(), &Progress::auto()).await?;
    println!("{summary}");
    Ok(if summary.left_behind > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
