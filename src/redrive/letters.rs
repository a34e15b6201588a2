//! Reading dead letters back from where the Lambda sent them, and removing
//! or replacing them once they are dealt with: an SQS queue (received with
//! a visibility timeout that covers the run, deleted by receipt handle) or
//! the `file://` NDJSON (read whole, rewritten atomically at the end).

use std::collections::HashMap;
use std::path::PathBuf;

use crate::dlq::DeadLetter;
use crate::source::SequenceNumber;

/// SQS hands out at most 10 messages per receive and per batch call.
const SQS_BATCH: usize = 10;

/// A letter's identity: the Kinesis record it stands for. Two letters with
/// the same identity are the same record dead-lettered twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity {
    pub stream_arn: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub sub_sequence_number: u64,
}

impl Identity {
    pub fn of(letter: &DeadLetter) -> Self {
        Self {
            stream_arn: letter.stream_arn.clone(),
            shard_id: letter.shard_id.clone(),
            sequence_number: letter.sequence_number.as_str().to_string(),
            sub_sequence_number: letter.sub_sequence_number,
        }
    }

    pub fn of_parts(stream_arn: &str, shard_id: &str, seq: &SequenceNumber, sub: u64) -> Self {
        Self {
            stream_arn: stream_arn.to_string(),
            shard_id: shard_id.to_string(),
            sequence_number: seq.as_str().to_string(),
            sub_sequence_number: sub,
        }
    }
}

/// How to remove one received letter again.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Handle {
    Sqs(String),
    /// Line number in the NDJSON file.
    Line(usize),
}

/// One message read from the queue: the letter, or why it is not one.
#[derive(Debug)]
pub struct Received {
    pub handle: Handle,
    pub letter: Result<DeadLetter, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LettersError {
    #[error("SQS call on {queue} failed")]
    Sqs {
        queue: String,
        #[source]
        source: Box<aws_sdk_sqs::Error>,
    },
    #[error("{path}: I/O failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the letters are.
pub enum Letters {
    Sqs { client: aws_sdk_sqs::Client, queue_url: String },
    File { path: PathBuf },
}

impl Letters {
    pub fn location(&self) -> String {
        match self {
            Self::Sqs { queue_url, .. } => queue_url.clone(),
            Self::File { path } => format!("file://{}", path.display()),
        }
    }

    /// Up to `max` letters. SQS messages stay invisible to others for
    /// `visibility_secs`, which must cover the run.
    ///
    /// # Errors
    /// [`LettersError`] when the queue or file cannot be read.
    pub async fn receive(
        &self,
        max: usize,
        visibility_secs: i32,
    ) -> Result<Vec<Received>, LettersError> {
        match self {
            Self::Sqs { client, queue_url } => {
                let err = |e: aws_sdk_sqs::Error| LettersError::Sqs {
                    queue: queue_url.clone(),
                    source: Box::new(e),
                };
                let mut out = Vec::new();
                while out.len() < max {
                    let want = (max - out.len()).min(SQS_BATCH) as i32;
                    let got = client
                        .receive_message()
                        .queue_url(queue_url)
                        .max_number_of_messages(want)
                        .visibility_timeout(visibility_secs)
                        .send()
                        .await
                        .map_err(|e| err(e.into()))?;
                    let messages = got.messages.unwrap_or_default();
                    if messages.is_empty() {
                        break;
                    }
                    for m in messages {
                        let Some(handle) = m.receipt_handle else { continue };
                        let body = m.body.unwrap_or_default();
                        out.push(Received {
                            handle: Handle::Sqs(handle),
                            letter: serde_json::from_str(&body).map_err(|e| e.to_string()),
                        });
                    }
                }
                Ok(out)
            }
            Self::File { path } => {
                let text = match tokio::fs::read_to_string(path).await {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(source) => return Err(LettersError::Io { path: path.clone(), source }),
                };
                Ok(text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                    .take(max)
                    .map(|(i, l)| Received {
                        handle: Handle::Line(i),
                        letter: serde_json::from_str(l).map_err(|e| e.to_string()),
                    })
                    .collect())
            }
        }
    }

    /// Makes received SQS messages visible again at once (after a dry run).
    ///
    /// # Errors
    /// [`LettersError`] when SQS refuses.
    pub async fn release(&self, handles: &[Handle]) -> Result<(), LettersError> {
        let Self::Sqs { client, queue_url } = self else { return Ok(()) };
        let sqs: Vec<&str> = handles
            .iter()
            .filter_map(|h| match h {
                Handle::Sqs(r) => Some(r.as_str()),
                Handle::Line(_) => None,
            })
            .collect();
        for chunk in sqs.chunks(SQS_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(*h)
                        .visibility_timeout(0)
                        .build()
                        .ok()
                })
                .collect();
            client
                .change_message_visibility_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| LettersError::Sqs {
                    queue: queue_url.clone(),
                    source: Box::new(e.into()),
                })?;
        }
        Ok(())
    }

    /// Removes the letters of `remove` and puts `replace` in place of theirs
    /// (a refreshed reason). SQS: the replacement is sent first, then the old
    /// message deleted (a crash in between leaves both, which the next run
    /// deduplicates). File: one atomic rewrite.
    ///
    /// # Errors
    /// [`LettersError`]; nothing is removed that was not replaced first.
    pub async fn settle(
        &self,
        remove: &[Handle],
        replace: &HashMap<Handle, DeadLetter>,
    ) -> Result<(), LettersError> {
        match self {
            Self::Sqs { client, queue_url } => {
                let err = |e: aws_sdk_sqs::Error| LettersError::Sqs {
                    queue: queue_url.clone(),
                    source: Box::new(e),
                };
                for letter in replace.values() {
                    let body = serde_json::to_string(letter).unwrap_or_default();
                    client
                        .send_message()
                        .queue_url(queue_url)
                        .message_body(body)
                        .send()
                        .await
                        .map_err(|e| err(e.into()))?;
                }
                let handles: Vec<&str> = remove
                    .iter()
                    .chain(replace.keys())
                    .filter_map(|h| match h {
                        Handle::Sqs(r) => Some(r.as_str()),
                        Handle::Line(_) => None,
                    })
                    .collect();
                for chunk in handles.chunks(SQS_BATCH) {
                    let entries = chunk
                        .iter()
                        .enumerate()
                        .filter_map(|(i, h)| {
                            aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                                .id(i.to_string())
                                .receipt_handle(*h)
                                .build()
                                .ok()
                        })
                        .collect();
                    client
                        .delete_message_batch()
                        .queue_url(queue_url)
                        .set_entries(Some(entries))
                        .send()
                        .await
                        .map_err(|e| err(e.into()))?;
                }
                Ok(())
            }
            Self::File { path } => {
                let io = |source| LettersError::Io { path: path.clone(), source };
                let text = match tokio::fs::read_to_string(path).await {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(source) => return Err(io(source)),
                };
                let mut out = String::with_capacity(text.len());
                for (i, line) in text.lines().enumerate() {
                    let h = Handle::Line(i);
                    if let Some(letter) = replace.get(&h) {
                        out.push_str(&serde_json::to_string(letter).unwrap_or_default());
                        out.push('\n');
                    } else if !remove.contains(&h) && !line.trim().is_empty() {
                        out.push_str(line);
                        out.push('\n');
                    }
                }
                let tmp = path.with_extension("redrive.tmp");
                tokio::fs::write(&tmp, out).await.map_err(io)?;
                tokio::fs::rename(&tmp, path).await.map_err(io)
            }
        }
    }
}
