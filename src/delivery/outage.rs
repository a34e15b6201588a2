//! Delivery while BigQuery is out of reach (issue 12, scenario 4): the
//! writer side (client, table schema, encoder) could not be built, so no
//! record can be encoded. The records are spilled raw — the spillover needs
//! no schema, and the backfill encodes them against the live one later —
//! and Kinesis is told they landed, so the shard keeps moving.
//!
//! - Records the source could not read (corrupt KPL aggregates) are dead
//!   letters, as on the connected path.
//! - At-least-once and CDC: one raw spill object, no state.
//! - Exactly-once: the spill fits the invariants only as far as the shard's
//!   claim allows. With [`Claim::Clean`] no earlier writer can put a row at
//!   or after `next_offset`, so the spilled records take no offset and one
//!   compare-and-swap moves `last_position` past them and lists the object
//!   (`next_offset` stays: the stream holds none of them). With a claim of
//!   rows that this batch continues, an earlier attempt of it may still be
//!   writing: the mapping needs no schema (only bytes that are not a JSON
//!   object, and the intent, take no offset), so each record is spilled
//!   `in_doubt` with its offset in the claimed stream, as the connected path
//!   does when its finalize gets no answer (DESIGN.md, invariant 6); the
//!   backfill finalizes the stream and skips what is below its row count.
//!   Any other claim (a batch after a discarded one, a finalized stream, a
//!   claim of an older format) needs a fence to say what landed: the batch
//!   goes back to Kinesis ([`GaveBack::InDoubtUnreachable`]).
//! - Records the mapping gives no row are dead-lettered first, up to the
//!   first the queue refuses; nothing past that is spilled or listed.

use super::crash::{self, Boundary, CrashPoints};
use super::outcome::{DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
use super::plan::{self, Kind, Slot};
use super::prepare::{self, Input, Item};
use super::sinks::{self, SpillOf};
use super::spill_manifest::{SPILL_LIST_CAP, SpillManifest};
use super::state::{Claim, ClaimedRows, ShardState, fingerprint, state_key};
use super::store::{StateStore, StoreError, Version};
use super::{DeliveryMode, ShardBatch};
use crate::dlq::{Cause, DeadLetter, DeadLetterSink};
use crate::source::Position;
use crate::spill::{SpillReason, SpillSink, SpilledRecord};
use crate::table::TableName;

/// What delivery can use without BigQuery.
#[derive(Clone, Copy)]
pub struct OfflineSinks<'a> {
    pub mode: &'a DeliveryMode,
    pub spill: &'a dyn SpillSink,
    pub dlq: &'a dyn DeadLetterSink,
}

/// Delivers one shard batch without BigQuery: raw spill, dead letters for
/// unreadable records, and (exactly-once) the state write that lists the
/// spill. `error` says why BigQuery is out of reach (kept in the object).
/// Never fails as a whole: the outcome says per record what landed.
pub async fn deliver_offline(
    batch: ShardBatch<'_>,
    sinks: OfflineSinks<'_>,
    error: &str,
) -> ShardOutcome {
    deliver_offline_with(batch, sinks, error, None).await
}

/// [`deliver_offline`] with a crash-point hook (the crash matrix stops an
/// offline invocation at each dead-letter, spill and state-write boundary);
/// production passes `None`.
pub async fn deliver_offline_with(
    batch: ShardBatch<'_>,
    sinks: OfflineSinks<'_>,
    error: &str,
    crash: Option<&CrashPoints>,
) -> ShardOutcome {
    let (inputs, repeats) = prepare::order(super::inputs(&batch));
    let items: Vec<Item<'_>> =
        inputs.into_iter().map(|(index, input)| item(index, input)).collect();
    let mut run = Offline {
        batch: &batch,
        sinks,
        landing: vec![None; items.len()],
        items,
        stats: DeliveryStats::default(),
        crash,
    };
    let result = match sinks.mode {
        DeliveryMode::ExactlyOnce { state } => run.exactly_once(state.as_ref(), error).await,
        DeliveryMode::AtLeastOnce | DeliveryMode::Cdc => run.settle(None, error).await.map(|_| ()),
    };
    if matches!(result, Err(GaveBack::Crashed(_))) {
        // A killed invocation answers nothing: Kinesis retries the batch.
        run.forget_landings();
    }
    run.finish(&repeats, result.err())
}

