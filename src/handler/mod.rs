//! One invocation, start to partial batch response: Kinesis event → source
//! records → per shard [`delivery`](crate::delivery) → the response that
//! tells Kinesis only what landed (DESIGN.md invariant 5).

mod deadline;
mod response;

pub use deadline::working_deadline;
pub use response::{UnnamedRecord, partial_batch_response};
