//! The exactly-once driver for one shard batch (DESIGN.md, "Exactly-once:
//! the invariants"; `WRITE_MODE=exactly_once`).
//!
//! One invocation: load the shard's state (or create the placeholder); from
//! a clean claim, stream the first round (`stream.rs`: the claim from
//! positions, then rows appended while later records encode); otherwise
//! encode every record first; dead-letter the records that get no row (those refused only under
//! today's schema once no earlier attempt can have written them); then
//! rounds of
//! - **rotate** when the state's stream is finalized: rows below its row
//!   count are in the table, the rest continue in a new COMMITTED stream whose
//!   name is persisted before anything is appended to it;
//! - **persist new exclusions** (records the current schema refuses, rows
//!   BigQuery rejected) as an intent, but only where the stream's end is known
//!   exactly, so no earlier attempt can have put a row where the new mapping
//!   puts another;
//! - **append** the rows of the mapping, pipelined, and judge the answers:
//!   all in; rows rejected at a known end; not written past a known end (→
//!   spillover); or unknown (`ALREADY_EXISTS` at the tail, answers lost) →
//!   **resolve** with `FinalizeWriteStream`, keep its row count in the state,
//!   and rotate.
//!
//! Then one compare-and-swap commits what landed. A lost CAS gives the batch
//! back. Kinesis is told "landed" only for what the last successful state
//! write covers.

mod claim;
mod lost;
mod round;
mod settle;
mod stream;

use std::sync::Arc;

use tokio::time::Instant;

use super::crash::{self, Boundary, Crash};
use super::outcome::{DeliveryStats, GaveBack, Landing, RecordOutcome, ShardOutcome};
use super::plan::{self, Kind, Slot};
use super::prepare::{self, Input, Item};
use super::spill_manifest::{SPILL_LIST_CAP, SpillManifest};
use super::state::{Claim, ShardState, state_key};
use super::store::{StateStore, StoreError, Version};
use super::{DeliveryDeps, ShardBatch};
use crate::rows::Encoder;
use crate::source::Position;

/// Runs the protocol for one shard batch. `awaiting`: batch indexes of
/// records that need columns the writers do not see yet (the schema step's
/// [`crate::evolve::EvolveReport::awaiting`]).
pub(crate) async fn deliver(
    batch: &ShardBatch<'_>,
    deps: &DeliveryDeps,
    store: &dyn StateStore,
    deadline: Instant,
    awaiting: &[usize],
) -> ShardOutcome {
    let encoder = deps.encoder.snapshot();
    let (inputs, repeats) = prepare::order(super::inputs(batch));
    let mut run = Run::new(batch, deps, store, repeats, encoder, deadline);
    let result = run.go(inputs, awaiting).await;
    if let Err(GaveBack::Crashed(_)) = &result {
        // A crashed container's connections die with it.
        deps.forget_appenders().await;
    }
    run.finish(result.err())
}

enum Flow {
    Continue,
    Done,
}

struct Run<'a, 'b> {
    batch: &'b ShardBatch<'a>,
    deps: &'b DeliveryDeps,
    /// The shard states (`DeliveryMode::ExactlyOnce`'s store).
    store: &'b dyn StateStore,
    items: Vec<Item<'a>>,
    repeats: Vec<(usize, usize)>,
    encoder: Arc<Encoder>,
    /// Appends and finalize stop here; the time after it is for spill + commit.
    work_deadline: Instant,
    key: String,
    state: ShardState,
    version: Option<Version>,
    /// `last_position` of the last state loaded or written: what Kinesis may
    /// be told has landed.
    durable: Option<Position>,
    /// An offset at or after which `state.write_stream` holds no row, when
    /// this invocation knows one: exactly the end after acknowledged appends,
    /// a bound after an `OUT_OF_RANGE` probe. Where it equals `next_offset`
    /// the mapping may change without colliding with an earlier attempt.
    known_end: Option<i64>,
    /// Items at or after this index are not handled in this invocation.
    limit: usize,
    landing: Vec<Option<Landing>>,
    /// Items whose dead letter the queue accepted in this invocation.
    lettered: Vec<bool>,
    /// Set when the records after the table-landed prefix were spilled as
    /// definitely not written: the stream ends here.
    unwritten_end: Option<i64>,
    /// Spillover objects written in this invocation: (key path, last position).
    spilled: Vec<(String, Position)>,
    /// This invocation holds the claim on `state.write_stream` (it wrote it
    /// from a clean state, or with a new stream): no other writer can put a
    /// row at or after `next_offset`, so every end it learns is final.
    claimed: bool,
    /// Past the highest offset this invocation sent a request for in
    /// `state.write_stream`: rows up to here may land even unanswered.
    sent_end: i64,
    /// (offset, item) of every row sent to `state.write_stream`: the claim
    /// keeps naming rows sent under a mapping that has since moved on.
    sent_rows: Vec<(i64, usize)>,
    /// A stream found gone in this invocation: the commit marks it ended so
    /// the next invocation starts in a new one.
    lost: Option<String>,
    /// Records in doubt on the lost stream could not be spilled: the state
    /// must keep the stream and its claim for the next attempt.
    lost_unsettled: bool,
    /// The batch starts at an earlier attempt's claim that this invocation
    /// has not fenced: that attempt's rows continue this batch's mapping.
    inherited: bool,
    stats: DeliveryStats,
}

