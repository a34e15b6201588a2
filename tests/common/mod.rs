//! The shared integration harness (STYLE.md §6): the local world every
//! integration test runs against — a moto server (S3 + SQS) reached through
//! the real AWS SDK, and the BigQuery emulator over real gRPC.
//!
//! Each test makes its own uuid-named buckets, queues and tables, so tests in
//! one process share the servers and still run in parallel.
//!
//! Use from a test file with `mod common;`.

#![allow(dead_code, unused_imports)] // each test binary uses its own subset

pub mod moto;

pub use moto::{Moto, moto};

/// `../shared/data/<rel>` beside the checkout (CI lays `shared/` there too).
pub fn shared_data(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel)
}

/// Moto's S3 client (see [`Moto::s3_client`]).
pub fn s3_client() -> anyhow::Result<aws_sdk_s3::Client> {
    Ok(moto()?.s3_client())
}

/// Moto's SQS client.
pub fn sqs_client() -> anyhow::Result<aws_sdk_sqs::Client> {
    Ok(moto()?.sqs_client())
}

/// A new uuid-named bucket on moto.
pub async fn new_bucket() -> anyhow::Result<String> {
    moto()?.new_bucket().await
}

/// A new uuid-named queue on moto; returns its URL.
pub async fn new_queue() -> anyhow::Result<String> {
    moto()?.new_queue().await
}
