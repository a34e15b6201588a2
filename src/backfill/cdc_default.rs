//! `WRITE_MODE=cdc` replay: BigQuery applies changes only from the
//! `_default` stream, so a CDC object skips the PENDING stream, the marker
//! and the commit of `replay.rs`. Exactly-once is not needed: each row
//! carries the sequence number the Lambda would have given it (a pure
//! function of the record), so a change written twice — by a rerun after a
//! crash, or a retry after rejected rows — leaves the table as it was.

use super::encode::Encoded;
use super::error::BackfillError;
use super::replay::{Written, writer_schema};
use super::run::Ctx;
use crate::bigquery::{AppendOutcome, Appender};
use crate::rows::Encoder;
use crate::table::TableName;

/// Appends `encoded.rows` to the table's `_default` stream.
///
/// `Written::Rejected` lists the rows BigQuery refused; the other requests
/// may have landed, and the caller's next attempt writes them again, which
/// changes nothing.
///
/// # Errors
/// A failed or unanswered append: the object stays for a rerun.
pub(super) async fn write(
    ctx: &Ctx<'_>,
    encoder: &Encoder,
    table: &TableName,
    encoded: &Encoded,
) -> Result<Written, BackfillError> {
    let (cuts, requests) =
        crate::delivery::send::cut_requests(&encoded.rows, None, encoder, &ctx.deps.limits, table)?;
    let mut appender = Appender::new(
        ctx.deps.client.clone(),
        table.default_stream(),
        writer_schema(encoder),
        ctx.deps.appender.clone(),
    );
    let deadline = tokio::time::Instant::now() + ctx.deps.append_timeout;
    let outcomes = appender.append_all(requests, deadline).await;
    let mut rejected = Vec::new();
    for (outcome, cut) in outcomes.into_iter().zip(&cuts) {
        match outcome {
            AppendOutcome::Appended { .. } | AppendOutcome::AlreadyExists => {}
            AppendOutcome::RowErrors(errors) => {
                rejected.extend(errors.into_iter().map(|e| (cut.rows.start + e.index, e.message)));
            }
            AppendOutcome::Failed(e) => return Err(BackfillError::Append(e)),
            AppendOutcome::InDoubt(e) => return Err(BackfillError::AppendInDoubt(e)),
            AppendOutcome::NotSent => return Err(BackfillError::AppendNotSent),
        }
    }
    if rejected.is_empty() { Ok(Written::Default) } else { Ok(Written::Rejected(rejected)) }
}
