//! The append pipeline against the in-process emulator over TCP: ordering,
//! offsets, outcomes, routing header, schema updates, deadlines.

use crate::{client_support, common};

use std::time::Duration;

use client_support::*;
use kinesis_bigquery::bigquery::{AppendError, AppendOutcome, RetryPolicy};
use kinesis_bigquery::pb::storage::TableFieldSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use tonic::Code;

#[tokio::test]
async fn pipelined_appends_land_in_order_with_their_offsets() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(16, fast_retry(3)));
    let outcomes = appender.append_all(requests(0, 50, 10, true), in_secs(30)).await;
    for (k, o) in outcomes.iter().enumerate() {
        assert!(
            matches!(o, AppendOutcome::Appended { offset: Some(off) } if *off == (k * 10) as i64),
            "{k}: {o:?}"
        );
    }
    assert_eq!(w.ids(), (0..500).collect::<Vec<_>>());
    // The same connection carries on in the next call.
    let outcomes = appender.append_all(requests(500, 3, 10, true), in_secs(30)).await;
    assert_eq!(kinds(&outcomes), ["ok"; 3]);
    assert_eq!(w.ids(), (0..530).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn every_connection_sends_the_routing_header() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(4, fast_retry(3)));
    appender.append_all(requests(0, 2, 1, true), in_secs(10)).await;
    appender.disconnect();
    let outcomes = appender.append_all(requests(2, 2, 1, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok", "ok"], "{outcomes:?}");
    let expected = format!("write_stream={stream}");
    let seen: Vec<String> =
        w.emulator.routing_headers().into_iter().filter(|h| h.contains("/streams/")).collect();
    assert_eq!(seen, vec![expected.clone(), expected], "one per connection");
    Ok(())
}

#[tokio::test]
async fn default_stream_appends_without_offsets() -> anyhow::Result<()> {
    let w = world().await;
    let mut appender = w.appender(&w.table.default_stream(), options(8, fast_retry(3)));
    let outcomes = appender.append_all(requests(0, 5, 4, false), in_secs(10)).await;
    assert!(
        outcomes.iter().all(|o| matches!(o, AppendOutcome::Appended { offset: None })),
        "{outcomes:?}"
    );
    assert_eq!(w.ids(), (0..20).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn resending_acknowledged_requests_is_already_exists_and_writes_nothing() -> anyhow::Result<()>
{
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(8, fast_retry(3)));
    assert_eq!(kinds(&appender.append_all(requests(0, 4, 5, true), in_secs(10)).await), ["ok"; 4]);
    let again = appender.append_all(requests(0, 4, 5, true), in_secs(10)).await;
    assert_eq!(kinds(&again), ["exists"; 4]);
    assert_eq!(w.ids(), (0..20).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn row_errors_stop_the_run_and_name_the_rows() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(8, fast_retry(3)));
    let mut reqs = requests(0, 4, 3, true);
    reqs[1] = request(Some(3), vec![row(3, "a"), bad_row(), row(5, "c")]);
    let outcomes = appender.append_all(reqs, in_secs(10)).await;
    assert!(matches!(outcomes[0], AppendOutcome::Appended { offset: Some(0) }));
    let AppendOutcome::RowErrors(errors) = &outcomes[1] else { panic!("{outcomes:?}") };
    assert_eq!(errors.iter().map(|e| e.index).collect::<Vec<_>>(), [1]);
    // Sent after the bad one: answered ABORTED (not written) or never sent.
    for o in &outcomes[2..] {
        assert!(matches!(o, AppendOutcome::NotSent | AppendOutcome::Failed(_)), "{o:?}");
    }
    assert_eq!(w.ids(), [0, 1, 2]);
    // The caller drops the bad row and carries on from offset 3.
    let fixed = vec![request(Some(3), vec![row(3, "a"), row(5, "c")])];
    assert_eq!(kinds(&appender.append_all(fixed, in_secs(10)).await), ["ok"]);
    assert_eq!(w.ids(), [0, 1, 2, 3, 5]);
    Ok(())
}

#[tokio::test]
async fn an_offset_beyond_the_end_fails_without_retrying() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(1, fast_retry(5)));
    let outcomes = appender.append_all(requests(7, 2, 1, true), in_secs(10)).await;
    let AppendOutcome::Failed(AppendError::Rejected(status)) = &outcomes[0] else {
        panic!("{outcomes:?}")
    };
    assert_eq!(status.code, Code::OutOfRange);
    assert!(matches!(outcomes[1], AppendOutcome::NotSent));
    assert!(w.ids().is_empty());
    Ok(())
}

