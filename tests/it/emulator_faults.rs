//! Fault injection seen from a real client: failed requests write nothing,
//! write-then-drop writes and loses the answer, drops after K responses,
//! delays (on a paused clock), seeded random failures and a service that is down.

use crate::{common, emulator_support};

use std::time::Duration;

use tokio::time::Instant;

use emulator_support::*;
use kinesis_bigquery::pb::storage::write_stream::Type as StreamType;
use tonic::Code;

#[tokio::test]
async fn failed_appends_write_nothing_and_write_then_drop_writes() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let s = create_stream(&mut c, &t, StreamType::Committed).await;

    emu.faults().fail_next("AppendRows", 1, Code::Unavailable, "backend went away");
    let mut conn = Conn::open(&mut c, &s).await?;
    let err = conn
        .append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(1, "a")]))
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unavailable, "backend went away"));
    assert!(emu.read_rows(&t)?.is_empty(), "a failed request writes nothing");

    emu.faults().fail_next_in_band(1, Code::Internal, "");
    let mut conn = Conn::open(&mut c, &s).await?;
    let r =
        conn.append(request(&s, Some(&simple_descriptor()), Some(0), vec![row(1, "a")])).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::Internal);
    assert!(emu.read_rows(&t)?.is_empty());
    // The connection stays open after an in-band failure.
    assert_eq!(
        outcome(
            &conn
                .append(request("", Some(&simple_descriptor()), Some(0), vec![row(1, "a")]))
                .await?
        ),
        Ok(Some(0))
    );
    // The stream takes one connection at a time: wait until this one has let it go
    // (the first, refused UNAVAILABLE, already has).
    drop(conn);
    common::until_activity(&emu, |a| a.connections_closed >= 2).await?;

    // Crash after the commit point: rows land, the answer is lost; a retry sees ALREADY_EXISTS.
    emu.faults().write_then_drop(1);
    let mut conn = Conn::open(&mut c, &s).await?;
    let err = conn
        .append(request(&s, Some(&simple_descriptor()), Some(1), vec![row(2, "b")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(ids(&emu.read_rows(&t)?), ["1", "2"]);
    common::until_activity(&emu, |a| a.connections_closed >= 3).await?;
    let mut conn = Conn::open(&mut c, &s).await?;
    let r =
        conn.append(request(&s, Some(&simple_descriptor()), Some(1), vec![row(2, "b")])).await?;
    assert_eq!(outcome(&r).unwrap_err().0, Code::AlreadyExists);
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn drop_after_k_responses_ends_the_connection_once() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    emu.faults().drop_after(2);
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    assert!(
        outcome(
            &conn
                .append(request(
                    &t.default_stream(),
                    Some(&simple_descriptor()),
                    None,
                    vec![row(1, "a")]
                ))
                .await?
        )
        .is_ok()
    );
    assert!(outcome(&conn.append(request("", None, None, vec![row(2, "b")])).await?).is_ok());
    let err = conn.next().await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    // One-shot: the next connection is not dropped.
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    for i in 0..3 {
        let schema = (i == 0).then(simple_descriptor);
        assert!(
            outcome(
                &conn
                    .append(request(
                        &t.default_stream(),
                        schema.as_ref(),
                        None,
                        vec![row(3 + i, "c")]
                    ))
                    .await?
            )
            .is_ok()
        );
    }
    emu.shutdown().await;
    Ok(())
}

/// Time is what is under test, so the clock is tokio's paused one: it moves only
/// when every task is waiting, straight to the next timer. Unary calls hold no
/// timer of their own on either side, so the only timers are the injected delays
/// and the elapsed time is theirs, however loaded the machine.
#[tokio::test(start_paused = true)]
async fn a_delay_holds_every_matching_answer() -> anyhow::Result<()> {
    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    let get = || kinesis_bigquery::pb::storage::GetWriteStreamRequest {
        name: t.default_stream(),
        view: 0,
    };
    emu.faults().delay("*", Duration::from_millis(200));
    let began = Instant::now();
    c.get_write_stream(get()).await?;
    create_stream(&mut c, &t, StreamType::Committed).await;
    assert!(began.elapsed() >= Duration::from_millis(400), "{:?}", began.elapsed());
    emu.faults().clear();
    emu.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn seeded_random_failures_repeat_and_down_means_unavailable() -> anyhow::Result<()> {
    async fn run(seed: u64) -> Vec<bool> {
        let emu = start().await;
        let t = table_name();
        emu.create_table(&t, simple_schema()).unwrap();
        let mut c = client(&emu).await;
        emu.faults().fail_randomly("GetWriteStream", 0.5, seed, Code::Unavailable);
        let mut out = Vec::new();
        for _ in 0..20 {
            let r = c
                .get_write_stream(kinesis_bigquery::pb::storage::GetWriteStreamRequest {
                    name: t.default_stream(),
                    view: 0,
                })
                .await;
            out.push(r.is_err());
        }
        emu.shutdown().await;
        out
    }
    let a = run(42).await;
    assert_eq!(a, run(42).await, "same seed, same failures");
    assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x), "{a:?}");

    let emu = start().await;
    let t = table_name();
    emu.create_table(&t, simple_schema())?;
    let mut c = client(&emu).await;
    emu.faults().set_down(true);
    let err = match Conn::open(&mut c, &t.default_stream()).await {
        Err(e) => e,
        Ok(mut conn) => conn
            .append(request(
                &t.default_stream(),
                Some(&simple_descriptor()),
                None,
                vec![row(1, "a")],
            ))
            .await
            .unwrap_err(),
    };
    assert_eq!(err.code(), Code::Unavailable);
    emu.faults().set_down(false);
    let mut conn = Conn::open(&mut c, &t.default_stream()).await?;
    assert!(
        outcome(
            &conn
                .append(request(
                    &t.default_stream(),
                    Some(&simple_descriptor()),
                    None,
                    vec![row(1, "a")]
                ))
                .await?
        )
        .is_ok()
    );
    assert_eq!(emu.read_rows(&t)?.len(), 1);
    emu.shutdown().await;
    Ok(())
}
