//! Spillover sinks on S3 (moto, real AWS SDK) and on local files, driven
//! through the same trait object: write, read back, list, markers, delete,
//! archive, and the same key on retry.

use crate::common;

use std::sync::Arc;

use bytes::Bytes;
use kinesis_bigquery::delivery::WriteMode;
use kinesis_bigquery::sink_url::SinkUrl;
use kinesis_bigquery::source::{Position, SequenceNumber, SourceRecord};
use kinesis_bigquery::spill::{
    self, SpillError, SpillFilter, SpillKey, SpillReason, SpillSink, SpilledBatch,
};
use kinesis_bigquery::table::TableName;

fn records(shard: &str, stream: &str, seqs: std::ops::Range<u64>) -> Vec<SourceRecord> {
    seqs.map(|i| SourceRecord {
        shard_id: Arc::from(shard),
        stream_arn: Arc::from(
            format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}").as_str(),
        ),
        position: Position {
            sequence_number: SequenceNumber::new(&format!("{}", 7_000 + i / 3)).unwrap(),
            sub_sequence_number: i % 3,
        },
        event_index: i as usize,
        partition_key: Arc::from(format!("pk-{i}").as_str()),
        explicit_hash_key: None,
        arrival_micros: Some(1_764_000_000_000_000 + i as i64),
        data: Bytes::from(format!("{{\"event_id\":\"e{i}\",\"bytes\":\"\\u00e9\\n\"}}")),
    })
    .collect()
}

fn table(name: &str) -> TableName {
    TableName::new("kbq-test", "events", name).unwrap()
}

fn batch(t: &str, shard: &str, seqs: std::ops::Range<u64>) -> SpilledBatch {
    SpilledBatch::new(
        table(t),
        SpillReason::RetriesExhausted,
        "UNAVAILABLE: connection refused",
        &records(shard, "clicks", seqs),
    )
}

