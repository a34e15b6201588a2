//! [`S3StateStore`]: state objects in S3 with conditional writes
//! (`If-None-Match: *` to create, `If-Match: <etag>` to replace; S3 has
//! enforced both since 2024, see reference/kinesis-lambda-kpl.md).
//!
//! Guarantees: a 412 Precondition Failed (or a 404 for a vanished object on
//! replace) is a [`StoreError::Conflict`]; a 409 ConditionalRequestConflict —
//! a concurrent write still in progress, which S3's docs say to retry — is
//! retried under the crate's one [`RetryPolicy`] (`RETRY_BUDGET_MS`, and the
//! invocation's shared budget) before it too counts as a conflict.

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::put_object::PutObjectError;
use aws_sdk_s3::primitives::ByteStream;

use super::{StateStore, StoreError, Version, validate_key};
use crate::retry::{Class, RetryPolicy};
use crate::sink_url::join_key;

pub struct S3StateStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    retry: RetryPolicy,
}

enum Condition<'a> {
    Absent,
    Matches(&'a Version),
}

impl S3StateStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, prefix: String) -> Self {
        let prefix = prefix.trim_matches('/').to_string();
        Self { client, bucket, prefix, retry: RetryPolicy::default() }
    }

    /// Retries 409s under `retry` instead of the default policy.
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        Self { retry, ..self }
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, join_key(&self.prefix, key))
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        cond: Condition<'_>,
    ) -> Result<Version, StoreError> {
        validate_key(key)?;
        let location = self.url(key);
        let attempt = || async {
            let mut put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(join_key(&self.prefix, key))
                .content_type("application/json")
                .body(ByteStream::from(bytes.to_vec()));
            put = match &cond {
                Condition::Absent => put.if_none_match("*"),
                Condition::Matches(v) => put.if_match(v.as_str()),
            };
            put.send().await
        };
        // Only a 409 (a concurrent write still in progress) is worth another
        // attempt here; the SDK already retried throttling and 5xx.
        let class = |e: &SdkError<PutObjectError, _>| match status(e) {
            Some(409) => Class::Transient,
            _ => Class::Permanent,
        };
        let deadline = tokio::time::Instant::now() + self.retry.budget;
        let err = match self.retry.run(deadline, class, attempt).await {
            Ok(out) => {
                return out.e_tag().map(|t| Version(t.to_string())).ok_or_else(|| {
                    StoreError::Corrupt { location, why: "PUT returned no ETag".into() }
                });
            }
            Err(e) => e,
        };
        match status(&err) {
            Some(412 | 409) => Err(StoreError::Conflict { location }),
            // If-Match on a key that no longer exists: someone deleted it.
            Some(404) if matches!(cond, Condition::Matches(_)) => {
                Err(StoreError::Conflict { location })
            }
            _ => Err(StoreError::S3 { location, source: Box::new(err.into()) }),
        }
    }
}

fn status(err: &SdkError<PutObjectError, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

#[async_trait::async_trait]
impl StateStore for S3StateStore {
    async fn load(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        validate_key(key)?;
        let location = self.url(key);
        let got = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(join_key(&self.prefix, key))
            .send()
            .await;
        let out = match got {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(StoreError::S3 { location, source: Box::new(e.into()) }),
        };
        let Some(etag) = out.e_tag().map(str::to_string) else {
            return Err(StoreError::Corrupt { location, why: "GET returned no ETag".into() });
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Io { location, source: std::io::Error::other(e) })?;
        Ok(Some((body.into_bytes().to_vec(), Version(etag))))
    }

    async fn create(&self, key: &str, bytes: &[u8]) -> Result<Version, StoreError> {
        self.put(key, bytes, Condition::Absent).await
    }

    async fn replace(
        &self,
        key: &str,
        bytes: &[u8],
        expected: &Version,
    ) -> Result<Version, StoreError> {
        self.put(key, bytes, Condition::Matches(expected)).await
    }

    async fn check(&self) -> Result<String, StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| StoreError::S3 { location: self.url(""), source: Box::new(e.into()) })?;
        Ok(format!("state bucket s3://{}/{} is reachable", self.bucket, self.prefix))
    }

    fn location(&self, key: &str) -> String {
        self.url(key)
    }
}