/// An item with no encoding: what the outage mode knows of a record.
fn item(index: usize, input: Input<'_>) -> Item<'_> {
    match input {
        Input::Record(record) => Item {
            index,
            position: record.position.clone(),
            record: Some(record),
            kind: Kind::Good,
            row: bytes::Bytes::new(),
            letter: None,
            waits: false,
        },
        Input::Bad { position, letter } => Item {
            index,
            position,
            record: None,
            kind: Kind::PureBad,
            row: bytes::Bytes::new(),
            letter: Some(*letter),
            waits: false,
        },
    }
}

struct Offline<'a, 'b> {
    batch: &'b ShardBatch<'a>,
    sinks: OfflineSinks<'b>,
    items: Vec<Item<'a>>,
    landing: Vec<Option<Landing>>,
    stats: DeliveryStats,
    crash: Option<&'b CrashPoints>,
}

impl Offline<'_, '_> {
    async fn exactly_once(&mut self, store: &dyn StateStore, error: &str) -> Result<(), GaveBack> {
        let key = state_key(self.batch.table, self.batch.stream_arn, self.batch.shard_id);
        let (state, version) = match store.load(&key).await.map_err(store_error)? {
            Some((bytes, version)) => {
                let state = ShardState::from_json(&bytes)
                    .map_err(|e| GaveBack::CorruptState(format!("{key}: {e}")))?;
                (state, Some(version))
            }
            None => (ShardState::initial(), None),
        };
        for (item, landing) in self.items.iter().zip(&mut self.landing) {
            if state.last_position.as_ref().is_some_and(|last| item.position <= *last) {
                *landing = Some(Landing::Earlier);
            }
        }
        if self.landing.iter().all(Option::is_some) {
            return Ok(());
        }
        // Kinds from the bytes alone: a record that is not a JSON object
        // takes no offset under any schema; every other one takes the next.
        let kinds: Vec<(&Position, Kind)> =
            self.items.iter().map(|it| (&it.position, kind_of(it))).collect();
        let slots = plan::map(&state, &kinds);
        match &state.claim {
            Claim::Clean => {
                let spilled = self.settle(Some(&state), error).await?;
                // None of these records takes an offset: the stream holds none of them.
                let no_rows = vec![Slot::Excluded; slots.len()];
                self.commit(store, &key, (state, version), &no_rows, spilled).await
            }
            Claim::Rows(rows)
                if state.stream_end.is_none() && self.continues(&slots, &state, rows) =>
            {
                let spilled = self.spill_in_doubt(&state, &slots, error).await?;
                self.commit(store, &key, (state, version), &slots, spilled).await
            }
            _ => {
                tracing::warn!(
                    shard_id = self.batch.shard_id,
                    write_stream = %state.write_stream,
                    "BigQuery is out of reach and an earlier attempt's appends may be in flight: the batch goes back to Kinesis"
                );
                Err(GaveBack::InDoubtUnreachable(error.to_string()))
            }
        }
    }

    /// Whether the record this batch maps at `next_offset` is the first the
    /// claim holds: the claimed rows are this batch's, at the offsets the
    /// mapping gives them (a batch that starts elsewhere follows a discarded
    /// one; only a fence can say what of that one landed).
    fn continues(&self, slots: &[Slot], state: &ShardState, rows: &ClaimedRows) -> bool {
        let first =
            slots.iter().zip(&self.items).find(|(s, _)| s.offset() == Some(state.next_offset));
        first.is_some_and(|(_, item)| rows.get(0) == Some(&fingerprint(&item.position)))
    }

    /// An earlier attempt of this batch claimed its rows and may still be
    /// writing them: each record is spilled with its offset in the claimed
    /// stream (`in_doubt`), so the backfill finalizes the stream and skips
    /// those below its row count (DESIGN.md, invariant 6) — what the
    /// connected path does when BigQuery cannot answer its finalize. Records
    /// that take no offset are dead letters first.
    async fn spill_in_doubt(
        &mut self,
        state: &ShardState,
        slots: &[Slot],
        error: &str,
    ) -> Result<Option<String>, GaveBack> {
        let mut which = Vec::new();
        let mut letters = Vec::new();
        for (i, (slot, item)) in slots.iter().zip(&self.items).enumerate() {
            let pending = self.landing.get(i).is_some_and(Option::is_none);
            if *slot != Slot::Excluded || !pending {
                continue;
            }
            if let Some(l) = letter(item, Some(state), self.batch.table) {
                which.push(i);
                letters.push(l);
            }
        }
        let limit = self.send_letters(&which, &letters).await?;
        let records: Vec<(usize, SpilledRecord)> = slots
            .iter()
            .zip(&self.items)
            .enumerate()
            .take(limit)
            .filter(|(i, _)| self.landing.get(*i).is_some_and(Option::is_none))
            .filter_map(|(i, (slot, it))| {
                let record = it.record?;
                Some((i, SpilledRecord::from_source(record, Some(slot.offset()?))))
            })
            .collect();
        let stream = Some(state.write_stream.clone());
        self.spill(records, SpillReason::InDoubt, stream, error).await
    }

    /// Dead-letters what gets no row (under any schema, or by the intent),
    /// then spills the rest raw, up to the
    /// first letter the queue refused (what follows it goes back to Kinesis,
    /// so exactly-once never lists a spilled record past the landed prefix).
    /// Returns the spill object's path.
    async fn settle(
        &mut self,
        state: Option<&ShardState>,
        error: &str,
    ) -> Result<Option<String>, GaveBack> {
        let mut which = Vec::new();
        let mut letters = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            if self.landing.get(i).is_some_and(Option::is_some) {
                continue;
            }
            if let Some(l) = letter(item, state, self.batch.table) {
                which.push(i);
                letters.push(l);
            }
        }
        let limit = self.send_letters(&which, &letters).await?;
        let records: Vec<(usize, SpilledRecord)> = self
            .items
            .iter()
            .enumerate()
            .take(limit)
            .filter(|(i, _)| self.landing.get(*i).is_some_and(Option::is_none))
            .filter_map(|(i, it)| it.record.map(|r| (i, SpilledRecord::from_source(r, None))))
            .collect();
        self.spill(records, SpillReason::RetriesExhausted, None, error).await
    }

    /// Sends `letters` (for items `which`); returns the index of the first
    /// item whose letter the queue refused (`items.len()` when none was).
    async fn send_letters(
        &mut self,
        which: &[usize],
        letters: &[DeadLetter],
    ) -> Result<usize, GaveBack> {
        let (stats, landing) = (&mut self.stats, &mut self.landing);
        let accepted = |k: usize| {
            if let Some(l) = which.get(k).and_then(|&i| landing.get_mut(i)) {
                stats.dead_lettered += 1;
                *l = Some(Landing::DeadLetter);
            }
        };
        let took = sinks::send_letters(self.sinks.dlq, self.crash, letters, accepted)
            .await
            .map_err(crashed)?;
        Ok(sinks::first_refused(which, &took).unwrap_or(self.items.len()))
    }

    /// Passes a crash point (test hook).
    fn pass(&self, boundary: Boundary) -> Result<(), GaveBack> {
        crash::pass(self.crash, boundary).map_err(crashed)
    }

    /// Only what an earlier invocation delivered counts as landed.
    fn forget_landings(&mut self) {
        for l in &mut self.landing {
            if *l != Some(Landing::Earlier) {
                *l = None;
            }
        }
    }

    /// One object of `records` (batch index, record); `write_stream` when
    /// they carry offsets in it.
    async fn spill(
        &mut self,
        records: Vec<(usize, SpilledRecord)>,
        reason: SpillReason,
        write_stream: Option<String>,
        error: &str,
    ) -> Result<Option<String>, GaveBack> {
        if records.is_empty() {
            return Ok(None);
        }
        let (which, records): (Vec<usize>, Vec<SpilledRecord>) = records.into_iter().unzip();
        let error = format!("BigQuery out of reach: {error}");
        let what = SpillOf { records, reason, error, write_stream };
        let mode = self.sinks.mode.write_mode();
        let stored = sinks::write_spill(self.sinks.spill, self.crash, self.batch, mode, what)
            .await
            .map_err(crashed)?;
        let Some(stored) = stored else { return Ok(None) };
        self.pass(Boundary::AfterSpill)?;
        self.stats.spilled += which.len();
        for i in which {
            if let Some(l) = self.landing.get_mut(i) {
                *l = Some(Landing::Spill);
            }
        }
        Ok(Some(stored.path))
    }

    /// One compare-and-swap: `last_position` moves to the end of the landed
    /// prefix, `next_offset` past the rows `slots` give it, the object is
    /// listed, and a claim keeps only its rows past the new `next_offset`.
    /// Until it succeeds only what an earlier invocation delivered counts
    /// as landed.
    async fn commit(
        &mut self,
        store: &dyn StateStore,
        key: &str,
        (state, version): (ShardState, Option<Version>),
        slots: &[Slot],
        spilled: Option<String>,
    ) -> Result<(), GaveBack> {
        let landed = self.landing.iter().take_while(|l| l.is_some()).count();
        let positions: Vec<&Position> = self.items.iter().map(|i| &i.position).collect();
        let mut next = plan::advance(&state, &positions, slots, landed);
        if let Claim::Rows(rows) = &state.claim {
            let skip = usize::try_from(next.next_offset - state.next_offset).unwrap_or(0);
            next.claim = Claim::of_rows(rows.slice(skip, usize::MAX));
        }
        if let Some(path) = spilled {
            next.spills.push(path.clone());
            compact(store, key, &mut next, &path).await.map_err(store_error)?;
        }
        if next == state {
            return Ok(());
        }
        let bytes = next.to_json();
        self.pass(Boundary::BeforeStateWrite)?;
        let written = match &version {
            Some(v) => store.replace(key, &bytes, v).await,
            None => store.create(key, &bytes).await,
        };
        match written {
            Ok(_) => {
                self.stats.state_writes += 1;
                self.pass(Boundary::AfterStateWrite)
            }
            Err(e) => {
                // Not durable: only what the loaded state covers has landed.
                self.forget_landings();
                Err(store_error(e))
            }
        }
    }

    fn finish(self, repeats: &[(usize, usize)], gave_back: Option<GaveBack>) -> ShardOutcome {
        let by_item: Vec<RecordOutcome> = self
            .landing
            .iter()
            .map(|l| l.map_or(RecordOutcome::NotLanded, RecordOutcome::Landed))
            .collect();
        let n = self.batch.records.len();
        let records = super::outcome::per_record(n, &self.items, &by_item, repeats);
        ShardOutcome { records, gave_back, stats: self.stats }
    }
}