impl<'a, 'b> Run<'a, 'b> {
    fn new(
        batch: &'b ShardBatch<'a>,
        deps: &'b DeliveryDeps,
        store: &'b dyn StateStore,
        repeats: Vec<(usize, usize)>,
        encoder: Arc<Encoder>,
        deadline: Instant,
    ) -> Self {
        let n = 0;
        Self {
            batch,
            deps,
            store,
            items: Vec::new(),
            repeats,
            encoder,
            work_deadline: deadline.checked_sub(deps.spill_reserve).unwrap_or(deadline),
            key: state_key(batch.table, batch.stream_arn, batch.shard_id),
            state: ShardState::initial(),
            version: None,
            durable: None,
            known_end: None,
            limit: n,
            landing: vec![None; n],
            lettered: vec![false; n],
            unwritten_end: None,
            spilled: Vec::new(),
            claimed: false,
            sent_end: 0,
            sent_rows: Vec::new(),
            lost: None,
            lost_unsettled: false,
            inherited: false,
            stats: DeliveryStats::default(),
        }
    }

    fn hook(&self) -> Option<&crash::CrashPoints> {
        self.deps.crash.as_deref()
    }

    fn pass(&self, b: Boundary) -> Result<(), GaveBack> {
        crash::pass(self.hook(), b).map_err(crashed)
    }

    /// Every item of the batch, encoded; `awaiting` marks those that wait
    /// for columns.
    fn install(&mut self, mut items: Vec<Item<'a>>, awaiting: &[usize]) {
        for item in &mut items {
            // Refused now, only for columns still propagating: spilled, not lettered.
            item.waits =
                item.kind == Kind::SchemaBad && awaiting.binary_search(&item.index).is_ok();
        }
        let n = items.len();
        self.items = items;
        self.limit = n;
        self.landing = vec![None; n];
        self.lettered = vec![false; n];
    }

