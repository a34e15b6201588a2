//! The state store's compare-and-swap on S3 (moto's conditional writes, real
//! AWS SDK) and on local files: of concurrent writers on one key, exactly one
//! wins, and the stored bytes are the winner's.

use crate::common;

use std::sync::Arc;

use futures::future::join_all;
use kinesis_bigquery::delivery::store::{self, StateStore, StoreError, Version};
use kinesis_bigquery::sink_url::SinkUrl;

const WRITERS: usize = 8;

/// `WRITERS` tasks race to create `key`, then all race to replace it from
/// the same version; each round must have exactly one winner.
async fn race(store: Arc<dyn StateStore>, key: &str) -> anyhow::Result<()> {
    let creates = join_all((0..WRITERS).map(|i| {
        let store = Arc::clone(&store);
        let key = key.to_string();
        tokio::spawn(
            async move { store.create(&key, format!("{{\"writer\":{i}}}").as_bytes()).await },
        )
    }))
    .await;
    let (won, lost) = outcomes(creates)?;
    assert_eq!((won.len(), lost), (1, WRITERS - 1), "create: exactly one winner");
    let (winner, v1) = won.into_iter().next().ok_or_else(|| anyhow::anyhow!("no winner"))?;
    let (bytes, loaded) = store.load(key).await?.ok_or_else(|| anyhow::anyhow!("not stored"))?;
    assert_eq!(bytes, format!("{{\"writer\":{winner}}}").into_bytes());
    assert_eq!(loaded, v1);

    let replaces = join_all((0..WRITERS).map(|i| {
        let store = Arc::clone(&store);
        let key = key.to_string();
        let v1 = v1.clone();
        tokio::spawn(async move {
            store.replace(&key, format!("{{\"round\":2,\"writer\":{i}}}").as_bytes(), &v1).await
        })
    }))
    .await;
    let (won, lost) = outcomes(replaces)?;
    assert_eq!((won.len(), lost), (1, WRITERS - 1), "replace: exactly one winner");
    let (winner, v2) = won.into_iter().next().ok_or_else(|| anyhow::anyhow!("no winner"))?;
    assert_ne!(v2, v1);
    let (bytes, loaded) = store.load(key).await?.ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(bytes, format!("{{\"round\":2,\"writer\":{winner}}}").into_bytes());
    assert_eq!(loaded, v2);

    // A writer still holding v1 is refused, and nothing changes.
    let stale = store.replace(key, b"{\"stale\":true}", &v1).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })), "{stale:?}");
    assert_eq!(store.load(key).await?.map(|(_, v)| v), Some(v2.clone()));
    // Creating an existing key is a conflict too.
    assert!(matches!(store.create(key, b"{}").await, Err(StoreError::Conflict { .. })));
    // The winner carries on from its version.
    let v3 = store.replace(key, b"{\"round\":3}", &v2).await?;
    assert_eq!(store.load(key).await?, Some((b"{\"round\":3}".to_vec(), v3)));
    Ok(())
}

type Joined = Result<Result<Version, StoreError>, tokio::task::JoinError>;

/// Winners (writer index, version) and the number of conflicts; any other
/// error fails the test.
fn outcomes(results: Vec<Joined>) -> anyhow::Result<(Vec<(usize, Version)>, usize)> {
    let mut won = Vec::new();
    let mut lost = 0;
    for (i, r) in results.into_iter().enumerate() {
        match r? {
            Ok(v) => won.push((i, v)),
            Err(StoreError::Conflict { .. }) => lost += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok((won, lost))
}

#[tokio::test]
async fn s3_concurrent_writers_exactly_one_wins() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let bucket = moto.new_bucket().await?;
    let url: SinkUrl = format!("s3://{bucket}/state").parse()?;
    let store = store::open(&url, &moto.sdk_config())?;
    store.check().await?;
    assert_eq!(store.load("kbq-test.events.t/clicks/shardId-0.json").await?, None);
    race(Arc::clone(&store), "kbq-test.events.t/clicks/shardId-0.json").await?;
    // The object is where the location says, holding exactly the bytes.
    let object = moto
        .s3_client()
        .get_object()
        .bucket(&bucket)
        .key("state/kbq-test.events.t/clicks/shardId-0.json")
        .send()
        .await?;
    assert_eq!(object.body.collect().await?.into_bytes().as_ref(), b"{\"round\":3}");
    assert_eq!(store.location("a/b.json"), format!("s3://{bucket}/state/a/b.json"));
    Ok(())
}

#[tokio::test]
async fn s3_store_errors_are_not_conflicts() -> anyhow::Result<()> {
    let moto = common::moto()?;
    let url: SinkUrl = format!("s3://kbq-missing-{}", uuid::Uuid::new_v4().simple()).parse()?;
    let store = store::open(&url, &moto.sdk_config())?;
    let err = store.create("k.json", b"{}").await.expect_err("no bucket");
    assert!(matches!(err, StoreError::S3 { .. }), "{err}");
    let err = store.load("../escape").await.expect_err("bad key");
    assert!(matches!(err, StoreError::InvalidKey { .. }), "{err}");
    Ok(())
}

#[tokio::test]
async fn file_concurrent_writers_exactly_one_wins() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url: SinkUrl = format!("file://{}/state", dir.path().display()).parse()?;
    let store = store::open(&url, &common::moto()?.sdk_config())?;
    store.check().await?;
    race(Arc::clone(&store), "kbq-test.events.t/clicks/shardId-0.json").await?;
    // Two stores on one directory (two processes' worth) still exclude each other.
    let other = store::open(&url, &common::moto()?.sdk_config())?;
    let (_, v) = store
        .load("kbq-test.events.t/clicks/shardId-0.json")
        .await?
        .ok_or_else(|| anyhow::anyhow!("state missing"))?;
    let (a, b) = tokio::join!(
        store.replace("kbq-test.events.t/clicks/shardId-0.json", b"{\"a\":1}", &v),
        other.replace("kbq-test.events.t/clicks/shardId-0.json", b"{\"b\":1}", &v),
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one of {a:?} / {b:?}");
    Ok(())
}

#[tokio::test]
async fn a_queue_url_cannot_hold_state() -> anyhow::Result<()> {
    let q: SinkUrl = "https://sqs.us-east-1.amazonaws.com/123456789012/q".parse()?;
    let err = store::open(&q, &common::moto()?.sdk_config()).err();
    assert!(matches!(err, Some(StoreError::Unsupported { .. })), "{err:?}");
    Ok(())
}
