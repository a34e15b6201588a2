//! Dead-letter sinks against a real SQS/S3 protocol server (moto) through the
//! real AWS SDK, and the NDJSON file sink: what is sent is what a consumer
//! reads back, exactly; what is not accepted is named.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_sdk_sqs::types::QueueAttributeName;
use bytes::Bytes;
use kinesis_bigquery::dlq::{
    self, DeadLetter, DeadLetterSink, DlqError, FileDeadLetter, LetterError, Payload, PayloadStore,
    Reason, SqsDeadLetter,
};
use kinesis_bigquery::sink_url::SinkUrl;
use kinesis_bigquery::source::{Position, SequenceNumber, SourceRecord};
use kinesis_bigquery::table::TableName;

fn letter(seq: u64, data: Bytes) -> DeadLetter {
    let record = SourceRecord {
        shard_id: Arc::from("shardId-000000000002"),
        stream_arn: Arc::from("arn:aws:kinesis:us-east-1:123456789012:stream/clicks"),
        position: Position {
            sequence_number: SequenceNumber::new(&format!("4959{seq:010}")).unwrap(),
            sub_sequence_number: seq % 3,
        },
        event_index: seq as usize,
        partition_key: Arc::from(format!("user-{seq}").as_str()),
        explicit_hash_key: (seq % 2 == 1)
            .then(|| Arc::from("170141183460469231731687303715884105728")),
        arrival_micros: Some(1_764_000_000_000_000 + seq as i64),
        data,
    };
    let table: TableName = "kbq-test.events.clicks".parse().unwrap();
    DeadLetter::new(&record, &table, Reason::SchemaMismatch, format!("field ts: bad value {seq}"))
        .with_field_path("ts")
}

fn letters(n: u64) -> Vec<DeadLetter> {
    (0..n).map(|i| letter(i, Bytes::from(format!("{{\"ts\":\"nope-{i}\"}}")))).collect()
}

/// Every message on the queue, deleting as it reads, until `want` arrived
/// or 10 s passed.
async fn drain(sqs: &aws_sdk_sqs::Client, queue: &str, want: usize) -> anyhow::Result<Vec<String>> {
    drain_for(sqs, queue, want, Duration::from_secs(10)).await
}

async fn drain_for(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    want: usize,
    wait: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + wait;
    while bodies.len() < want && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await?;
        for m in out.messages() {
            bodies.push(m.body().context("message without body")?.to_string());
            if let Some(handle) = m.receipt_handle() {
                sqs.delete_message().queue_url(queue).receipt_handle(handle).send().await?;
            }
        }
    }
    Ok(bodies)
}

/// Parses bodies and keys them by sequence number.
fn by_sequence(bodies: &[String]) -> anyhow::Result<BTreeMap<String, DeadLetter>> {
    bodies
        .iter()
        .map(|b| {
            let l: DeadLetter = serde_json::from_str(b)?;
            Ok((l.sequence_number.to_string(), l))
        })
        .collect()
}

#[tokio::test]
async fn sqs_letters_read_back_with_the_exact_envelope() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let queue = moto.new_queue().await?;
    let url: SinkUrl = queue.parse()?;
    let sink = dlq::open(&url, None, &moto.sdk_config())?;
    let found = sink.check().await?;
    assert!(found.contains("MaximumMessageSize=1048576"), "{found}");
    let sent = letters(3);
    sink.send(&sent).await?;

    let bodies = drain(&moto.sqs_client(), &queue, 3).await?;
    assert_eq!(bodies.len(), 3, "{bodies:?}");
    let got = by_sequence(&bodies)?;
    for l in &sent {
        assert_eq!(got.get(l.sequence_number.as_str()), Some(l));
    }
    // The documented field names, as a consumer in another language sees them.
    let first = bodies
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .find(|v| v["sequence_number"] == "49590000000001")
        .context("letter 1 missing")?;
    assert_eq!(first["version"], 1);
    assert_eq!(first["reason"], "schema_mismatch");
    assert_eq!(first["error"], "field ts: bad value 1");
    assert_eq!(first["field_path"], "ts");
    assert_eq!(first["table"], "kbq-test.events.clicks");
    assert_eq!(first["stream_arn"], "arn:aws:kinesis:us-east-1:123456789012:stream/clicks");
    assert_eq!(first["shard_id"], "shardId-000000000002");
    assert_eq!(first["sub_sequence_number"], 1);
    assert_eq!(first["partition_key"], "user-1");
    assert_eq!(first["explicit_hash_key"], "170141183460469231731687303715884105728");
    assert_eq!(first["arrival_time"], "2025-11-24T16:00:00.000001Z");
    assert_eq!(first["data_size"], 15);
    assert_eq!(first["data_base64"], "eyJ0cyI6Im5vcGUtMSJ9");
    Ok(())
}