#[tokio::test]
async fn in_flight_bounds_are_respected_one_at_a_time() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(1, RetryPolicy::none()));
    let outcomes = appender.append_all(requests(0, 20, 2, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok"; 20]);
    // Byte bound smaller than one request: each still goes, alone. (A second
    // stream: the first still has its connection, and a stream takes only one.)
    let mut opts = options(100, RetryPolicy::none());
    opts.max_inflight_bytes = 1;
    let mut appender = w.appender(&w.committed_stream().await, opts);
    let outcomes = appender.append_all(requests(40, 5, 2, false), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok"; 5]);
    assert_eq!(w.ids(), (0..50).collect::<Vec<_>>());
    Ok(())
}

#[tokio::test]
async fn a_new_column_comes_back_as_updated_schema() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(4, fast_retry(3)));
    appender.append_all(requests(0, 1, 1, true), in_secs(10)).await;
    assert!(appender.updated_schema().is_none());
    let extra = TableFieldSchema {
        name: "extra".into(),
        r#type: Type::String as i32,
        mode: Mode::Nullable as i32,
        ..Default::default()
    };
    w.emulator.add_columns(&w.table, vec![extra])?;
    let outcomes = appender.append_all(requests(1, 1, 1, true), in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok"]);
    let updated = appender.updated_schema().expect("updated_schema after ADD COLUMN");
    assert_eq!(updated.fields.len(), 3);
    assert!(appender.updated_schema().is_none(), "taken once");
    // Switching writer schema reconnects; the old one still fits the table.
    appender.set_writer_schema(writer_schema());
    assert_eq!(kinds(&appender.append_all(requests(2, 1, 1, true), in_secs(10)).await), ["ok"]);
    assert_eq!(w.ids(), [0, 1, 2]);
    Ok(())
}

/// Time is what is under test here, so the clock is tokio's paused one: it moves
/// only when every task is waiting, straight to the next timer. The emulator holds
/// each answer for 800 ms of that clock and the deadline is at 300 ms, so the
/// deadline fires first however slow the machine is.
#[tokio::test]
async fn the_deadline_bounds_the_wait_and_leaves_sent_requests_in_doubt() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(2, fast_retry(3)));
    // Open the connection first, on the real clock: while the paused clock runs, the
    // only wait on the network is then for answers the emulator is holding anyway.
    assert_eq!(kinds(&appender.append_all(requests(0, 1, 1, true), in_secs(10)).await), ["ok"]);
    let handled = w.emulator.activity().borrow().append_requests;
    w.emulator.faults().delay("AppendRows", Duration::from_millis(800));

    tokio::time::pause();
    let started = tokio::time::Instant::now();
    let deadline = started + Duration::from_millis(300);
    let outcomes = appender.append_all(requests(1, 4, 1, true), deadline).await;
    let waited = started.elapsed();
    tokio::time::resume();
    assert!(waited < Duration::from_millis(800), "waited {waited:?}, past the delayed answers");
    assert_eq!(w.emulator.activity().borrow().append_requests, handled, "nothing answered yet");
    assert_eq!(kinds(&outcomes), ["doubt", "doubt", "notsent", "notsent"]);
    assert!(matches!(&outcomes[0], AppendOutcome::InDoubt(AppendError::DeadlineExceeded)));

    // The truth arrives later: the service did write them.
    w.emulator.faults().clear();
    common::until_activity(&w.emulator, |a| a.append_requests >= handled + 2).await?;
    assert_eq!(w.ids(), [0, 1, 2]);
    // And a resend of the same offsets is recognized.
    let again = appender.append_all(requests(1, 4, 1, true), in_secs(10)).await;
    assert_eq!(kinds(&again), ["exists", "exists", "ok", "ok"]);
    assert_eq!(w.ids(), [0, 1, 2, 3, 4]);
    Ok(())
}

#[tokio::test]
async fn a_deadline_already_past_sends_nothing() -> anyhow::Result<()> {
    let w = world().await;
    let stream = w.committed_stream().await;
    let mut appender = w.appender(&stream, options(2, fast_retry(3)));
    let outcomes = appender.append_all(requests(0, 2, 1, true), tokio::time::Instant::now()).await;
    assert_eq!(kinds(&outcomes), ["notsent", "notsent"]);
    assert!(w.ids().is_empty());
    Ok(())
}

/// A column that is not a proto identifier travels through the `column_name` field
/// option, which only the serialized-descriptor form of the writer schema keeps.
#[tokio::test]
async fn descriptor_bytes_keep_the_column_name_option() -> anyhow::Result<()> {
    use kinesis_bigquery::bigquery::WriterSchema;
    let w = world().await;
    let table = table_name();
    let column = TableFieldSchema {
        name: "user-name".into(),
        r#type: Type::String as i32,
        mode: Mode::Nullable as i32,
        ..Default::default()
    };
    w.emulator.create_table(
        &table,
        kinesis_bigquery::pb::storage::TableSchema { fields: vec![column] },
    )?;
    let (mut options, mut field, mut descriptor) = (Vec::new(), Vec::new(), Vec::new());
    prost::encoding::string::encode(454_943_157, &"user-name".to_string(), &mut options);
    prost::encoding::string::encode(1, &"col_dXNlci1uYW1l".to_string(), &mut field);
    prost::encoding::int32::encode(3, &1, &mut field); // number
    prost::encoding::int32::encode(4, &1, &mut field); // LABEL_OPTIONAL
    prost::encoding::int32::encode(5, &9, &mut field); // TYPE_STRING
    prost::encoding::bytes::encode(8, &options, &mut field);
    prost::encoding::string::encode(1, &"Row".to_string(), &mut descriptor);
    prost::encoding::bytes::encode(2, &field, &mut descriptor);

    let mut appender = kinesis_bigquery::bigquery::Appender::new(
        w.client.clone(),
        table.default_stream(),
        WriterSchema::ProtoDescriptorBytes(descriptor),
        options_for_test(),
    );
    let mut row = Vec::new();
    prost::encoding::string::encode(1, &"ada".to_string(), &mut row);
    let outcomes = appender.append_all(vec![request(None, vec![row])], in_secs(10)).await;
    assert_eq!(kinds(&outcomes), ["ok"], "{outcomes:?}");
    let rows = w.emulator.read_rows(&table)?;
    assert_eq!(rows, vec![serde_json::json!({"user-name": "ada"})]);
    Ok(())
}

fn options_for_test() -> kinesis_bigquery::bigquery::AppenderOptions {
    options(4, fast_retry(3))
}