/// Keeps the inline spill list bounded however long the outage: past
/// [`SPILL_LIST_CAP`], every path but this invocation's own moves into a
/// new manifest, written before the state that names it.
async fn compact(
    store: &dyn StateStore,
    key: &str,
    next: &mut ShardState,
    own: &str,
) -> Result<(), StoreError> {
    if next.spills.len() <= SPILL_LIST_CAP {
        return Ok(());
    }
    let (own, older): (Vec<String>, Vec<String>) =
        std::mem::take(&mut next.spills).into_iter().partition(|p| p == own);
    next.spills = own;
    let manifest = SpillManifest { previous: next.spill_manifest.clone(), spills: older };
    next.spill_manifest = Some(manifest.write(store, key).await?);
    Ok(())
}

/// What the mapping makes of an item without a schema.
fn kind_of(item: &Item<'_>) -> Kind {
    match item.record {
        Some(r) if !prepare::bad_by_bytes(&r.data) => Kind::Good,
        _ => Kind::PureBad,
    }
}

/// The dead letter of an item the mapping gives no row: its own (a corrupt
/// aggregate), one for bytes that are not a JSON object, or the intent's
/// (exactly-once); `None` for a record that may become a row.
fn letter(item: &Item<'_>, state: Option<&ShardState>, table: &TableName) -> Option<DeadLetter> {
    if let Some(l) = &item.letter {
        return Some(l.clone());
    }
    let record = item.record?;
    if prepare::bad_by_bytes(&record.data) {
        return Some(DeadLetter::of(record, table, Cause::NotJson));
    }
    let exclusion = state?.excluded(&item.position)?;
    prepare::letter_for_excluded(item, Some(exclusion), table)
}

fn store_error(e: StoreError) -> GaveBack {
    match e {
        StoreError::Conflict { .. } => GaveBack::Conflict,
        other => GaveBack::StateStore(other.to_string()),
    }
}

fn crashed(c: crash::Crash) -> GaveBack {
    GaveBack::Crashed(c.to_string())
}
