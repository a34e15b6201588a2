//! Concurrent backfills of one spillover are refused (issue 12, scenario 8):
//! a run takes a lease — in the state store, or under the spill root when it
//! has none — and a second run finds it, names its holder and expiry, and
//! touches nothing; an expired lease is taken over; a finished run releases
//! its lease. On `file://` and on S3 (moto), against the emulator.

use crate::backfill_support;
use crate::common;

use std::sync::Arc;
use std::time::Duration;

use backfill_support::*;
use chrono::Utc;
use common::Harness;
use kinesis_bigquery::backfill::{
    self, BackfillError, DEFAULT_LEASE, Lease, LeaseRecord, Progress, lease_key,
};
use kinesis_bigquery::delivery::store::{S3StateStore, StateStore};
use kinesis_bigquery::spill::{FileSpill, S3Spill, SpillFilter, SpillSink};

const OTHER: &str = "ops-box-7 pid 4242 run 0badcafe";

/// `with_state`: the lease lives in the state store (exactly-once runs);
/// otherwise under the spill root.
async fn second_run_is_refused(on_s3: bool, with_state: bool) -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let dir = tempfile::tempdir()?;
    let (spill, state): (Arc<dyn SpillSink>, Option<Arc<dyn StateStore>>) = if on_s3 {
        let bucket = h.new_bucket().await?;
        let s3 = h.moto.s3_client();
        let spill = Arc::new(S3Spill::new(s3.clone(), bucket.clone(), "spill".into()));
        let state: Arc<dyn StateStore> = Arc::new(S3StateStore::new(s3, bucket, "state".into()));
        (spill, with_state.then_some(state))
    } else {
        let spill = Arc::new(FileSpill::new(dir.path().join("spill")));
        let state: Arc<dyn StateStore> = Arc::new(
            kinesis_bigquery::delivery::store::FileStateStore::new(dir.path().join("state")),
        );
        (spill, with_state.then_some(state))
    };
    let recs = records("shardId-000000000000", 0, 8);
    let batch = spilled(&table, &recs);
    spill.spill(&batch).await?;
    let mut deps = deps(&h.emulator, Arc::clone(&spill), None).await;
    if let Some(state) = &state {
        commit_state(state.as_ref(), &table, &recs, &[&batch]).await;
        deps.state = Some(Arc::clone(state));
    }
    let lease_store = state.clone().unwrap_or_else(|| spill.lease_store());

    // Another run holds the lease: this one is refused and touches nothing.
    let theirs = Lease::take(
        Arc::clone(&lease_store),
        &spill.root(),
        OTHER.into(),
        DEFAULT_LEASE,
        Utc::now(),
    )
    .await?;
    let expires_at = theirs.record().await.expires_at;
    let refused = backfill::run(&deps, &options(), &Progress::Silent).await;
    let Err(err @ BackfillError::Leased { .. }) = refused else {
        anyhow::bail!("a second backfill must be refused, got {refused:?}");
    };
    let message = err.to_string();
    assert!(message.contains(OTHER), "{message}");
    assert!(message.contains(&expires_at.to_string()), "{message}");
    assert_eq!(spill.list(&SpillFilter::default()).await?.len(), 1);
    assert!(ids_in_table(&h.emulator, &table).is_empty());

    // The holder releases it: the next run takes it, replays, releases.
    theirs.release().await?;
    let summary = backfill::run(&deps, &options(), &Progress::Silent).await?;
    assert_eq!((summary.replayed, summary.failed), (1, 0), "{summary:?}");
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&recs));
    let (bytes, _) = lease_store.load(&lease_key(&spill.root())).await?.expect("lease object");
    let record: LeaseRecord = serde_json::from_slice(&bytes)?;
    assert!(record.released, "{record:?}");
    assert_ne!(record.holder, OTHER);

    // A lease that expired (its run died) is taken over.
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    Lease::take(Arc::clone(&lease_store), &spill.root(), OTHER.into(), DEFAULT_LEASE, an_hour_ago)
        .await?;
    let more = records("shardId-000000000000", 8, 3);
    let later = spilled(&table, &more);
    spill.spill(&later).await?;
    if let Some(state) = &state {
        commit_state(state.as_ref(), &table, &[recs.clone(), more.clone()].concat(), &[&later])
            .await;
    }
    let taken_over = backfill::run(&deps, &options(), &Progress::Silent).await?;
    assert_eq!((taken_over.replayed, taken_over.failed), (1, 0), "{taken_over:?}");
    assert_eq!(ids_in_table(&h.emulator, &table), ids_of(&[recs, more].concat()));
    h.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_second_backfill_is_refused_lease_under_the_spill_root_on_files() -> anyhow::Result<()> {
    second_run_is_refused(false, false).await
}