#[tokio::test]
async fn more_than_ten_letters_go_in_several_batches() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let queue = moto.new_queue().await?;
    let sink = SqsDeadLetter::new(moto.sqs_client(), queue.clone(), None);
    let sent = letters(27);
    sink.send(&sent).await?;
    let got = by_sequence(&drain(&moto.sqs_client(), &queue, 27).await?)?;
    assert_eq!(got.len(), 27);
    assert!(sent.iter().all(|l| got.get(l.sequence_number.as_str()) == Some(l)));
    Ok(())
}

#[tokio::test]
async fn an_oversized_letter_travels_as_an_s3_pointer() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let queue = moto.new_queue().await?;
    let bucket = moto.new_bucket().await?;
    let sink = dlq::open(
        &queue.parse()?,
        Some(&format!("s3://{bucket}/payloads/").parse()?),
        &moto.sdk_config(),
    )?;
    // 800 KiB of raw bytes is ~1.07 MB as base64: over SQS's 1 MiB.
    let big: Bytes = (0..800 * 1024).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let sent = vec![letter(1, Bytes::from_static(b"small")), letter(2, big.clone())];
    sink.send(&sent).await?;

    let got = by_sequence(&drain(&moto.sqs_client(), &queue, 2).await?)?;
    assert_eq!(got.get(sent[0].sequence_number.as_str()), Some(&sent[0]));
    let pointer = got.get(sent[1].sequence_number.as_str()).context("big letter missing")?;
    assert_eq!(pointer.data_size, big.len());
    let Payload::S3(location) = &pointer.data else { anyhow::bail!("inline: {pointer:?}") };
    assert_eq!(
        location,
        &format!(
            "s3://{bucket}/payloads/dead-letter-payloads/kbq-test.events.clicks/clicks/\
             shardId-000000000002/49590000000002.2.bin"
        )
    );
    let key = location.trim_start_matches(&format!("s3://{bucket}/"));
    let object = moto.s3_client().get_object().bucket(&bucket).key(key).send().await?;
    assert_eq!(object.body.collect().await?.into_bytes(), big);
    // Everything but the payload is the letter that was sent.
    assert_eq!(DeadLetter { data: sent[1].data.clone(), ..pointer.clone() }, sent[1]);
    Ok(())
}

#[tokio::test]
async fn the_queue_size_limit_is_read_from_the_queue() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let sqs = moto.sqs_client();
    let created = sqs
        .create_queue()
        .queue_name(format!("kbq-small-{}", uuid::Uuid::new_v4().simple()))
        .attributes(QueueAttributeName::MaximumMessageSize, "1024")
        .send()
        .await?;
    let queue = created.queue_url.context("no queue URL")?;
    let bucket = moto.new_bucket().await?;
    let store = PayloadStore::new(moto.s3_client(), bucket.clone(), String::new());
    let sink = SqsDeadLetter::new(sqs.clone(), queue.clone(), Some(store));
    // ~600 bytes of envelope plus 700 bytes of base64: over 1024.
    let sent = vec![letter(5, Bytes::from(vec![b'x'; 520]))];
    sink.send(&sent).await?;
    let got = by_sequence(&drain(&sqs, &queue, 1).await?)?;
    let l = got.get(sent[0].sequence_number.as_str()).context("letter missing")?;
    assert!(
        matches!(&l.data, Payload::S3(p) if p.starts_with(&format!("s3://{bucket}/dead-letter-payloads/")))
    );
    Ok(())
}

#[tokio::test]
async fn without_a_payload_store_only_the_oversized_letter_fails() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let queue = moto.new_queue().await?;
    let sink = SqsDeadLetter::new(moto.sqs_client(), queue.clone(), None);
    let big = Bytes::from(vec![b'y'; 900 * 1024]);
    let sent = vec![
        letter(1, Bytes::from_static(b"a")),
        letter(2, big),
        letter(3, Bytes::from_static(b"b")),
    ];
    let err = sink.send(&sent).await.expect_err("the big letter cannot land");
    let DlqError::Partial { failed, cause } = err else { anyhow::bail!("not partial: {err}") };
    assert_eq!(failed, [1]);
    assert!(matches!(cause, LetterError::NoPayloadStore { .. }), "{cause}");
    let got = by_sequence(&drain(&moto.sqs_client(), &queue, 2).await?)?;
    assert_eq!(got.len(), 2);
    assert!(got.contains_key(sent[0].sequence_number.as_str()));
    assert!(got.contains_key(sent[2].sequence_number.as_str()));
    Ok(())
}

