//! The harness itself: moto answers the real AWS SDK as the tests need it to.

use crate::common;

use aws_sdk_s3::primitives::ByteStream;

#[tokio::test]
async fn buckets_are_fresh_and_conditional_writes_are_enforced() -> anyhow::Result<()> {
    let s3 = common::s3_client()?;
    let bucket = common::new_bucket().await?;
    let listed = s3.list_objects_v2().bucket(&bucket).send().await?;
    assert_eq!(listed.key_count(), Some(0));

    let put = |body: &'static [u8]| {
        s3.put_object()
            .bucket(&bucket)
            .key("k")
            .if_none_match("*")
            .body(ByteStream::from_static(body))
            .send()
    };
    put(b"first").await?;
    let second = put(b"second").await.expect_err("second create must lose");
    assert_eq!(second.as_service_error().and_then(|e| e.meta().code()), Some("PreconditionFailed"));

    let got = s3.get_object().bucket(&bucket).key("k").send().await?;
    assert_eq!(got.body.collect().await?.into_bytes().as_ref(), b"first");
    Ok(())
}

#[tokio::test]
async fn queues_are_fresh_and_deliver() -> anyhow::Result<()> {
    let sqs = common::sqs_client()?;
    let url = common::new_queue().await?;
    let other = common::new_queue().await?;
    assert_ne!(url, other);

    sqs.send_message().queue_url(&url).message_body("hello").send().await?;
    let got = sqs.receive_message().queue_url(&url).max_number_of_messages(10).send().await?;
    let bodies: Vec<_> = got.messages().iter().filter_map(|m| m.body()).collect();
    assert_eq!(bodies, ["hello"]);
    let empty = sqs.receive_message().queue_url(&other).send().await?;
    assert!(empty.messages().is_empty());
    Ok(())
}

#[tokio::test]
async fn harness_serves_an_emulator_with_fresh_tables() -> anyhow::Result<()> {
    let h = common::Harness::start().await?;
    let a = h.new_events_table()?;
    let b = h.new_events_table()?;
    assert_ne!(a, b);
    assert!(h.emulator.read_rows(&a)?.is_empty());
    let names: Vec<_> = h.emulator.table_schema(&a)?.fields.into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["event_id", "type", "user_id", "ts", "tags", "lat", "lng"]);

    // A real tonic client reaches it over TCP.
    let mut client = h.write_client().await?;
    let stream = client
        .get_write_stream(kinesis_bigquery::pb::storage::GetWriteStreamRequest {
            name: format!("{}/streams/_default", a.path()),
            view: kinesis_bigquery::pb::storage::WriteStreamView::Full as i32,
        })
        .await?
        .into_inner();
    let schema = stream.table_schema.expect("FULL view carries the table schema");
    assert_eq!(schema.fields.len(), 7);
    h.shutdown().await;
    Ok(())
}

#[test]
fn sample_event_has_the_documented_records() -> anyhow::Result<()> {
    let event = common::sample_event()?;
    assert_eq!(event.records.len(), 5);
    Ok(())
}