/// The whole contract, run against any implementation.
async fn exercise(sink: &dyn SpillSink) -> anyhow::Result<()> {
    // An in-doubt batch: stream name and offsets travel with the records.
    let mut in_doubt = SpilledBatch::new(
        table("a"),
        SpillReason::InDoubt,
        "connection reset with 2 appends in flight",
        &records("shardId-000000000000", "clicks", 0..5),
    );
    in_doubt.write_mode = Some(WriteMode::ExactlyOnce);
    in_doubt.write_stream = Some("projects/kbq-test/datasets/events/tables/a/streams/s-1".into());
    for (i, r) in in_doubt.records.iter_mut().enumerate() {
        r.offset = Some(100 + i as i64);
    }
    let key = sink.spill(&in_doubt).await?;
    assert_eq!(key, SpillKey::of(&in_doubt)?);
    let digest = key.digest.clone().expect("new keys carry the content digest");
    assert_eq!(
        key.path(),
        format!("kbq-test.events.a/clicks/shardId-000000000000/7000_0-7001_1-{digest}.ndjson.zst")
    );
    assert_eq!(sink.read(&key).await?, in_doubt);
    // The key names the content it holds: read back, it keys the same.
    assert_eq!(SpillKey::of(&sink.read(&key).await?)?, key);

    // A retry of the same records finds them at the same key: not an
    // error, not a second copy, and the object is not rewritten.
    let mut retry = in_doubt.clone();
    retry.spilled_at += chrono::Duration::seconds(30);
    retry.error = "still down".into();
    assert_eq!(sink.spill(&retry).await?, key);
    assert_eq!(sink.read(&key).await?, in_doubt);

    // The same records with a content that replays differently (other
    // offsets on another stream, another write mode: a killed attempt's late
    // write, or the retry that must replace it) get a key of their own:
    // neither blocks the other, and nothing replaces the object at `key`.
    let mut late = in_doubt.clone();
    late.write_stream = Some("projects/kbq-test/datasets/events/tables/a/streams/s-0".into());
    for r in &mut late.records {
        r.offset = r.offset.map(|o| o - 50);
    }
    let other_mode = SpilledBatch { write_mode: Some(WriteMode::AtLeastOnce), ..in_doubt.clone() };
    let mut others = Vec::new();
    for other in [&late, &other_mode] {
        let other_key = sink.spill(other).await?;
        assert_ne!(other_key, key);
        assert_eq!((&other_key.first, &other_key.last), (&key.first, &key.last));
        assert_eq!(&sink.read(&other_key).await?, other);
        others.push(other_key);
    }
    assert_eq!(sink.read(&key).await?, in_doubt);
    for other_key in &others {
        sink.delete(other_key).await?;
    }

    let other_shard = sink.spill(&batch("a", "shardId-000000000001", 0..3)).await?;
    let later = sink.spill(&batch("a", "shardId-000000000000", 5..9)).await?;
    let other_table = sink.spill(&batch("b", "shardId-000000000000", 0..2)).await?;

    let all = sink.list(&SpillFilter::default()).await?;
    assert_eq!(all, [key.clone(), later.clone(), other_shard.clone(), other_table.clone()]);
    let shard0 = SpillFilter {
        table: Some(table("a")),
        stream: Some("arn:aws:kinesis:us-east-1:123456789012:stream/clicks".into()),
        shard: Some("shardId-000000000000".into()),
    };
    assert_eq!(sink.list(&shard0).await?, [key.clone(), later.clone()]);
    let by_shard_only =
        SpillFilter { shard: Some("shardId-000000000001".into()), ..SpillFilter::default() };
    assert_eq!(sink.list(&by_shard_only).await?, std::slice::from_ref(&other_shard));

    // Markers sit beside the object and are not listed.
    assert_eq!(sink.get_marker(&key).await?, None);
    let marker =
        serde_json::json!({"pending_stream": "projects/p/datasets/d/tables/a/streams/p-9"});
    sink.put_marker(&key, &marker).await?;
    assert_eq!(sink.get_marker(&key).await?, Some(marker.clone()));
    assert_eq!(sink.list(&shard0).await?.len(), 2);

    // Delete removes object and marker; deleting again is fine.
    sink.delete(&key).await?;
    assert!(matches!(sink.read(&key).await, Err(SpillError::NotFound { .. })));
    assert_eq!(sink.get_marker(&key).await?, None);
    sink.delete(&key).await?;

    // Archive moves object and marker out of list's sight.
    sink.put_marker(&later, &marker).await?;
    let moved = sink.archive(&later, "archive/2026").await?;
    assert!(moved.ends_with(&format!("archive/2026/{}", later.path())), "{moved}");
    assert!(matches!(sink.read(&later).await, Err(SpillError::NotFound { .. })));
    assert_eq!(sink.get_marker(&later).await?, None);
    assert_eq!(sink.list(&SpillFilter::default()).await?, [other_shard.clone(), other_table]);
    assert!(matches!(sink.archive(&later, "archive").await, Err(SpillError::NotFound { .. })));

    // Archiving is create-only too: different bytes already at the
    // destination are not overwritten, and the object stays where it was.
    let again =
        SpilledBatch { error: "spilled again".into(), ..batch("a", "shardId-000000000000", 5..9) };
    assert_eq!(sink.spill(&again).await?, later);
    let err = sink.archive(&later, "archive/2026").await.expect_err("occupied");
    assert!(matches!(err, SpillError::Occupied { .. }), "{err}");
    assert_eq!(sink.read(&later).await?, again);
    sink.delete(&later).await?;
    assert!(matches!(
        sink.archive(&other_shard, "../out").await,
        Err(SpillError::InvalidArchivePrefix(_))
    ));

    let empty = SpilledBatch { records: Vec::new(), ..batch("a", "shardId-000000000009", 0..1) };
    assert!(matches!(sink.spill(&empty).await, Err(SpillError::InvalidBatch(_))));
    Ok(())
}

#[tokio::test]
async fn s3_spill_keeps_the_whole_contract() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let bucket = moto.new_bucket().await?;
    let url: SinkUrl = format!("s3://{bucket}/spill/v1").parse()?;
    let sink = spill::open(&url, &moto.sdk_config())?;
    sink.check().await?;
    exercise(sink.as_ref()).await?;

    // The archived object and marker really are in the bucket, beside the prefix.
    let s3 = moto.s3_client();
    let listed =
        s3.list_objects_v2().bucket(&bucket).prefix("spill/v1/archive/2026/").send().await?;
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".marker.json")));
    Ok(())
}

#[tokio::test]
async fn an_s3_object_is_plain_zstd_ndjson() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let bucket = moto.new_bucket().await?;
    let sink = spill::open(&format!("s3://{bucket}").parse()?, &moto.sdk_config())?;
    let spilled = batch("c", "shardId-000000000004", 0..4);
    let key = sink.spill(&spilled).await?;
    assert_eq!(sink.location(&key), format!("s3://{bucket}/{}", key.path()));
    let object = moto.s3_client().get_object().bucket(&bucket).key(key.path()).send().await?;
    let bytes = object.body.collect().await?.into_bytes();
    let text = String::from_utf8(zstd::stream::decode_all(&bytes[..])?)?;
    let lines: Vec<serde_json::Value> =
        text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["format"], "kinesis-bigquery-spill");
    assert_eq!(lines[0]["table"], "kbq-test.events.c");
    assert_eq!(lines[0]["shard_id"], "shardId-000000000004");
    assert_eq!(lines[0]["last_position"]["sequence_number"], "7001");
    assert_eq!(lines[4]["sub_sequence_number"], 0);
    assert_eq!(lines[4]["partition_key"], "pk-3");
    assert_eq!(lines[4]["offset"], serde_json::Value::Null);
    Ok(())
}

