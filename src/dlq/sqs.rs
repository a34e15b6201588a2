//! [`SqsDeadLetter`]: dead letters as SQS messages, sent with
//! `SendMessageBatch`.
//!
//! Guarantees: every letter is either accepted by SQS or named in the error;
//! a letter too large for a message has its raw bytes written to S3 first and
//! travels as a pointer (`data_s3`), never truncated.

use std::collections::HashSet;
use std::sync::Arc;

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use futures::StreamExt as _;
use md5::{Digest as _, Md5};
use tokio::sync::OnceCell;

use super::{DeadLetter, DeadLetterSink, DlqError, LetterError, Payload};
use crate::retry::{Attempts, Class, Classify, Decision, RetryPolicy};
use crate::sink_url::{join_key, segment};

/// SendMessageBatch takes at most 10 entries (SQS API reference).
pub const MAX_BATCH_ENTRIES: usize = 10;
/// SendMessageBatch's total payload, the sum of all bodies, is capped at
/// 1 MiB, as is a single message (SQS quotas, raised from 256 KiB in 2025).
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Used when the queue's `MaximumMessageSize` cannot be read (no
/// `sqs:GetQueueAttributes` permission): the historical default, which every
/// queue created with defaults accepts.
pub const FALLBACK_MESSAGE_BYTES: usize = 262_144;
/// SendMessageBatch calls in flight at once for one `send`.
const CONCURRENT_CALLS: usize = 4;

/// Where the raw bytes of oversized letters go: `s3://bucket/prefix`.
#[derive(Clone, Debug)]
pub struct PayloadStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl PayloadStore {
    pub fn new(client: aws_sdk_s3::Client, bucket: String, prefix: String) -> Self {
        Self { client, bucket, prefix: prefix.trim_matches('/').to_string() }
    }

    /// One key per record, so a retried letter overwrites its own payload:
    /// `{prefix}/dead-letter-payloads/{table}/{stream}/{shard}/{seq}.{sub}.bin`.
    fn key_for(&self, letter: &DeadLetter) -> String {
        let rel = format!(
            "dead-letter-payloads/{}/{}/{}/{}.{}.bin",
            segment(&letter.table.to_string()),
            segment(crate::sink_url::stream_name(&letter.stream_arn)),
            segment(&letter.shard_id),
            letter.sequence_number,
            letter.sub_sequence_number
        );
        join_key(&self.prefix, &rel)
    }

    async fn put(&self, letter: &DeadLetter, data: bytes::Bytes) -> Result<String, LetterError> {
        let key = self.key_for(letter);
        let location = format!("s3://{}/{}", self.bucket, key);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .body(data.into())
            .send()
            .await
            .map_err(|e| LetterError::Payload {
                location: location.clone(),
                source: Box::new(e.into()),
            })?;
        Ok(location)
    }
}

/// The production dead-letter queue.
pub struct SqsDeadLetter {
    client: aws_sdk_sqs::Client,
    queue_url: String,
    /// FIFO queues need a group id (the shard, keeping its order) and a
    /// deduplication id (the record's position, so a retried letter within
    /// SQS's 5-minute window is stored once).
    fifo: bool,
    payloads: Option<PayloadStore>,
    max_message_bytes: OnceCell<usize>,
    /// Entries SQS refused with `SenderFault=false` are its own trouble
    /// (throttling, internal error): retried under the crate's one policy.
    retry: RetryPolicy,
}

impl SqsDeadLetter {
    pub fn new(
        client: aws_sdk_sqs::Client,
        queue_url: String,
        payloads: Option<PayloadStore>,
    ) -> Self {
        let fifo = queue_url.trim_end_matches('/').ends_with(".fifo");
        Self {
            client,
            queue_url,
            fifo,
            payloads,
            max_message_bytes: OnceCell::new(),
            retry: RetryPolicy::default(),
        }
    }

    /// Retries refused entries under `retry` instead of the default policy.
    pub fn with_retry(self, retry: RetryPolicy) -> Self {
        Self { retry, ..self }
    }

    /// Uses `limit` as the message size limit instead of asking the queue.
    pub fn with_max_message_bytes(self, limit: usize) -> Self {
        Self { max_message_bytes: OnceCell::new_with(Some(limit.min(MAX_BATCH_BYTES))), ..self }
    }

