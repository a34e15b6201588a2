//! Spill manifests: how the shard state stays small however long an outage.
//!
//! The state lists the spillover objects it vouches for (`ShardState::spills`,
//! see `gate.rs`). Listing every one inline made the state grow by one path
//! per spilling invocation (a day-long outage ≈ 86,000 paths, read and
//! rewritten by every invocation). Instead, once the inline list passes
//! [`SPILL_LIST_CAP`], the older paths move into an immutable manifest in the
//! state store, and the state keeps only the newest manifest's key
//! ([`ShardState::spill_manifest`]). Each manifest names the one before it,
//! so the vouched-for set is the inline list plus the chain, and the state
//! holds at most [`SPILL_LIST_CAP`] paths plus one new object per write.
//!
//! A manifest is written create-only, and its key is its content's digest,
//! before the state write that references it: a crash in between leaves an
//! unreferenced manifest that vouches for nothing, and a retry that writes
//! the same content finds it already there.

use super::store::{StateStore, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Inline spill paths a state keeps before moving the older ones into a
/// manifest (about 100 bytes each: the state stays under ~8 KB of paths).
pub const SPILL_LIST_CAP: usize = 64;

/// One link of the chain: spill paths, and the manifest written before it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpillManifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub spills: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("spill manifest {key} is missing from the state store")]
    Missing { key: String },
    #[error("spill manifest {key} is not valid JSON")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("spill manifest chain loops back to {key}")]
    Loop { key: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SpillManifest {
    /// The manifest's key beside `state_key` (`…/shard.json` →
    /// `…/shard.spills/{md5}.json`): named by its content, so writing the same
    /// manifest twice is the same object.
    pub fn key(&self, state_key: &str) -> String {
        use md5::{Digest, Md5};
        let digest = Md5::digest(self.to_json());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let stem = state_key.strip_suffix(".json").unwrap_or(state_key);
        format!("{stem}.spills/{hex}.json")
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings cannot fail to serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Writes the manifest create-only and returns its key; one that already
    /// exists holds the same content (the key is its digest).
    ///
    /// # Errors
    /// The store cannot be written.
    pub async fn write(
        &self,
        store: &dyn StateStore,
        state_key: &str,
    ) -> Result<String, StoreError> {
        let key = self.key(state_key);
        match store.create(&key, &self.to_json()).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(key),
            Err(e) => Err(e),
        }
    }

    /// Reads one manifest.
    ///
    /// # Errors
    /// Missing, unreadable or not a manifest.
    pub async fn read(store: &dyn StateStore, key: &str) -> Result<Self, ManifestError> {
        let Some((bytes, _)) = store.load(key).await? else {
            return Err(ManifestError::Missing { key: key.to_string() });
        };
        serde_json::from_slice(&bytes)
            .map_err(|source| ManifestError::Decode { key: key.to_string(), source })
    }
}

/// Every path the chain ending at a head vouches for, read once per head:
/// manifests never change, so a run caches what it has read.
#[derive(Default)]
pub struct ManifestCache {
    chains: tokio::sync::Mutex<HashMap<String, Arc<HashSet<String>>>>,
}

impl ManifestCache {
    /// The paths the chain that ends at `head` vouches for.
    ///
    /// # Errors
    /// A manifest of the chain is missing or unreadable, or the chain loops.
    pub async fn chain(
        &self,
        store: &dyn StateStore,
        head: &str,
    ) -> Result<Arc<HashSet<String>>, ManifestError> {
        let mut chains = self.chains.lock().await;
        if let Some(set) = chains.get(head) {
            return Ok(Arc::clone(set));
        }
        let mut paths = HashSet::new();
        let mut seen = HashSet::new();
        let mut next = Some(head.to_string());
        while let Some(key) = next {
            if let Some(known) = chains.get(&key) {
                paths.extend(known.iter().cloned());
                break;
            }
            if !seen.insert(key.clone()) {
                return Err(ManifestError::Loop { key });
            }
            let manifest = SpillManifest::read(store, &key).await?;
            paths.extend(manifest.spills);
            next = manifest.previous;
        }
        let set = Arc::new(paths);
        chains.insert(head.to_string(), Arc::clone(&set));
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::store::FileStateStore;

    #[tokio::test]
    async fn a_chain_vouches_for_every_link() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path().to_path_buf());
        let first = SpillManifest { previous: None, spills: vec!["a".into(), "b".into()] };
        let k1 = first.write(&store, "t/s/shard.json").await.unwrap();
        assert!(k1.starts_with("t/s/shard.spills/"));
        // Writing it again (a retry after a crash) is the same object.
        assert_eq!(first.write(&store, "t/s/shard.json").await.unwrap(), k1);
        let second = SpillManifest { previous: Some(k1), spills: vec!["c".into()] };
        let k2 = second.write(&store, "t/s/shard.json").await.unwrap();
        let cache = ManifestCache::default();
        let set = cache.chain(&store, &k2).await.unwrap();
        let mut all: Vec<_> = set.iter().cloned().collect();
        all.sort();
        assert_eq!(all, ["a", "b", "c"]);
        assert!(matches!(
            cache.chain(&store, "t/s/shard.spills/none.json").await,
            Err(ManifestError::Missing { .. })
        ));
    }
}
