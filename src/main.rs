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
enum Command {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