    /// The queue's `MaximumMessageSize`, read once; the fallback is not
    /// cached, so a transient failure does not pin the lower limit.
    async fn message_limit(&self) -> usize {
        let read = self
            .max_message_bytes
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_queue_attributes()
                    .queue_url(&self.queue_url)
                    .attribute_names(QueueAttributeName::MaximumMessageSize)
                    .send()
                    .await
                    .map_err(|e| LetterError::Sqs(Arc::new(e.into())))?;
                let size = out
                    .attributes()
                    .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(FALLBACK_MESSAGE_BYTES);
                Ok::<_, LetterError>(size.min(MAX_BATCH_BYTES))
            })
            .await;
        match read {
            Ok(limit) => *limit,
            Err(error) => {
                tracing::warn!(%error, fallback = FALLBACK_MESSAGE_BYTES, "reading MaximumMessageSize failed");
                FALLBACK_MESSAGE_BYTES
            }
        }
    }

    /// The message body for `letter`, moving its bytes to S3 if needed.
    async fn body(&self, letter: &DeadLetter, limit: usize) -> Result<String, LetterError> {
        let body = letter.to_json()?;
        if body.len() <= limit {
            return Ok(body);
        }
        let (store, data) = match (&self.payloads, &letter.data) {
            (Some(store), Payload::Inline(data)) => (store, data.clone()),
            (None, Payload::Inline(_)) => {
                return Err(LetterError::NoPayloadStore { bytes: body.len(), limit });
            }
            (_, Payload::S3(_)) => return Err(LetterError::TooLarge { bytes: body.len(), limit }),
        };
        let location = store.put(letter, data).await?;
        let pointer = DeadLetter { data: Payload::S3(location), ..letter.clone() };
        let body = pointer.to_json()?;
        if body.len() > limit {
            return Err(LetterError::TooLarge { bytes: body.len(), limit });
        }
        Ok(body)
    }

    fn entry(
        &self,
        index: usize,
        body: &str,
        letter: &DeadLetter,
    ) -> Result<SendMessageBatchRequestEntry, LetterError> {
        let mut entry =
            SendMessageBatchRequestEntry::builder().id(index.to_string()).message_body(body);
        if self.fifo {
            let mut md5 = Md5::new();
            for part in
                [letter.stream_arn.as_str(), &letter.shard_id, letter.sequence_number.as_str()]
            {
                md5.update(part.as_bytes());
                md5.update(b"\n");
            }
            md5.update(letter.sub_sequence_number.to_string().as_bytes());
            let dedup: String = md5.finalize().iter().map(|b| format!("{b:02x}")).collect();
            entry = entry.message_group_id(&letter.shard_id).message_deduplication_id(dedup);
        }
        Ok(entry.build()?)
    }

    /// Sends one batch, retrying entries SQS failed on its side; returns the
    /// letters that did not land.
    async fn send_batch(
        &self,
        letters: &[DeadLetter],
        mut pending: Vec<(usize, String)>,
    ) -> Vec<(usize, LetterError)> {
        let mut failures = Vec::new();
        let mut attempts = Attempts::default();
        let deadline = tokio::time::Instant::now() + self.retry.budget;
        loop {
            let mut entries = Vec::with_capacity(pending.len());
            for (index, body) in &pending {
                let Some(letter) = letters.get(*index) else { continue };
                match self.entry(*index, body, letter) {
                    Ok(e) => entries.push(e),
                    Err(e) => failures.push((*index, e)),
                }
            }
            let call = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await;
            let out = match call {
                Ok(out) => out,
                Err(e) => {
                    // The SDK already retried transient call failures.
                    let shared = Arc::new(aws_sdk_sqs::Error::from(e));
                    for (index, _) in pending {
                        failures.push((index, LetterError::Sqs(Arc::clone(&shared))));
                    }
                    return failures;
                }
            };
            let accepted: HashSet<&str> = out.successful().iter().map(|s| s.id()).collect();
            let refused: Vec<_> = out.failed().iter().map(|f| (f.id(), f)).collect();
            let mut retry = Vec::new();
            for (index, body) in pending {
                let id = index.to_string();
                if accepted.contains(id.as_str()) {
                    continue;
                }
                let error = match refused.iter().find(|(fid, _)| *fid == id) {
                    Some((_, f)) => LetterError::Refused {
                        code: f.code().to_string(),
                        message: f.message().unwrap_or_default().to_string(),
                        sender_fault: f.sender_fault(),
                    },
                    None => LetterError::Refused {
                        code: "MissingFromResponse".into(),
                        message: "SQS listed the entry neither as successful nor failed".into(),
                        sender_fault: false,
                    },
                };
                if error.is_transient() {
                    retry.push((index, body, error));
                } else {
                    failures.push((index, error));
                }
            }
            let Some((_, _, first)) = retry.first() else { break };
            match self.retry.decide(first, &mut attempts, deadline) {
                Decision::RetryAfter(delay) => {
                    pending = retry.into_iter().map(|(i, body, _)| (i, body)).collect();
                    tokio::time::sleep(delay).await;
                }
                Decision::GiveUp => {
                    failures.extend(retry.into_iter().map(|(i, _, e)| (i, e)));
                    break;
                }
            }
        }
        failures
    }
}

