//! The simulated event source mapping: where the next batch starts, how
//! long it is on a retry, and which batches it gave up on.

use super::world::{KinesisRecord, key_of};
use std::collections::BTreeSet;

use anyhow::Context;
use kinesis_bigquery::delivery::ShardOutcome;

pub struct Feed<'a> {
    log: &'a [KinesisRecord],
    /// The first Kinesis record not checkpointed.
    pub checkpoint: usize,
    /// The length of the batch to retry, after a failed invocation.
    pub retry_len: Option<usize>,
    /// Records of batches the mapping discarded (skipped past).
    pub skipped: BTreeSet<String>,
}

/// What an invocation's answer did to the feed.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// The whole batch landed.
    Done,
    /// A partial batch response: the mapping retries from the first record
    /// not landed.
    Partial,
    /// The invocation failed (crash, given back): the batch is retried.
    Failed,
}

impl<'a> Feed<'a> {
    pub fn new(log: &'a [KinesisRecord]) -> Self {
        Self { log, checkpoint: 0, retry_len: None, skipped: BTreeSet::new() }
    }

    pub fn drained(&self) -> bool {
        self.checkpoint >= self.log.len()
    }

    /// Kinesis records left.
    pub fn left(&self) -> usize {
        self.log.len().saturating_sub(self.checkpoint)
    }

    /// The mapping gives up on the next `len` records (MaximumRetryAttempts,
    /// MaximumRecordAgeInSeconds) and moves past them.
    pub fn discard(&mut self, len: usize) {
        let to = (self.checkpoint + len).min(self.log.len());
        for k in self.log.iter().take(to).skip(self.checkpoint) {
            self.skipped.extend(k.users.iter().map(|u| key_of(&u.position)));
        }
        self.checkpoint = to;
        self.retry_len = None;
    }

    /// Applies the answer to a batch of `len` Kinesis records (`parents`:
    /// per record of the batch, its Kinesis record).
    pub fn answer(
        &mut self,
        outcome: &ShardOutcome,
        len: usize,
        parents: &[usize],
    ) -> anyhow::Result<Step> {
        if outcome.gave_back.is_some() {
            self.retry_len = Some(len);
            return Ok(Step::Failed);
        }
        match outcome.first_not_landed() {
            None => {
                self.checkpoint += len;
                self.retry_len = None;
                Ok(Step::Done)
            }
            Some(i) => {
                let parent = parents.get(i).copied().context("outcome index")?;
                if parent == self.checkpoint {
                    self.retry_len = Some(len);
                } else {
                    self.checkpoint = parent;
                    self.retry_len = None;
                }
                Ok(Step::Partial)
            }
        }
    }
}
