//! Why a spillover object was left behind, or a run could not start.

use super::marker::MarkerError;
use super::options::CrashPoint;
use super::resolve::Unresolved;
use crate::bigquery::{AppendError, RpcError};
use crate::delivery::state::StateError;
use crate::delivery::store::StoreError;
use crate::dlq::DlqError;
use crate::pb::storage::StorageError;
use crate::rows::{EncodeError, SchemaError};
use crate::spill::SpillError;

/// One object's replay failed; the object stays where it is and a rerun
/// retries it. Nothing a variant describes can have made rows visible
/// twice: rows only become visible through the commit of a stream recorded
/// in the object's marker.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("spillover store")]
    Spill(#[from] SpillError),
    #[error("BigQuery call failed")]
    Rpc(#[from] RpcError),
    #[error("append to the PENDING stream failed")]
    Append(#[source] AppendError),
    #[error("append to the PENDING stream was not answered")]
    AppendInDoubt(#[source] AppendError),
    #[error("append to the PENDING stream was not sent")]
    AppendNotSent,
    #[error("BigQuery rejected rows again after {0} attempts")]
    RowErrorsPersist(u32),
    #[error("finalized stream {stream} holds {row_count} rows, {sent} were appended")]
    RowCountMismatch { stream: String, row_count: i64, sent: usize },
    #[error("commit of {stream} refused: {errors:?}")]
    CommitRefused { stream: String, errors: Vec<StorageError> },
    #[error("in-doubt records cannot be resolved")]
    Unresolved(#[from] Unresolved),
    #[error("in-doubt records carry offsets but the object names no write stream")]
    MissingWriteStream,
    #[error("reading the table schema")]
    Schema(#[from] SchemaError),
    #[error("building an AppendRows request")]
    Encode(#[from] EncodeError),
    #[error("{0} records cannot become rows and no dead-letter queue was given (--dlq)")]
    NoDeadLetterQueue(usize),
    #[error("dead-letter queue")]
    Dlq(#[from] DlqError),
    #[error("backfill marker")]
    Marker(#[from] MarkerError),
    #[error("shard state")]
    State(#[from] StoreError),
    #[error("shard state")]
    StateFormat(#[from] StateError),
    #[error("shard state's spill manifests")]
    SpillManifest(#[from] crate::delivery::spill_manifest::ManifestError),
    #[error("the shard state kept changing; gave up unlisting after {0} attempts")]
    StateContended(u32),
    #[error(
        "the Lambda has not committed this spillover object yet (or died before it did); rerun later"
    )]
    NotYetCommitted,
    /// `awaiting_columns` object (`UNKNOWN_FIELDS=add`): records still need
    /// columns the writers do not see; a later run writes them.
    #[error(
        "{records} records still need columns the table's writers do not see yet ({first}); rerun once they are visible"
    )]
    ColumnsNotVisible { records: usize, first: String },
    /// Another run holds the backfill lease on this spillover root.
    #[error(
        "another backfill holds the lease on this spillover ({location}): {holder}, until {expires_at}; wait for it, or for the lease to expire"
    )]
    Leased { location: String, holder: String, expires_at: chrono::DateTime<chrono::Utc> },
    /// This run's lease was taken over (the run stalled past its expiry).
    #[error("the backfill lease {location} was taken over by another run; stopped")]
    LeaseLost { location: String },
    #[error("the backfill lease kept changing; gave up after {0} attempts")]
    LeaseContended(u32),
    #[error("the backfill lease object is not valid JSON")]
    LeaseFormat(#[source] serde_json::Error),
    /// Tests only: the crash hook fired.
    #[error("crash injected at {0:?}")]
    Crash(CrashPoint),
}
