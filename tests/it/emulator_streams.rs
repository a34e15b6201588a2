//! PENDING and BUFFERED streams, finalize, BatchCommitWriteStreams, FlushRows,
//! GetWriteStream and stream ownership, through a real tonic client over TCP.

use crate::{common, emulator_support};

use emulator_support::*;
use kinesis_bigquery::emulator::storage_error_of;
use kinesis_bigquery::pb::storage::storage_error::StorageErrorCode;
use kinesis_bigquery::pb::storage::write_stream::Type as StreamType;
use kinesis_bigquery::pb::storage::*;
use tonic::Code;

async fn commit(c: &mut Client, parent: &str, streams: &[&str]) -> BatchCommitWriteStreamsResponse {
    c.batch_commit_write_streams(BatchCommitWriteStreamsRequest {
        parent: parent.into(),
        write_streams: streams.iter().map(|s| s.to_string()).collect(),
    })
    .await
    .unwrap()
    .into_inner()
}

async fn finalize(c: &mut Client, name: &str) -> Result<i64, tonic::Status> {
    c.finalize_write_stream(FinalizeWriteStreamRequest { name: name.into() })
        .await
        .map(|r| r.into_inner().row_count)
}

#[tokio::test]
async fn pending_rows_appear_only_after_finalize_and_atomic_commit() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s1 = create_stream(&mut c, &t, StreamType::Pending).await;
    let s2 = create_stream(&mut c, &t, StreamType::Pending).await;
    for (s, base) in [(&s1, 0), (&s2, 10)] {
        let mut conn = Conn::open(&mut c, s).await?;
        let r = conn
            .append(request(
                s,
                Some(&simple_descriptor()),
                Some(0),
                vec![row(base + 1, "a"), row(base + 2, "b")],
            ))
            .await?;
        assert_eq!(outcome(&r), Ok(Some(0)));
    }
    assert!(emu.read_rows(&t)?.is_empty(), "PENDING rows stay invisible");

    // s2 not finalized: the whole commit fails, s1 is not committed either.
    assert_eq!(finalize(&mut c, &s1).await?, 2);
    let r = commit(&mut c, &t.path(), &[&s1, &s2]).await;
    assert!(r.commit_time.is_none());
    assert_eq!(r.stream_errors.len(), 1);
    assert_eq!(r.stream_errors[0].code, StorageErrorCode::InvalidStreamState as i32);
    assert_eq!(r.stream_errors[0].entity, s2);
    assert!(emu.read_rows(&t)?.is_empty(), "a failed commit commits nothing");

    // Appends after finalize fail STREAM_FINALIZED.
    let mut conn = Conn::open(&mut c, &s1).await?;
    let r =
        conn.append(request(&s1, Some(&simple_descriptor()), Some(2), vec![row(3, "c")])).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::InvalidArgument);
    assert_eq!(storage_code(&r), Some(StorageErrorCode::StreamFinalized));
    drop(conn);

    assert_eq!(finalize(&mut c, &s2).await?, 2);
    let r = commit(&mut c, &t.path(), &[&s1, &s2]).await;
    assert!(r.commit_time.is_some() && r.stream_errors.is_empty());
    assert_eq!(ids(&emu.read_rows(&t)?), ["1", "2", "11", "12"]);

    let r = commit(&mut c, &t.path(), &[&s1]).await;
    assert_eq!(r.stream_errors[0].code, StorageErrorCode::StreamAlreadyCommitted as i32);
    assert_eq!(emu.read_rows(&t)?.len(), 4, "committing twice writes nothing twice");

    // Only PENDING streams commit; unknown streams are reported.
    let committed = create_stream(&mut c, &t, StreamType::Committed).await;
    finalize(&mut c, &committed).await?;
    let r = commit(&mut c, &t.path(), &[&committed, &format!("{}/streams/nope", t.path())]).await;
    let codes: Vec<i32> = r.stream_errors.iter().map(|e| e.code).collect();
    assert_eq!(
        codes,
        [StorageErrorCode::InvalidStreamType as i32, StorageErrorCode::StreamNotFound as i32]
    );
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn buffered_rows_appear_when_flushed_inclusive() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s = create_stream(&mut c, &t, StreamType::Buffered).await;
    let mut conn = Conn::open(&mut c, &s).await?;
    let rows = (1..=4).map(|i| row(i, "x")).collect();
    assert_eq!(
        outcome(&conn.append(request(&s, Some(&simple_descriptor()), Some(0), rows)).await?),
        Ok(Some(0))
    );
    assert!(emu.read_rows(&t)?.is_empty());

    let flush = |offset| FlushRowsRequest { write_stream: s.clone(), offset: Some(offset) };
    assert_eq!(c.flush_rows(flush(1)).await?.into_inner().offset, 1);
    assert_eq!(ids(&emu.read_rows(&t)?), ["1", "2"], "flush is inclusive");
    c.flush_rows(flush(0)).await?;
    assert_eq!(emu.read_rows(&t)?.len(), 2, "an earlier flush offset changes nothing");
    let err = c.flush_rows(flush(4)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange);
    c.flush_rows(flush(3)).await?;
    assert_eq!(ids(&emu.read_rows(&t)?), ["1", "2", "3", "4"]);

    // FlushRows needs a BUFFERED stream.
    let err = c
        .flush_rows(FlushRowsRequest { write_stream: t.default_stream(), offset: Some(0) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        storage_error_of(&err).map(|e| e.code),
        Some(StorageErrorCode::InvalidStreamType as i32)
    );
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn get_write_stream_views_finalize_default_and_not_found() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s = create_stream(&mut c, &t, StreamType::Pending).await;
    let get = |name: &str, view: WriteStreamView| GetWriteStreamRequest {
        name: name.into(),
        view: view as i32,
    };

    let full = c.get_write_stream(get(&s, WriteStreamView::Full)).await?.into_inner();
    assert_eq!(full.table_schema, Some(simple_schema()));
    assert_eq!(full.r#type, StreamType::Pending as i32);
    assert!(full.create_time.is_some() && full.commit_time.is_none());
    let basic = c.get_write_stream(get(&s, WriteStreamView::Basic)).await?.into_inner();
    assert_eq!(basic.table_schema, None);
    let d = c.get_write_stream(get(&t.default_stream(), WriteStreamView::Full)).await?.into_inner();
    assert_eq!(d.name, t.default_stream());
    assert_eq!(d.table_schema, Some(simple_schema()));

    let err = finalize(&mut c, &t.default_stream()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let missing = format!("{}/streams/nope", t.path());
    let err = c.get_write_stream(get(&missing, WriteStreamView::Basic)).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let detail = storage_error_of(&err).expect("StorageError in grpc-status-details-bin");
    assert_eq!(detail.code, StorageErrorCode::StreamNotFound as i32);
    assert_eq!(detail.entity, missing);

    // AppendRows on an unknown stream ends the connection NOT_FOUND with the detail.
    let mut conn = Conn::open(&mut c, &missing).await?;
    let err = conn
        .append(request(&missing, Some(&simple_descriptor()), None, vec![row(1, "a")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        storage_error_of(&err).map(|e| e.code),
        Some(StorageErrorCode::StreamNotFound as i32)
    );

    // A table that does not exist.
    let other = table_name();
    let err = c
        .create_write_stream(CreateWriteStreamRequest {
            parent: other.path(),
            write_stream: Some(WriteStream {
                r#type: StreamType::Committed as i32,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        storage_error_of(&err).map(|e| e.code),
        Some(StorageErrorCode::TableNotFound as i32)
    );
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_explicit_stream_allows_one_connection_default_allows_many() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s = create_stream(&mut c, &t, StreamType::Committed).await;
    let mut first = Conn::open(&mut c, &s).await?;
    assert!(
        outcome(
            &first
                .append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(1, "a")]))
                .await?
        )
        .is_ok()
    );
    let mut second = Conn::open(&mut c, &s).await?;
    let err = second
        .append(request(&s, Some(&simple_descriptor()), Some(1), vec![row(2, "b")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Once the first connection ends, a new one may take the stream (the second,
    // refused, has already ended: it counts as the first close).
    drop(first);
    common::until_activity(&emu, |a| a.connections_closed >= 2).await?;
    let mut third = Conn::open(&mut c, &s).await?;
    assert_eq!(
        outcome(
            &third
                .append(request(&s, Some(&simple_descriptor()), Some(1), vec![row(2, "b")]))
                .await?
        ),
        Ok(Some(1))
    );

    let mut d1 = Conn::open(&mut c, &t.default_stream()).await?;
    let mut d2 = Conn::open(&mut c, &t.default_stream()).await?;
    assert!(
        outcome(
            &d1.append(request(
                &t.default_stream(),
                Some(&simple_descriptor()),
                None,
                vec![row(3, "c")]
            ))
            .await?
        )
        .is_ok()
    );
    assert!(
        outcome(
            &d2.append(request(
                &t.default_stream(),
                Some(&simple_descriptor()),
                None,
                vec![row(4, "d")]
            ))
            .await?
        )
        .is_ok()
    );
    assert_eq!(ids(&emu.read_rows(&t)?), ["1", "2", "3", "4"]);
    emu.shutdown().await;
    Ok(())
}
