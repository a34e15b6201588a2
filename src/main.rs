//! The `kinesis-bigquery` command: wiring only; every subcommand's work lives in the library.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "kinesis-bigquery",
    version,
    about = "Kinesis Data Streams to BigQuery, exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the local BigQuery emulator (Storage Write gRPC + REST subset) until SIGINT/SIGTERM.
    Emulator(kinesis_bigquery::emulator::cli::EmulatorArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Emulator(args) => kinesis_bigquery::emulator::cli::serve(args).await?,
    }
    Ok(())
}