/// SQS's own trouble (`SenderFault=false`: throttling, an internal error)
/// is worth another attempt; a fault of ours is not.
impl Classify for LetterError {
    fn class(&self) -> Class {
        if self.is_transient() { Class::Transient } else { Class::Permanent }
    }
}

/// Packs bodies in order into batches of at most [`MAX_BATCH_ENTRIES`]
/// entries and [`MAX_BATCH_BYTES`] bytes (each body is already within it).
fn pack(bodies: Vec<(usize, String)>) -> Vec<Vec<(usize, String)>> {
    let mut batches: Vec<Vec<(usize, String)>> = Vec::new();
    let mut current: Vec<(usize, String)> = Vec::new();
    let mut bytes = 0;
    for (index, body) in bodies {
        if current.len() == MAX_BATCH_ENTRIES || bytes + body.len() > MAX_BATCH_BYTES {
            batches.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += body.len();
        current.push((index, body));
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[async_trait::async_trait]
impl DeadLetterSink for SqsDeadLetter {
    async fn send(&self, letters: &[DeadLetter]) -> Result<(), DlqError> {
        if letters.is_empty() {
            return Ok(());
        }
        let limit = self.message_limit().await;
        let mut failures = Vec::new();
        let mut bodies = Vec::with_capacity(letters.len());
        for (index, letter) in letters.iter().enumerate() {
            match self.body(letter, limit).await {
                Ok(body) => bodies.push((index, body)),
                Err(e) => failures.push((index, e)),
            }
        }
        let sent: Vec<Vec<(usize, LetterError)>> = futures::stream::iter(pack(bodies))
            .map(|batch| self.send_batch(letters, batch))
            .buffer_unordered(CONCURRENT_CALLS)
            .collect()
            .await;
        failures.extend(sent.into_iter().flatten());
        failures.sort_by_key(|(index, _)| *index);
        let failed = failures.iter().map(|(index, _)| *index).collect();
        match failures.into_iter().next() {
            None => Ok(()),
            Some((_, cause)) => Err(DlqError::Partial { failed, cause }),
        }
    }

    async fn check(&self) -> Result<String, DlqError> {
        let unreachable = |cause| DlqError::Unreachable { location: self.queue_url.clone(), cause };
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| unreachable(LetterError::Sqs(Arc::new(e.into()))))?;
        let attr = |name| {
            out.attributes().and_then(|a| a.get(&name)).map_or("?", String::as_str).to_string()
        };
        let mut found = format!(
            "SQS queue {}: MaximumMessageSize={} ApproximateNumberOfMessages={}",
            self.queue_url,
            attr(QueueAttributeName::MaximumMessageSize),
            attr(QueueAttributeName::ApproximateNumberOfMessages),
        );
        if let Some(store) = &self.payloads {
            store.client.head_bucket().bucket(&store.bucket).send().await.map_err(|e| {
                unreachable(LetterError::Payload {
                    location: format!("s3://{}", store.bucket),
                    source: Box::new(e.into()),
                })
            })?;
            found.push_str(&format!(
                "; oversized payloads to s3://{}/{}",
                store.bucket, store.prefix
            ));
        }
        Ok(found)
    }

    fn location(&self) -> String {
        self.queue_url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_by_count_and_bytes() {
        let small: Vec<_> = (0..23).map(|i| (i, "x".repeat(10))).collect();
        let sizes: Vec<usize> = pack(small).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 3]);
        let big: Vec<_> = (0..5).map(|i| (i, "x".repeat(400_000))).collect();
        let batches = pack(big);
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(batches[2][0].0, 4, "order is kept");
        assert!(pack(Vec::new()).is_empty());
    }
}