#[tokio::test]
async fn a_missing_queue_names_every_letter() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let queue =
        format!("{}/123456789012/kbq-missing-{}", moto.endpoint, uuid::Uuid::new_v4().simple());
    let sink = SqsDeadLetter::new(moto.sqs_client(), queue, None).with_max_message_bytes(262_144);
    let err = sink.send(&letters(13)).await.expect_err("no queue");
    let DlqError::Partial { failed, cause } = err else { anyhow::bail!("not partial: {err}") };
    assert_eq!(failed, (0..13).collect::<Vec<_>>());
    let LetterError::Sqs(e) = cause else { anyhow::bail!("unexpected cause {cause}") };
    let code = aws_sdk_sqs::error::ProvideErrorMetadata::code(e.as_ref());
    assert!(
        code.is_some_and(|c| c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")),
        "{code:?}"
    );
    assert!(sink.check().await.is_err());
    Ok(())
}

#[tokio::test]
async fn a_fifo_queue_keeps_one_copy_of_a_retried_letter() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let sqs = moto.sqs_client();
    let created = sqs
        .create_queue()
        .queue_name(format!("kbq-{}.fifo", uuid::Uuid::new_v4().simple()))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await?;
    let queue = created.queue_url.context("no queue URL")?;
    let sink = SqsDeadLetter::new(sqs.clone(), queue.clone(), None);
    let sent = letters(4);
    sink.send(&sent).await?;
    sink.send(&sent[1..3]).await?; // a retry of the same records
    let bodies = drain(&sqs, &queue, 4).await?;
    let extra = drain_for(&sqs, &queue, 1, Duration::from_secs(2)).await?;
    assert!(extra.is_empty(), "deduplicated by position: {extra:?}");
    let got: Vec<DeadLetter> =
        bodies.iter().map(|b| serde_json::from_str(b)).collect::<Result<_, _>>()?;
    assert_eq!(got, sent, "one group per shard keeps the order");
    Ok(())
}

#[tokio::test]
async fn the_file_sink_appends_ndjson() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url: SinkUrl = format!("file://{}/dlq/letters.ndjson", dir.path().display()).parse()?;
    let sink = dlq::open(&url, None, &common::moto()?.sdk_config())?;
    sink.check().await?;
    let sent = letters(5);
    sink.send(&sent[..2]).await?;
    sink.send(&sent[2..]).await?;
    let text = std::fs::read_to_string(dir.path().join("dlq/letters.ndjson"))?;
    let got: Vec<DeadLetter> = text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(got, sent);

    // A directory URL gets the default file name; an unwritable path fails
    // with every index named.
    let in_dir = FileDeadLetter::new(dir.path().to_path_buf());
    in_dir.send(&sent[..1]).await?;
    assert!(dir.path().join("dead-letters.ndjson").exists());
    std::fs::write(dir.path().join("blocker"), b"a file")?;
    let blocked = FileDeadLetter::new(dir.path().join("blocker/sub/x.ndjson"));
    let err = blocked.send(&sent[..3]).await.expect_err("cannot write under a file");
    assert!(matches!(err, DlqError::Partial { ref failed, .. } if failed == &[0, 1, 2]), "{err}");
    Ok(())
}

#[tokio::test]
async fn s3_is_not_a_dead_letter_queue() -> anyhow::Result<()> {
    let aws = common::moto()?.sdk_config();
    let err = dlq::open(&"s3://bucket/x".parse()?, None, &aws).err().context("must fail")?;
    assert!(err.to_string().contains("use an SQS queue URL or file://"), "{err}");
    let q: SinkUrl = "http://127.0.0.1:1/1/q".parse()?;
    let err = dlq::open(&q, Some(&"file:///tmp/x".parse()?), &aws).err().context("must fail")?;
    assert!(matches!(err, DlqError::UnsupportedPayloadStore { .. }), "{err}");
    Ok(())
}
