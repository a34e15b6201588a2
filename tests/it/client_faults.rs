//! The pipeline under injected faults: every retryable code, connection drops
//! mid-stream, lost responses, idle close, throttling storms, outages. With
//! offsets on a COMMITTED stream, each must end with every row exactly once.

use crate::{client_support, common};

use std::time::Duration;

use client_support::*;
use kinesis_bigquery::bigquery::{AppendError, AppendOutcome, RetryPolicy};
use kinesis_bigquery::emulator::EmulatorConfig;
use test_case::test_case;
use tonic::Code;

#[test_case(Code::Aborted)]
#[test_case(Code::Unavailable)]
#[test_case(Code::Internal)]
#[test_case(Code::Cancelled)]
#[test_case(Code::DeadlineExceeded)]
#[test_case(Code::ResourceExhausted)]
#[tokio::test]
async fn connection_level_retryable_codes_are_retried(code: Code) -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(8, fast_retry(5)));
    appender.append_all(requests(0, 3, 2, true), in_secs(10)).await;
    w.emulator.faults().fail_next("AppendRows", 2, code, "injected");
    let outcomes = appender.append_all(requests(6, 10, 2, true), in_secs(10)).await;
    assert!(outcomes.iter().all(AppendOutcome::is_success), "{outcomes:?}");
    assert_eq!(w.ids(), (0..26).collect::<Vec<_>>());
    Ok(())
}

#[test_case(Code::Aborted)]
#[test_case(Code::Unavailable)]
#[test_case(Code::Internal)]
#[test_case(Code::Cancelled)]
#[test_case(Code::DeadlineExceeded)]
#[test_case(Code::ResourceExhausted)]
#[tokio::test]
async fn in_stream_retryable_codes_resend_from_the_failed_request(
    code: Code,
) -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(8, fast_retry(5)));
    w.emulator.faults().fail_next_in_band(2, code, "injected in-stream");
    let outcomes = appender.append_all(requests(0, 12, 3, true), in_secs(10)).await;
    assert!(outcomes.iter().all(AppendOutcome::is_success), "{outcomes:?}");
    assert_eq!(w.ids(), (0..36).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_permanent_code_is_not_retried() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(4, fast_retry(5)));
    w.emulator.faults().fail_next_in_band(1, Code::InvalidArgument, "bad request");
    let outcomes = appender.append_all(requests(0, 3, 1, true), in_secs(10)).await;
    let AppendOutcome::Failed(AppendError::Rejected(s)) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(s.code, Code::InvalidArgument);
    // Sent behind it: ABORTED by the service (not written) or never sent.
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| matches!(o, AppendOutcome::Failed(_) | AppendOutcome::NotSent))
    );
    assert!(w.ids().is_empty());

    // Refused at the connection level: the oldest request has its answer.
    w.emulator.faults().fail_next("AppendRows", 1, Code::PermissionDenied, "no");
    let outcomes = appender.append_all(requests(0, 1, 1, true), in_secs(10)).await;
    let AppendOutcome::Failed(AppendError::Connection(s)) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(s.code, Code::PermissionDenied);
    Ok(())
}

#[tokio::test]
async fn connections_dropped_mid_stream_lose_and_duplicate_nothing() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(16, fast_retry(6)));
    for k in [1, 3, 7] {
        w.emulator.faults().drop_after(k);
    }
    let outcomes = appender.append_all(requests(0, 40, 5, true), in_secs(20)).await;
    assert!(outcomes.iter().all(AppendOutcome::is_success), "{outcomes:?}");
    assert_eq!(w.ids(), (0..200).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_response_lost_after_the_write_resolves_as_already_exists() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(1, fast_retry(4)));
    w.emulator.faults().write_then_drop(1);
    let outcomes = appender.append_all(requests(0, 3, 2, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["exists", "ok", "ok"]);
    assert_eq!(w.ids(), (0..6).collect::<Vec<_>>());
    Ok(())
}

/// A refusal answers only the send it came on: when an earlier send of the
/// same request went unanswered, the rows may be in the stream (here the
/// stream then vanished, so the resend cannot see them as ALREADY_EXISTS).
#[test_case(Code::NotFound ; "stream gone")]
#[test_case(Code::PermissionDenied ; "access revoked")]
#[tokio::test]
async fn a_refusal_after_an_unanswered_send_leaves_the_request_in_doubt(
    code: Code,
) -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(2, fast_retry(4)));
    w.emulator.faults().write_then_drop(1);
    w.emulator.faults().fail_next_in_band(1, code, "refused on the resend");
    let outcomes = appender.append_all(requests(0, 2, 2, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes)[0], "doubt", "{outcomes:?}");
    assert_eq!(w.ids(), [0, 1], "the first send was written");
    Ok(())
}

#[tokio::test]
async fn idle_close_reconnects_without_spending_the_retry_budget() -> anyhow::Result<()> {
    let config = EmulatorConfig { idle_timeout: Duration::from_millis(300), ..Default::default() };
    let w = world_with(config).await;
    let stream = w.committed_stream().await;
    // No retries at all: only the free reconnect can make the second call work.
    let mut appender = w.appender(&stream, options(4, RetryPolicy::none()));
    assert_eq!(
        kinds(&appender.append_all(requests(0, 2, 1, true), in_secs(10)).await),
        ["ok", "ok"]
    );
    // The idle timeout runs on the emulator's own (real) clock; wait for the close itself.
    common::until_activity(&w.emulator, |a| a.connections_closed >= 1).await?;
    let outcomes = appender.append_all(requests(2, 2, 1, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok", "ok"], "{outcomes:?}");
    assert_eq!(w.ids(), [0, 1, 2, 3]);
    Ok(())
}

#[tokio::test]
async fn a_resource_exhausted_storm_ends_with_every_row_once() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(8, fast_retry(30)));
    w.emulator.faults().fail_randomly("AppendRows", 0.3, 42, Code::ResourceExhausted);
    let outcomes = appender.append_all(requests(0, 60, 2, true), in_secs(60)).await;
    assert!(outcomes.iter().all(AppendOutcome::is_success), "{:?}", kinds(&outcomes));
    assert_eq!(w.ids(), (0..120).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn an_outage_is_ridden_out_within_the_budget() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(8, fast_retry(12)));
    w.emulator.faults().set_down(true);
    let emulator = w.emulator.clone();
    // Back up once the client has been refused three times: an outage it had to retry through.
    let up = tokio::spawn(async move {
        let seen = common::until_activity(&emulator, |a| a.refused >= 3).await;
        emulator.faults().set_down(false);
        seen
    });
    let outcomes = appender.append_all(requests(0, 5, 2, true), in_secs(20)).await;
    up.await??;
    assert!(outcomes.iter().all(AppendOutcome::is_success), "{outcomes:?}");
    assert_eq!(w.ids(), (0..10).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn retries_exhausted_leave_the_sent_requests_in_doubt() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(2, fast_retry(3)));
    w.emulator.faults().set_down(true);
    let outcomes = appender.append_all(requests(0, 4, 1, true), in_secs(10)).await;
    let AppendOutcome::InDoubt(AppendError::Connection(s)) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(s.code, Code::Unavailable);
    assert_eq!(kinds(&outcomes)[2..], ["notsent", "notsent"]);
    w.emulator.faults().set_down(false);
    assert!(w.ids().is_empty());
    // Back up: the same requests, same offsets, land once.
    let outcomes = appender.append_all(requests(0, 4, 1, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok"; 4]);
    assert_eq!(w.ids(), [0, 1, 2, 3]);
    Ok(())
}
