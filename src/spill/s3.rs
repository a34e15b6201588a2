//! [`S3Spill`]: spillover objects in an S3 bucket under a prefix.
//!
//! Guarantees: a PUT S3 acknowledged is durable. Objects are create-only
//! (`If-None-Match: *`): a late PUT of a killed invocation cannot replace an
//! object a shard state lists; a retry that spills the same records finds
//! them there and succeeds. Listing pages through `ListObjectsV2`.

use aws_sdk_s3::primitives::ByteStream;

use super::{SpillError, SpillFilter, SpillKey, SpillSink, SpilledBatch, archive_prefix, format};
use crate::delivery::store::{S3StateStore, StateStore};
use crate::sink_url::join_key;

pub struct S3Spill {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Spill {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, prefix: String) -> Self {
        Self { client, bucket, prefix: prefix.trim_matches('/').to_string() }
    }

    fn full(&self, rel: &str) -> String {
        join_key(&self.prefix, rel)
    }

    fn url(&self, rel: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full(rel))
    }

    fn s3_error(&self, rel: &str, e: impl Into<aws_sdk_s3::Error>) -> SpillError {
        SpillError::S3 { location: self.url(rel), source: Box::new(e.into()) }
    }

    async fn put(&self, rel: &str, body: Vec<u8>, content_type: &str) -> Result<(), SpillError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(rel))
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.s3_error(rel, e))?;
        Ok(())
    }

    /// The object's bytes, `None` if there is no such key.
    async fn get(&self, rel: &str) -> Result<Option<Vec<u8>>, SpillError> {
        let out = self.client.get_object().bucket(&self.bucket).key(self.full(rel)).send().await;
        let out = match out {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.s3_error(rel, e)),
        };
        let body = out.body.collect().await.map_err(|e| SpillError::Io {
            location: self.url(rel),
            source: std::io::Error::other(e),
        })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn remove(&self, rel: &str) -> Result<(), SpillError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(rel))
            .send()
            .await
            .map_err(|e| self.s3_error(rel, e))?;
        Ok(())
    }

    /// Creates `rel` unless it exists (`If-None-Match: *`): `false` when it
    /// does (412), so the caller can judge what is there.
    async fn create(
        &self,
        rel: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<bool, SpillError> {
        let done = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(rel))
            .content_type(content_type)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match done {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => Ok(false),
            Err(e) => Err(self.s3_error(rel, e)),
        }
    }
}

#[async_trait::async_trait]
impl SpillSink for S3Spill {
    async fn spill(&self, batch: &SpilledBatch) -> Result<SpillKey, SpillError> {
        let key = SpillKey::of(batch)?;
        format::validate(batch)?;
        let owned = batch.clone();
        // Compressing megabytes is CPU work: keep it off the async workers.
        let bytes = tokio::task::spawn_blocking(move || format::encode(&owned))
            .await
            .map_err(|_| SpillError::Cancelled)??;
        if self.create(&key.path(), bytes, "application/zstd").await? {
            return Ok(key);
        }
        // Taken: the same records spilled again (a retry) are already safe;
        // anything else stays as it is.
        if self.read(&key).await?.replays_as(batch) {
            Ok(key)
        } else {
            Err(SpillError::Occupied { location: self.url(&key.path()) })
        }
    }

    async fn list(&self, filter: &SpillFilter) -> Result<Vec<SpillKey>, SpillError> {
        let rel_prefix = filter.prefix();
        let root = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(format!("{root}{rel_prefix}"))
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.s3_error(&rel_prefix, e))?;
            for object in page.contents() {
                let rel = object.key().and_then(|k| k.strip_prefix(root.as_str()));
                if let Some(key) = rel.and_then(SpillKey::parse).filter(|k| filter.matches(k)) {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    async fn read(&self, key: &SpillKey) -> Result<SpilledBatch, SpillError> {
        let rel = key.path();
        let bytes = self
            .get(&rel)
            .await?
            .ok_or_else(|| SpillError::NotFound { location: self.url(&rel) })?;
        let location = self.url(&rel);
        tokio::task::spawn_blocking(move || format::decode(&bytes, &location))
            .await
            .map_err(|_| SpillError::Cancelled)?
    }

    async fn put_marker(
        &self,
        key: &SpillKey,
        marker: &serde_json::Value,
    ) -> Result<(), SpillError> {
        let body = serde_json::to_vec(marker).map_err(SpillError::Encode)?;
        self.put(&key.marker_path(), body, "application/json").await
    }

    async fn get_marker(&self, key: &SpillKey) -> Result<Option<serde_json::Value>, SpillError> {
        let rel = key.marker_path();
        let Some(bytes) = self.get(&rel).await? else { return Ok(None) };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| SpillError::Corrupt {
            location: self.url(&rel),
            why: format!("marker is not JSON: {e}"),
        })
    }

    async fn delete(&self, key: &SpillKey) -> Result<(), SpillError> {
        // The object first: a marker without its object is harmless, an
        // object that lost its marker could be replayed into a new stream.
        self.remove(&key.path()).await?;
        self.remove(&key.marker_path()).await
    }

    async fn archive(&self, key: &SpillKey, to: &str) -> Result<String, SpillError> {
        let to = archive_prefix(to)?;
        let (object, marker) = (key.path(), key.marker_path());
        let dest = format!("{to}/{object}");
        let Some(bytes) = self.get(&object).await? else {
            return Err(SpillError::NotFound { location: self.url(&object) });
        };
        // Create-only at the destination too: an earlier run that copied and
        // died before the delete left the same bytes (fine); different bytes
        // there are another object's and are not overwritten.
        if !self.create(&dest, bytes.clone(), "application/zstd").await?
            && self.get(&dest).await?.as_deref() != Some(bytes.as_slice())
        {
            return Err(SpillError::Occupied { location: self.url(&dest) });
        }
        if let Some(note) = self.get(&marker).await? {
            self.put(&format!("{to}/{marker}"), note, "application/json").await?;
        }
        self.delete(key).await?;
        Ok(self.url(&dest))
    }

    async fn check(&self) -> Result<String, SpillError> {
        self.client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(""))
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.s3_error("", e))?;
        Ok(format!("spillover bucket s3://{}/{} is listable", self.bucket, self.prefix))
    }

    fn location(&self, key: &SpillKey) -> String {
        self.url(&key.path())
    }

    fn root(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn lease_store(&self) -> std::sync::Arc<dyn StateStore> {
        std::sync::Arc::new(S3StateStore::new(
            self.client.clone(),
            self.bucket.clone(),
            self.prefix.clone(),
        ))
    }
}
