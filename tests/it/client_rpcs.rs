//! The unary write-stream RPCs against the emulator: each call's result, the
//! retry of UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED, and errors
//! that are final on the first answer.

use crate::client_support;

use client_support::*;
use kinesis_bigquery::bigquery::{CommitOutcome, RpcError, WriteStreamView, write_stream};
use kinesis_bigquery::pb::storage::storage_error::StorageErrorCode;
use test_case::test_case;
use tonic::Code;

#[tokio::test]
async fn streams_are_created_read_and_finalized() -> anyhow::Result<()> {
    let w = world().await;
    let created = w.client.create_write_stream(&w.table, write_stream::Type::Committed).await?;
    assert!(created.name.starts_with(&format!("{}/streams/", w.table.path())));
    assert_eq!(created.r#type, write_stream::Type::Committed as i32);
    let got = w.client.get_write_stream(&created.name, WriteStreamView::Basic).await?;
    assert_eq!(got.name, created.name);

    let mut appender = w.appender(&created.name, options(4, fast_retry(3)));
    appender.append_all(requests(0, 3, 4, true), in_secs(10)).await;
    assert_eq!(w.client.finalize_write_stream(&created.name).await?, 12);
    // Finalized: later appends are refused.
    let outcomes = appender.append_all(requests(12, 1, 1, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["failed"], "{outcomes:?}");
    Ok(())
}

#[tokio::test]
async fn table_schema_comes_from_the_default_stream() -> anyhow::Result<()> {
    let w = world().await;
    assert_eq!(w.client.table_schema(&w.table).await?, schema());
    Ok(())
}

#[tokio::test]
async fn pending_streams_commit_atomically() -> anyhow::Result<()> {
    let w = world().await;
    let pending = w.client.create_write_stream(&w.table, write_stream::Type::Pending).await?;
    let mut appender = w.appender(&pending.name, options(4, fast_retry(3)));
    let outcomes = appender.append_all(requests(0, 2, 5, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok", "ok"]);
    assert!(w.ids().is_empty(), "pending rows are invisible");

    // Not finalized yet: nothing is committed, with a reason per stream.
    let CommitOutcome::NotCommitted(errors) =
        w.client.batch_commit(&w.table, std::slice::from_ref(&pending.name)).await?
    else {
        panic!("committed an unfinalized stream");
    };
    assert_eq!(errors.len(), 1);
    assert!(w.ids().is_empty());

    assert_eq!(w.client.finalize_write_stream(&pending.name).await?, 10);
    let outcome = w.client.batch_commit(&w.table, std::slice::from_ref(&pending.name)).await?;
    assert!(matches!(outcome, CommitOutcome::Committed { .. }), "{outcome:?}");
    assert_eq!(w.ids(), (0..10).collect::<Vec<_>>());
    // A second commit of the same stream changes nothing.
    let again = w.client.batch_commit(&w.table, std::slice::from_ref(&pending.name)).await?;
    let CommitOutcome::NotCommitted(errors) = again else { panic!("committed twice") };
    assert_eq!(errors[0].code, StorageErrorCode::StreamAlreadyCommitted as i32);
    assert_eq!(w.ids().len(), 10);
    Ok(())
}

#[tokio::test]
async fn buffered_rows_appear_when_flushed() -> anyhow::Result<()> {
    let w = world().await;
    let buffered = w.client.create_write_stream(&w.table, write_stream::Type::Buffered).await?;
    let mut appender = w.appender(&buffered.name, options(4, fast_retry(3)));
    appender.append_all(requests(0, 2, 3, true), in_secs(10)).await;
    assert!(w.ids().is_empty());
    assert_eq!(w.client.flush_rows(&buffered.name, 3).await?, 3);
    assert_eq!(w.ids(), [0, 1, 2, 3]);
    Ok(())
}

#[test_case(Code::Unavailable)]
#[test_case(Code::DeadlineExceeded)]
#[test_case(Code::ResourceExhausted)]
#[tokio::test]
async fn unary_transient_codes_are_retried(code: Code) -> anyhow::Result<()> {
    let w = world().await;
    w.emulator.faults().fail_next("CreateWriteStream", 2, code, "injected");
    let created = w.client.create_write_stream(&w.table, write_stream::Type::Committed).await?;
    assert!(!created.name.is_empty());
    Ok(())
}

#[test_case(Code::Internal)]
#[test_case(Code::Aborted)]
#[test_case(Code::PermissionDenied)]
#[tokio::test]
async fn other_unary_codes_fail_at_once(code: Code) -> anyhow::Result<()> {
    let w = world().await;
    w.emulator.faults().fail_next("GetWriteStream", 1, code, "injected");
    let err = w.client.get_write_stream(&w.table.default_stream(), WriteStreamView::Basic).await;
    assert_eq!(err.as_ref().err().and_then(RpcError::code), Some(code), "{err:?}");
    // Exactly one call was made: the next one succeeds.
    w.client.get_write_stream(&w.table.default_stream(), WriteStreamView::Basic).await?;
    Ok(())
}

#[tokio::test]
async fn unary_retries_end_with_the_last_status() -> anyhow::Result<()> {
    let w = world().await;
    w.emulator.faults().set_down(true);
    let err = w.client.finalize_write_stream("projects/proj/datasets/ds/tables/x/streams/y").await;
    assert_eq!(err.err().and_then(|e| e.code()), Some(Code::Unavailable));
    w.emulator.faults().set_down(false);
    Ok(())
}

#[tokio::test]
async fn missing_streams_are_not_found_with_a_storage_error() -> anyhow::Result<()> {
    let w = world().await;
    let name = format!("{}/streams/nope", w.table.path());
    let err = w.client.get_write_stream(&name, WriteStreamView::Basic).await.unwrap_err();
    let status = err.status().expect("a status");
    assert_eq!(status.code, Code::NotFound);
    assert_eq!(status.storage_code(), Some(StorageErrorCode::StreamNotFound));
    Ok(())
}
