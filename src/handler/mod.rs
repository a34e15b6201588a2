//! One invocation, start to partial batch response: Kinesis event → source
//! records → per shard [`delivery`](crate::delivery) → the response that
//! tells Kinesis only what landed (DESIGN.md invariant 5).
//!
//! [`Deps`] is built once per container (its BigQuery side lazily, see
//! [`LazyWriter`]); [`handle`] runs per invocation.

mod deadline;
mod deps;
mod error;
mod invoke;
mod lazy_writer;
mod response;
mod shards;

pub use deadline::working_deadline;
pub use deps::{Deps, DepsError, Sinks, WriterSide, batch_limits};
pub use error::HandlerError;
pub use invoke::{handle, local_event};
pub use lazy_writer::{CONNECT_BUDGET_CAP, LazyWriter, connect_budget};
pub use response::{UnnamedRecord, partial_batch_response};
pub use shards::{ShardGroup, group_by_shard};
