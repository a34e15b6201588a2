//! Compiles `proto/` without a system `protoc`: protox parses the files into a
//! descriptor set in pure Rust and tonic's generator turns it into code.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/google/rpc/status.proto",
    "proto/google/cloud/bigquery/storage/v1/annotations.proto",
    "proto/google/cloud/bigquery/storage/v1/arrow.proto",
    "proto/google/cloud/bigquery/storage/v1/protobuf.proto",
    "proto/google/cloud/bigquery/storage/v1/stream.proto",
    "proto/google/cloud/bigquery/storage/v1/table.proto",
    "proto/google/cloud/bigquery/storage/v1/storage.proto",
    "proto/kpl/aggregated.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    // Kept for run-time reflection (prost-reflect) over our own messages.
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptors.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Rows are shared, not copied, between the encoder's output, the
        // requests kept for resending, and the emulator's decoder.
        .bytes(".google.cloud.bigquery.storage.v1.ProtoRows.serialized_rows")
        .compile_fds(fds)?;
    Ok(())
}