#[tokio::test]
async fn s3_spill_to_a_missing_bucket_fails() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let url: SinkUrl = format!("s3://kbq-missing-{}", uuid::Uuid::new_v4().simple()).parse()?;
    let sink = spill::open(&url, &moto.sdk_config())?;
    let err = sink.spill(&batch("a", "shardId-000000000000", 0..2)).await.expect_err("no bucket");
    assert!(matches!(err, SpillError::S3 { .. }), "{err}");
    assert!(sink.check().await.is_err());
    Ok(())
}

#[tokio::test]
async fn file_spill_keeps_the_whole_contract() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url: SinkUrl = format!("file://{}/spill", dir.path().display()).parse()?;
    let sink = spill::open(&url, &common::moto()?.sdk_config())?;
    sink.check().await?;
    exercise(sink.as_ref()).await?;
    // Same relative layout as S3; no temporary files left behind.
    let archived =
        dir.path().join("spill/archive/2026/kbq-test.events.a/clicks/shardId-000000000000");
    let mut names: Vec<String> = std::fs::read_dir(&archived)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let later = SpillKey::of(&batch("a", "shardId-000000000000", 5..9))?;
    let digest = later.digest.expect("new keys carry the content digest");
    assert_eq!(
        names,
        [
            format!("7001_2-7002_2-{digest}.marker.json"),
            format!("7001_2-7002_2-{digest}.ndjson.zst")
        ]
    );
    let shard0 = dir.path().join("spill/kbq-test.events.a/clicks/shardId-000000000000");
    assert_eq!(std::fs::read_dir(&shard0)?.count(), 0, "deleted and archived: nothing left");
    Ok(())
}

#[tokio::test]
async fn a_damaged_file_is_refused_not_half_read() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sink = spill::FileSpill::new(dir.path().to_path_buf());
    let key = sink.spill(&batch("a", "shardId-000000000000", 0..50)).await?;
    let path = dir.path().join(key.path());
    let bytes = std::fs::read(&path)?;
    std::fs::write(&path, &bytes[..bytes.len() / 2])?;
    assert!(matches!(sink.read(&key).await, Err(SpillError::Corrupt { .. })));
    Ok(())
}

/// What is at a key is never replaced: an object there that would replay
/// differently (only a digest collision or a foreign writer can put one
/// there) makes `spill` answer `Occupied` and stays as it is.
async fn a_foreign_object_at_the_key_is_kept(
    sink: &dyn SpillSink,
    plant: impl AsyncFnOnce(&SpillKey, Vec<u8>) -> anyhow::Result<()>,
    bytes_of: impl AsyncFnOnce(&SpillKey) -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<()> {
    let ours = batch("a", "shardId-000000000003", 0..3);
    let theirs = SpilledBatch { write_mode: Some(WriteMode::ExactlyOnce), ..ours.clone() };
    let their_key = sink.spill(&theirs).await?;
    let our_key = SpillKey::of(&ours)?;
    plant(&our_key, bytes_of(&their_key).await?).await?;
    let err = sink.spill(&ours).await.expect_err("a different object holds the key");
    assert!(matches!(err, SpillError::Occupied { .. }), "{err}");
    assert!(err.to_string().contains(&our_key.path()), "{err}");
    assert_eq!(sink.read(&our_key).await?, theirs);
    Ok(())
}

#[tokio::test]
async fn a_foreign_file_at_the_key_is_kept() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sink = spill::FileSpill::new(dir.path().to_path_buf());
    let root = dir.path().to_path_buf();
    a_foreign_object_at_the_key_is_kept(
        &sink,
        async |key, bytes| Ok(std::fs::write(root.join(key.path()), bytes)?),
        async |key| Ok(std::fs::read(root.join(key.path()))?),
    )
    .await
}

#[tokio::test]
async fn a_foreign_s3_object_at_the_key_is_kept() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let bucket = moto.new_bucket().await?;
    let sink = spill::open(&format!("s3://{bucket}").parse()?, &moto.sdk_config())?;
    let s3 = moto.s3_client();
    a_foreign_object_at_the_key_is_kept(
        sink.as_ref(),
        async |key, bytes| {
            let body = aws_sdk_s3::primitives::ByteStream::from(bytes);
            s3.put_object().bucket(&bucket).key(key.path()).body(body).send().await?;
            Ok(())
        },
        async |key| {
            let object = s3.get_object().bucket(&bucket).key(key.path()).send().await?;
            Ok(object.body.collect().await?.into_bytes().to_vec())
        },
    )
    .await
}
