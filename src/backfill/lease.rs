//! The backfill lease: one run per spillover root at a time (issue 12,
//! scenario 8).
//!
//! Two runs over the same objects would each replay an object on its own
//! PENDING stream and each write its marker; the second marker hides the
//! first run's stream, so a crash between them could commit the object
//! twice. The lease makes the second run refuse instead. It lives in the
//! state store (`--state`) or, without one, under the spillover root, and is
//! taken and renewed with the store's compare-and-swap (`If-None-Match: *`
//! to create, `If-Match` to take over or renew), so exactly one taker wins.
//!
//! A run renews its lease every third of its length and releases it at the
//! end; a run that died leaves a lease that expires, and the next run takes
//! it over. A run that finds its lease taken over (it was stalled past the
//! expiry) stops before its next object: every step of an object's replay is
//! safe to stop at (`replay.rs`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::BackfillError;
use crate::delivery::store::{StateStore, StoreError, Version};
use crate::sink_url::segment;

/// How long a lease holds without renewal (`--lease-secs`): long enough to
/// outlast a slow S3 call, short enough that a crashed run blocks the next
/// one for minutes, not hours.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(900);

/// Attempts to take a lease when the store keeps changing under us.
const MAX_TAKE_ATTEMPTS: u32 = 3;

/// The lease object's JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Who holds it: host, process id and a per-run id.
    pub holder: String,
    /// The spillover root it covers.
    pub spill: String,
    pub expires_at: DateTime<Utc>,
    /// Set by a clean release: the lease is free although not expired.
    #[serde(default)]
    pub released: bool,
}

impl LeaseRecord {
    fn free_at(&self, now: DateTime<Utc>) -> bool {
        self.released || self.expires_at <= now
    }
}

/// A lease this process holds.
pub struct Lease {
    store: Arc<dyn StateStore>,
    key: String,
    ttl: Duration,
    state: tokio::sync::Mutex<(LeaseRecord, Version)>,
}

/// The lease's key for the spillover root `spill_root`.
pub fn lease_key(spill_root: &str) -> String {
    format!("backfill-leases/{}.json", segment(spill_root))
}

/// `host pid N run ID`: enough for a person to find the other run.
pub fn holder_id() -> String {
    // The kernel's host name, not `$HOSTNAME` (a shell variable, often not
    // exported): configuration is read only in `config/`.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let run = uuid::Uuid::new_v4().simple().to_string();
    format!("{host} pid {} run {}", std::process::id(), run.get(..8).unwrap_or(&run))
}

fn expiry(now: DateTime<Utc>, ttl: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX)
}

