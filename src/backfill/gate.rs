//! Which spillover objects are genuine, in exactly-once mode.
//!
//! An invocation that spilled and then died before its state commit leaves
//! an orphan object: Kinesis retries the batch, and the retry delivers those
//! records again (to the table, or into another spillover object). The shard
//! state lists the spillover objects whose records it counts as landed
//! (`ShardState::spills`); only those are replayed. After replaying one, the
//! backfill removes it from the list with a compare-and-swap, so a later run
//! sees it as what it then is: done.
//!
//! Older listed paths live in the state's spill manifest chain (see
//! `delivery/spill_manifest.rs`) and vouch exactly like the inline list.
//! Those cannot be unlisted one by one: a replayed one stays vouched for
//! until [`prune`] drops the whole chain, which is safe because its replay
//! left a committed marker (a rerun finds it and only finishes removing it).

use super::error::BackfillError;
use crate::delivery::spill_manifest::ManifestCache;
use crate::delivery::store::{StateStore, StoreError};
use crate::delivery::{ShardState, state_key};
use crate::spill::{SpillKey, SpilledBatch};

/// What the shard state says about one spillover object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Listed in the state: its records are counted as landed in the
    /// spillover and nowhere else. Replay it.
    Genuine,
    /// Not listed, and the state has moved past its last record: its
    /// records landed elsewhere (or it was replayed and unlisted before a
    /// crash). Remove it without replaying.
    Orphan,
    /// Not listed, and the state has not reached its records yet: the
    /// invocation that wrote it has not committed (or died and Kinesis has
    /// not retried yet). Leave it for a later run.
    Pending,
}

/// Compare-and-swap attempts to unlist an object; each loss means the
/// Lambda wrote the state in between, which is rare and brief.
const MAX_CAS_ATTEMPTS: u32 = 20;

/// # Errors
/// The state cannot be read or parsed.
pub async fn gate(
    state: &dyn StateStore,
    manifests: &ManifestCache,
    key: &SpillKey,
    batch: &SpilledBatch,
) -> Result<Gate, BackfillError> {
    let Some((shard, _)) = load(state, batch).await? else { return Ok(Gate::Pending) };
    let path = key.path();
    if shard.spills.contains(&path) {
        return Ok(Gate::Genuine);
    }
    if let Some(head) = &shard.spill_manifest
        && manifests.chain(state, head).await?.contains(&path)
    {
        return Ok(Gate::Genuine);
    }
    let done = match (&shard.last_position, batch.last_position()) {
        (Some(landed), Some(last)) => last <= landed,
        _ => false,
    };
    Ok(if done { Gate::Orphan } else { Gate::Pending })
}

/// Removes `key` from the shard state's list, after its rows were committed.
///
/// # Errors
/// The state cannot be read or written, or the CAS kept losing.
pub async fn unlist(
    state: &dyn StateStore,
    key: &SpillKey,
    batch: &SpilledBatch,
) -> Result<(), BackfillError> {
    let path = key.path();
    for _ in 0..MAX_CAS_ATTEMPTS {
        let Some((mut shard, version)) = load(state, batch).await? else { return Ok(()) };
        let before = shard.spills.len();
        shard.spills.retain(|p| *p != path);
        if shard.spills.len() == before {
            return Ok(());
        }
        let skey = state_key(&batch.table, &batch.stream_arn, &batch.shard_id);
        match state.replace(&skey, &shard.to_json(), &version).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(BackfillError::StateContended(MAX_CAS_ATTEMPTS))
}

/// Drops the spill manifest chain of `batch`'s shard once none of the
/// objects it vouches for is left in the spillover (`remaining` is the
/// shard's objects listed after this run's replays; `skey` its state key): all were replayed and
/// removed. Kept if the state moved to a newer chain meanwhile; the next run
/// drops that one.
///
/// # Errors
/// The state or a manifest cannot be read, or the state cannot be written.
pub async fn prune(
    state: &dyn StateStore,
    manifests: &ManifestCache,
    skey: &str,
    remaining: &std::collections::HashSet<String>,
) -> Result<bool, BackfillError> {
    let Some((bytes, version)) = state.load(skey).await? else { return Ok(false) };
    let mut shard = ShardState::from_json(&bytes)?;
    let Some(head) = shard.spill_manifest.clone() else { return Ok(false) };
    let chain = manifests.chain(state, &head).await?;
    if chain.iter().any(|p| remaining.contains(p)) {
        return Ok(false);
    }
    shard.spill_manifest = None;
    match state.replace(skey, &shard.to_json(), &version).await {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

async fn load(
    state: &dyn StateStore,
    batch: &SpilledBatch,
) -> Result<Option<(ShardState, crate::delivery::store::Version)>, BackfillError> {
    let skey = state_key(&batch.table, &batch.stream_arn, &batch.shard_id);
    match state.load(&skey).await? {
        None => Ok(None),
        Some((bytes, version)) => Ok(Some((ShardState::from_json(&bytes)?, version))),
    }
}
