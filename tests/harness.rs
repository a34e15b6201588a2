//! The harness itself: moto answers the real AWS SDK as the tests need it to.

mod common;

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