    async fn go(
        &mut self,
        inputs: Vec<(usize, Input<'a>)>,
        awaiting: &[usize],
    ) -> Result<(), GaveBack> {
        self.load(!inputs.is_empty()).await?;
        let mut rounds = self.deps.max_rounds.max(1);
        let mut done = false;
        match self.streamable(&inputs) {
            // The common case: the first round streams (`stream.rs`).
            Some(claim) => {
                if let Some(flow) = self.stream_first(inputs, claim, awaiting).await? {
                    rounds -= 1;
                    done = matches!(flow, Flow::Done);
                }
            }
            None => {
                let items = prepare::prepare_ordered(
                    inputs,
                    &self.encoder,
                    &self.deps.limits,
                    self.batch.table,
                );
                self.install(items, awaiting);
            }
        }
        if self.items.is_empty() {
            return Ok(());
        }
        for _ in 0..rounds {
            if done {
                break;
            }
            if let Flow::Done = self.round().await? {
                done = true;
            }
        }
        if !done {
            tracing::warn!(
                shard_id = self.batch.shard_id,
                "round limit reached; the rest goes back"
            );
        }
        self.commit().await
    }

    async fn load(&mut self, any: bool) -> Result<(), GaveBack> {
        match self.store.load(&self.key).await {
            Ok(Some((bytes, version))) => {
                self.state = ShardState::from_json(&bytes)
                    .map_err(|e| GaveBack::CorruptState(format!("{}: {e}", self.key)))?;
                self.version = Some(version);
                self.durable = self.state.last_position.clone();
                Ok(())
            }
            Ok(None) => {
                if !any {
                    return Ok(());
                }
                self.write_state(ShardState::initial()).await
            }
            Err(e) => Err(store_error(e)),
        }
    }

    /// Positions and kinds of the items handled in this invocation.
    fn slots(&self) -> Vec<Slot> {
        let items: Vec<(&Position, Kind)> =
            self.items.iter().take(self.limit).map(|i| (&i.position, i.kind)).collect();
        plan::map(&self.state, &items)
    }

    fn positions(&self) -> Vec<&Position> {
        self.items.iter().take(self.limit).map(|i| &i.position).collect()
    }

    /// One CAS write of what landed.
    async fn commit(&mut self) -> Result<(), GaveBack> {
        let slots = self.slots();
        let landed = self.landing.iter().take(self.limit).take_while(|l| l.is_some()).count();
        let positions = self.positions();
        let mut next = plan::advance(&self.state, &positions, &slots, landed);
        if let Some(end) = self.unwritten_end
            && next.next_offset > end
        {
            // Rows past the end were spilled, not written: the mapping
            // restarts at the end.
            next.next_offset = end;
        }
        self.list_spills(&mut next);
        if self.claimed {
            next.claim = self.claim_after(&next);
        }
        if self.lost.as_ref().is_some_and(|l| *l == next.write_stream) {
            let carried = if next.claim == self.state.claim {
                self.carried_claim(&next)
            } else {
                next.claim.clone()
            };
            // Records an earlier attempt claimed past this batch, or that
            // could not be spilled, are in doubt on the lost stream: the
            // state keeps it and its claim, so the attempt that delivers
            // them learns it is lost and spills them too (never writes
            // them again as if they were not in the table).
            let in_doubt = self.lost_unsettled || matches!(carried, Claim::Rows(_));
            if !in_doubt {
                // Nothing more can land in it: the next invocation rotates first.
                next.stream_end = Some(next.next_offset);
                next.claim = Claim::Clean;
            }
        }
        if next == self.state {
            return Ok(());
        }
        self.write_state(next).await
    }

    async fn write_state(&mut self, mut next: ShardState) -> Result<(), GaveBack> {
        if next.claim == self.state.claim && next.write_stream == self.state.write_stream {
            // The caller kept the claim: keep it true of the state written
            // (which rows may be at or after its next_offset).
            next.claim = self.carried_claim(&next);
        }
        self.list_spills(&mut next);
        self.compact_spills(&mut next).await?;
        self.pass(Boundary::BeforeStateWrite)?;
        let bytes = next.to_json();
        let written = match &self.version {
            Some(v) => self.store.replace(&self.key, &bytes, v).await,
            None => self.store.create(&self.key, &bytes).await,
        };
        let version = written.map_err(store_error)?;
        self.stats.state_writes += 1;
        self.version = Some(version);
        self.durable = next.last_position.clone();
        self.state = next;
        self.pass(Boundary::AfterStateWrite)
    }

    /// Any write that moves past spilled records lists their object (a
    /// rotation after a lost stream's spill does, before the commit): an
    /// unlisted object is an orphan the backfill never replays.
    fn list_spills(&self, next: &mut ShardState) {
        for (path, last) in &self.spilled {
            if next.last_position.as_ref().is_some_and(|l| last <= l) && !next.spills.contains(path)
            {
                next.spills.push(path.clone());
            }
        }
    }

    /// Keeps the inline list bounded: past [`SPILL_LIST_CAP`] paths, those
    /// earlier invocations listed move into a new manifest (written before
    /// the state that names it; see `spill_manifest.rs`). This invocation's
    /// own paths stay inline, so a later write of this invocation never
    /// lists them twice. Spill-free writes never get here with a long list.
    async fn compact_spills(&mut self, next: &mut ShardState) -> Result<(), GaveBack> {
        if next.spills.len() <= SPILL_LIST_CAP {
            return Ok(());
        }
        let (own, older): (Vec<String>, Vec<String>) = std::mem::take(&mut next.spills)
            .into_iter()
            .partition(|p| self.spilled.iter().any(|(s, _)| s == p));
        next.spills = own;
        if older.is_empty() {
            return Ok(());
        }
        let manifest = SpillManifest { previous: next.spill_manifest.clone(), spills: older };
        let key = manifest.write(self.store, &self.key).await.map_err(store_error)?;
        self.stats.state_writes += 1;
        next.spill_manifest = Some(key);
        Ok(())
    }

    /// Per record of the batch: landed only up to the durable state.
    fn finish(self, gave_back: Option<GaveBack>) -> ShardOutcome {
        let by_item: Vec<RecordOutcome> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let covered = self.durable.as_ref().is_some_and(|d| item.position <= *d);
                match (covered, self.landing.get(i).copied().flatten()) {
                    (true, Some(l)) => RecordOutcome::Landed(l),
                    (true, None) => RecordOutcome::Landed(Landing::Earlier),
                    (false, _) => RecordOutcome::NotLanded,
                }
            })
            .collect();
        let n = self.batch.records.len();
        let records = super::outcome::per_record(n, &self.items, &by_item, &self.repeats);
        ShardOutcome { records, gave_back, stats: self.stats }
    }
}

fn crashed(c: Crash) -> GaveBack {
    GaveBack::Crashed(c.to_string())
}

fn store_error(e: StoreError) -> GaveBack {
    match e {
        StoreError::Conflict { .. } => GaveBack::Conflict,
        other => GaveBack::StateStore(other.to_string()),
    }
}
