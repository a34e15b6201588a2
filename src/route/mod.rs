//! Routing by record (`BIGQUERY_TABLE=project.dataset.events_{event_type}`):
//! each record goes to the table one of its top-level fields names.
//!
//! - [`template`]: the templated table name, checked at cold start;
//! - [`extract`]: a record's table from its bytes (or why it has none),
//!   read up to the route field only ([`field`]);
//! - [`plan`]: a shard batch split by table, bounded by `MAX_TABLES`, and
//!   the outcomes merged back (pure);
//! - [`writers`]: one writer side per table (schema, encoder, connections,
//!   its own write stream and exactly-once state), opened on first use;
//! - [`create`]: `CREATE_TABLES=true`, tables created from `TABLE_SCHEMA_URL`;
//! - [`deliver`]: the routed delivery of one shard batch.

pub mod create;
pub mod deliver;
pub mod extract;
pub mod field;
pub mod plan;
pub mod template;
pub mod writers;

pub use create::{CreateError, SchemaUrl, TableCreator};
pub use deliver::{RoutedOutcome, deliver_routed};
pub use extract::{Router, Unroutable};
pub use template::{TableTarget, TableTemplate};
pub use writers::{OpenError, RoutedTables, SharedParts};