impl Lease {
    /// Takes the lease on `spill_root` for `ttl` from `now`: creates it, or
    /// takes over one that is released or expired.
    ///
    /// # Errors
    /// [`BackfillError::Leased`] naming the holder and expiry when another
    /// run holds it; store errors.
    pub async fn take(
        store: Arc<dyn StateStore>,
        spill_root: &str,
        holder: String,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Lease, BackfillError> {
        let key = lease_key(spill_root);
        let mine = LeaseRecord {
            holder,
            spill: spill_root.to_string(),
            expires_at: expiry(now, ttl),
            released: false,
        };
        let bytes = serde_json::to_vec(&mine).map_err(BackfillError::LeaseFormat)?;
        for _ in 0..MAX_TAKE_ATTEMPTS {
            let written = match store.load(&key).await? {
                None => store.create(&key, &bytes).await,
                Some((current, version)) => {
                    let theirs: LeaseRecord =
                        serde_json::from_slice(&current).map_err(BackfillError::LeaseFormat)?;
                    if !theirs.free_at(now) {
                        return Err(BackfillError::Leased {
                            location: store.location(&key),
                            holder: theirs.holder,
                            expires_at: theirs.expires_at,
                        });
                    }
                    if !theirs.released {
                        tracing::warn!(holder = %theirs.holder, expired_at = %theirs.expires_at,
                            "taking over an expired backfill lease");
                    }
                    store.replace(&key, &bytes, &version).await
                }
            };
            match written {
                Ok(version) => {
                    return Ok(Lease {
                        store,
                        key,
                        ttl,
                        state: tokio::sync::Mutex::new((mine, version)),
                    });
                }
                // Someone wrote it between our load and our write: look again.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackfillError::LeaseContended(MAX_TAKE_ATTEMPTS))
    }

    /// Where the lease is, for messages.
    pub fn location(&self) -> String {
        self.store.location(&self.key)
    }

    /// Pushes the expiry to `now + ttl`.
    ///
    /// # Errors
    /// [`BackfillError::LeaseLost`] when another run took the lease over (our
    /// version is gone); store errors (the caller tries again later).
    pub async fn renew(&self, now: DateTime<Utc>) -> Result<(), BackfillError> {
        let mut state = self.state.lock().await;
        let mut next = state.0.clone();
        next.expires_at = expiry(now, self.ttl);
        let bytes = serde_json::to_vec(&next).map_err(BackfillError::LeaseFormat)?;
        match self.store.replace(&self.key, &bytes, &state.1).await {
            Ok(version) => {
                *state = (next, version);
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => {
                Err(BackfillError::LeaseLost { location: self.location() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Renews every third of the lease until a renewal finds it taken over;
    /// a failed call is retried at the next tick. Returns only when lost.
    pub async fn keep(&self) -> BackfillError {
        let mut tick = tokio::time::interval((self.ttl / 3).max(Duration::from_secs(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            match self.renew(Utc::now()).await {
                Ok(()) => {}
                Err(lost @ BackfillError::LeaseLost { .. }) => return lost,
                Err(e) => {
                    tracing::warn!(error = %e, "renewing the backfill lease failed; retrying")
                }
            }
        }
    }

    /// Frees the lease for the next run. A lease another run already took
    /// over is left to it.
    ///
    /// # Errors
    /// Store errors; the lease then expires on its own.
    pub async fn release(&self) -> Result<(), BackfillError> {
        let state = self.state.lock().await;
        let mut done = state.0.clone();
        done.released = true;
        done.expires_at = Utc::now();
        let bytes = serde_json::to_vec(&done).map_err(BackfillError::LeaseFormat)?;
        match self.store.replace(&self.key, &bytes, &state.1).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The record as last written, for tests and messages.
    pub async fn record(&self) -> LeaseRecord {
        self.state.lock().await.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::store::FileStateStore;

    fn store(dir: &tempfile::TempDir) -> Arc<dyn StateStore> {
        Arc::new(FileStateStore::new(dir.path().to_path_buf()))
    }

    #[test]
    fn the_holder_names_a_process() {
        let id = holder_id();
        assert!(id.contains(&format!(" pid {} run ", std::process::id())), "{id}");
        assert_ne!(holder_id(), id, "each run has its own id");
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_expired_leases_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let now: DateTime<Utc> = "2026-12-03T08:00:00Z".parse().unwrap();
        let ttl = Duration::from_secs(900);
        let a = Lease::take(store(&dir), "file:///spill", "a".into(), ttl, now).await.unwrap();
        let refused = Lease::take(store(&dir), "file:///spill", "b".into(), ttl, now).await;
        let Err(BackfillError::Leased { holder, expires_at, .. }) = refused else {
            panic!("a second taker must be refused");
        };
        assert_eq!((holder.as_str(), expires_at), ("a", now + chrono::Duration::seconds(900)));
        // Another root is another lease.
        Lease::take(store(&dir), "file:///other", "b".into(), ttl, now).await.unwrap();
        // Renewed, the lease outlives its first expiry.
        a.renew(now + chrono::Duration::seconds(600)).await.unwrap();
        let later = now + chrono::Duration::seconds(1000);
        assert!(Lease::take(store(&dir), "file:///spill", "b".into(), ttl, later).await.is_err());
        // Expired: taken over, and the old holder learns it at its next renewal.
        let much_later = now + chrono::Duration::seconds(2000);
        let b =
            Lease::take(store(&dir), "file:///spill", "b".into(), ttl, much_later).await.unwrap();
        assert!(matches!(a.renew(much_later).await, Err(BackfillError::LeaseLost { .. })));
        // A stale release does not free b's lease; b's own release does.
        a.release().await.unwrap();
        assert!(
            Lease::take(store(&dir), "file:///spill", "c".into(), ttl, much_later).await.is_err()
        );
        b.release().await.unwrap();
        Lease::take(store(&dir), "file:///spill", "c".into(), ttl, much_later).await.unwrap();
    }
}
