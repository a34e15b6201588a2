//! What became of each record of a shard batch: where it landed, or that it
//! did not. The handler turns the first record not landed into the partial
//! batch response (DESIGN.md, invariant 5): Kinesis retries from there.

/// Where a record landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Landing {
    /// An earlier invocation delivered it (at or before the state's
    /// `last_position`); nothing was done this time.
    Earlier,
    /// A row in the BigQuery table, acknowledged (or proven by the stream's
    /// finalized row count).
    Table,
    /// A message in the dead-letter queue, accepted by the queue.
    DeadLetter,
    /// Part of a spillover object, written; `backfill` replays it.
    Spill,
}

/// One record's fate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    Landed(Landing),
    /// Not safely anywhere: Kinesis must deliver it again.
    NotLanded,
}

impl RecordOutcome {
    pub fn is_landed(&self) -> bool {
        matches!(self, Self::Landed(_))
    }
}

/// Why a shard batch was handed back to Kinesis as a whole (beyond what an
/// earlier commit of this invocation already covered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GaveBack {
    /// Another writer changed the shard's state first (lost compare-and-swap).
    Conflict,
    /// The state store could not be read or written.
    StateStore(String),
    /// The stored state is unreadable; nothing is written over it.
    CorruptState(String),
    /// A test crash point stopped the invocation (never in production).
    Crashed(String),
    /// `UNKNOWN_FIELDS=add`: records need columns the writers do not see
    /// yet (or adding them failed); Kinesis retries the batch.
    SchemaPending(String),
    /// BigQuery is out of reach and the shard's claim is not clean: an
    /// earlier attempt's appends may still land, and only BigQuery can say
    /// which records they hold (`delivery::outage`).
    InDoubtUnreachable(String),
}

/// The result of [`deliver`](super::deliver) for one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardOutcome {
    /// One per record of the batch, in the batch's order.
    pub records: Vec<RecordOutcome>,
    /// Set when the batch (or its uncommitted part) was given back.
    pub gave_back: Option<GaveBack>,
    pub stats: DeliveryStats,
}

/// Counts for the invocation's summary line and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    pub rows_appended: usize,
    pub requests: usize,
    pub dead_lettered: usize,
    pub spilled: usize,
    pub state_writes: usize,
    pub rotations: usize,
    pub finalizes: usize,
    /// State writes that only claimed the stream's tail before the first
    /// append (the price of invariant 7 on the common path).
    pub claims: usize,
    /// Rows found in the stream from a batch the event source mapping
    /// discarded (they stay in the table; logged with their range).
    pub discarded_landed: usize,
    /// Records spilled because their appends were in doubt on a stream the
    /// service lost: the backfill replays them at least once.
    pub lost_in_doubt: usize,
}

impl ShardOutcome {
    /// The index (into the batch) of the first record not landed, in batch
    /// order: where the partial batch response must start.
    pub fn first_not_landed(&self) -> Option<usize> {
        self.records.iter().position(|r| !r.is_landed())
    }

    pub fn count(&self, landing: Landing) -> usize {
        self.records.iter().filter(|r| **r == RecordOutcome::Landed(landing)).count()
    }
}

/// Per record of a batch of `n`, from the outcome of each item (the record
/// `items[i].index`); a repeat (batch index, item) shares its item's.
pub(crate) fn per_record(
    n: usize,
    items: &[super::prepare::Item<'_>],
    by_item: &[RecordOutcome],
    repeats: &[(usize, usize)],
) -> Vec<RecordOutcome> {
    let mut records = vec![RecordOutcome::NotLanded; n];
    let of_items = items.iter().map(|item| item.index).zip(by_item);
    let of_repeats = repeats.iter().filter_map(|&(index, item)| Some((index, by_item.get(item)?)));
    for (index, outcome) in of_items.chain(of_repeats) {
        if let Some(slot) = records.get_mut(index) {
            *slot = *outcome;
        }
    }
    records
}