#[tokio::test]
async fn a_second_backfill_is_refused_lease_in_the_state_store_on_files() -> anyhow::Result<()> {
    second_run_is_refused(false, true).await
}

#[tokio::test]
async fn a_second_backfill_is_refused_lease_under_the_spill_root_on_s3() -> anyhow::Result<()> {
    second_run_is_refused(true, false).await
}

#[tokio::test]
async fn a_second_backfill_is_refused_lease_in_the_state_store_on_s3() -> anyhow::Result<()> {
    second_run_is_refused(true, true).await
}

/// A run whose lease another run took over stops with `LeaseLost` at its
/// next renewal (paused clock: the renewal tick comes without waiting).
#[tokio::test(start_paused = true)]
async fn a_lease_taken_over_is_noticed_at_the_next_renewal() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let spill = FileSpill::new(dir.path().join("spill"));
    let store = spill.lease_store();
    let ttl = Duration::from_secs(30);
    let mine = Lease::take(Arc::clone(&store), &spill.root(), "me".into(), ttl, Utc::now()).await?;
    // Renewal works while nobody else writes.
    mine.renew(Utc::now()).await?;
    // Another run takes it over (as it would after an expiry).
    let key = lease_key(&spill.root());
    let (_, version) = store.load(&key).await?.expect("lease");
    let theirs = LeaseRecord {
        holder: OTHER.into(),
        spill: spill.root(),
        expires_at: Utc::now() + chrono::Duration::seconds(900),
        released: false,
    };
    store.replace(&key, &serde_json::to_vec(&theirs)?, &version).await?;
    let lost = tokio::time::timeout(Duration::from_secs(3600), mine.keep()).await?;
    assert!(matches!(lost, BackfillError::LeaseLost { .. }), "{lost}");
    Ok(())
}

/// The command line: a held lease makes `kinesis-bigquery backfill` exit
/// non-zero with the holder in its message; `--lease-secs` is checked.
#[tokio::test]
async fn the_command_names_the_holder_and_exits_non_zero() -> anyhow::Result<()> {
    let h = Harness::start().await?;
    let table = h.new_events_table()?;
    let dir = tempfile::tempdir()?;
    let spill = FileSpill::new(dir.path().join("spill"));
    spill.spill(&spilled(&table, &records("shardId-000000000000", 0, 4))).await?;
    Lease::take(spill.lease_store(), &spill.root(), OTHER.into(), DEFAULT_LEASE, Utc::now())
        .await?;
    let spill_url = spill.root();
    let endpoint = h.emulator.grpc_endpoint();
    let run = |extra: &'static [&'static str]| {
        let (spill_url, endpoint) = (spill_url.clone(), endpoint.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_kinesis-bigquery"))
                .args(["backfill", &spill_url, "--endpoint", &endpoint])
                .args(["--write-mode", "at_least_once"])
                .args(extra)
                .env_remove("STATE_URL")
                .env_remove("WRITE_MODE")
                .output()
        })
    };
    let out = run(&[]).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(OTHER), "{stderr}");
    assert!(ids_in_table(&h.emulator, &table).is_empty());
    let out = run(&["--lease-secs", "1"]).await??;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("--lease-secs"), "{stderr}");
    h.shutdown().await;
    Ok(())
}
