//! Generated protobuf and gRPC code for `proto/`.
//!
//! The module tree mirrors the proto packages because prost's generated code
//! refers across packages by relative `super::` paths.

#![allow(clippy::all, missing_docs, rustdoc::all)]

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
    pub mod cloud {
        pub mod bigquery {
            pub mod storage {
                pub mod v1 {
                    tonic::include_proto!("google.cloud.bigquery.storage.v1");
                }
            }
        }
    }
}

pub mod kpl {
    tonic::include_proto!("kpl");
}

pub use google::cloud::bigquery::storage::v1 as storage;
pub use google::rpc;

/// Every message of `proto/`, serialized, for run-time reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
