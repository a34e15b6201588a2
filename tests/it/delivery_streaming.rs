//! Exactly-once streams its first round (issue 13 for `WRITE_MODE=
//! exactly_once`; `src/delivery/exactly_once/stream.rs`): records are cut by
//! the micro-batcher while later ones are still encoded, so the requests the
//! emulator receives follow the three knobs as on the stateless paths, at
//! consecutive offsets, and the state is written as often as before (the
//! claim, then the commit). The tokio clock is paused: a window of 0 cuts
//! every row on its own, one of 300 s never fires.

use crate::common::{key_pad_delivery, source_record};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use kinesis_bigquery::batch::BatchLimits;
use kinesis_bigquery::delivery::store::FileStateStore;
use kinesis_bigquery::delivery::{
    CrashPoints, DeliveryDeps, DeliveryMode, Landing, RecordOutcome, ShardBatch, ShardOutcome,
    WriteMode, deliver,
};
use kinesis_bigquery::emulator::{Emulator, ReceivedAppend};
use kinesis_bigquery::source::{BadRecord, SourceRecord};
use kinesis_bigquery::table::TableName;

const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/eo-streaming";
const SHARD: &str = "shardId-000000000001";
const LONG_WINDOW: Duration = Duration::from_secs(300);

fn record(seq: u64, pad: usize) -> SourceRecord {
    source_record(ARN, SHARD, seq, format!(r#"{{"key":"k{seq}","pad":"{}"}}"#, "p".repeat(pad)))
}

struct Shard {
    emu: Emulator,
    table: TableName,
    deps: DeliveryDeps,
    dlq: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Shard {
    /// An exactly-once shard whose stream exists: record 1 was delivered
    /// (a shard's first invocation creates its stream, encoding first).
    async fn start(limits: BatchLimits) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let state = Arc::new(FileStateStore::new(dir.path().join("state")));
        let mode = DeliveryMode::of(WriteMode::ExactlyOnce, state);
        let (table, emu, deps) = key_pad_delivery("eo", mode, dir.path(), limits, None).await?;
        let dlq = dir.path().join("dlq.ndjson");
        let shard = Self { emu, table, deps, dlq, _dir: dir };
        let first = shard.deliver(&[Ok(record(1, 10))]).await;
        assert_eq!(first.records, vec![RecordOutcome::Landed(Landing::Table)]);
        Ok(shard)
    }

    async fn deliver(&self, records: &[Result<SourceRecord, BadRecord>]) -> ShardOutcome {
        let batch = ShardBatch { table: &self.table, stream_arn: ARN, shard_id: SHARD, records };
        deliver(batch, &self.deps, Instant::now() + Duration::from_secs(60)).await
    }

    /// The requests to the table after the first `skip`.
    fn appends(&self, skip: usize) -> Vec<ReceivedAppend> {
        let path = self.table.path();
        let all: Vec<_> =
            self.emu.appends().into_iter().filter(|a| a.write_stream.starts_with(&path)).collect();
        all.into_iter().skip(skip).collect()
    }

    /// Every key in the table, sorted, with repeats.
    fn keys(&self) -> anyhow::Result<Vec<String>> {
        let mut keys: Vec<String> = self
            .emu
            .read_rows(&self.table)?
            .iter()
            .filter_map(|r| r.get("key").and_then(|k| k.as_str()).map(str::to_string))
            .collect();
        keys.sort();
        Ok(keys)
    }
}

fn limits(max_rows: usize, window: Duration) -> BatchLimits {
    BatchLimits::new(max_rows, 1 << 20, window).expect("valid limits")
}

fn keys_of(seqs: impl IntoIterator<Item = u64>) -> Vec<String> {
    let mut keys: Vec<String> = seqs.into_iter().map(|s| format!("k{s}")).collect();
    keys.sort();
    keys
}

/// `BATCH_WINDOW_MS=0` sends every row of an exactly-once batch in its own
/// request as soon as it is encoded (before issue 13 the batch was encoded
/// first and cut by size only: one request of 200 rows), at consecutive
/// offsets, with one claim and one commit, and every record lands once.
#[tokio::test(start_paused = true)]
async fn exactly_once_cuts_its_requests_as_records_are_encoded() -> anyhow::Result<()> {
    for (window, want) in [(Duration::ZERO, vec![1; 200]), (LONG_WINDOW, vec![200])] {
        let shard = Shard::start(limits(10_000, window)).await?;
        let before = shard.appends(0).len();
        let records: Vec<_> = (2..=201).map(|s| Ok(record(s, 1000))).collect();
        let outcome = shard.deliver(&records).await;
        assert!(
            outcome.records.iter().all(|r| *r == RecordOutcome::Landed(Landing::Table)),
            "{outcome:?}"
        );
        let appends = shard.appends(before);
        assert_eq!(appends.iter().map(|a| a.rows).collect::<Vec<_>>(), want, "{window:?}");
        let mut at = 1;
        for a in &appends {
            assert_eq!(a.offset, Some(at), "consecutive offsets after record 1");
            at += a.rows as i64;
        }
        assert_eq!(
            (outcome.stats.claims, outcome.stats.state_writes),
            (1, 2),
            "{:?}",
            outcome.stats
        );
        assert_eq!(shard.keys()?, keys_of(1..=201));
        shard.emu.shutdown().await;
    }
    Ok(())
}

/// A record that is not JSON takes no offset, which only encoding tells:
/// the claim written before it counted it, so the streamed stretch stops
/// there and the claim the real mapping gives is written (with the state
/// past the stretch) before anything is sent past it. Every good record lands once, the bad one is a dead
/// letter, and a retry of the same batch after a crash right after the
/// streamed requests writes nothing twice.
#[tokio::test(start_paused = true)]
async fn a_record_that_is_not_json_ends_the_streamed_stretch() -> anyhow::Result<()> {
    let shard = Shard::start(limits(3, Duration::ZERO)).await?;
    let mut records: Vec<_> = (2..=21).map(|s| Ok(record(s, 10))).collect();
    records[9] = Ok(source_record(ARN, SHARD, 11, "not json".into()));
    let outcome = shard.deliver(&records).await;
    let bad = RecordOutcome::Landed(Landing::DeadLetter);
    let good = RecordOutcome::Landed(Landing::Table);
    for (i, r) in outcome.records.iter().enumerate() {
        assert_eq!(*r, if i == 9 { bad } else { good }, "record {i}: {outcome:?}");
    }
    // The claim, the state past the stretch (with the exact claim), the commit.
    assert_eq!(outcome.stats.state_writes, 3, "{:?}", outcome.stats);
    assert_eq!(shard.keys()?, keys_of((1..=21).filter(|&s| s != 11)));
    let letters = std::fs::read_to_string(&shard.dlq)?;
    assert_eq!(letters.lines().count(), 1, "{letters}");
    shard.emu.shutdown().await;

    // Crash after each of the streamed requests in turn, then retry.
    for crash_at in 0..4 {
        let mut shard = Shard::start(limits(3, Duration::ZERO)).await?;
        let mut records: Vec<_> = (2..=21).map(|s| Ok(record(s, 10))).collect();
        records[9] = Ok(source_record(ARN, SHARD, 11, "not json".into()));
        shard.deps.crash = Some(Arc::new(CrashPoints::on(
            kinesis_bigquery::delivery::Boundary::BeforeAppend(crash_at),
        )));
        let crashed = shard.deliver(&records).await;
        assert!(crashed.gave_back.is_some(), "{crashed:?}");
        shard.deps.crash = None;
        let again = shard.deliver(&records).await;
        assert!(again.records.iter().all(|r| matches!(r, RecordOutcome::Landed(_))), "{again:?}");
        assert_eq!(shard.keys()?, keys_of((1..=21).filter(|&s| s != 11)), "crash at {crash_at}");
        shard.emu.shutdown().await;
    }
    Ok(())
}

/// The cost in state writes of a 10,000-record batch at the default
/// limits: streamed, as many as encoding first (the claim and the commit).
#[tokio::test(start_paused = true)]
async fn a_ten_thousand_record_batch_costs_two_state_writes() -> anyhow::Result<()> {
    for encode_first in [true, false] {
        let mut shard = Shard::start(BatchLimits::default()).await?;
        shard.deps.encode_first = encode_first;
        let records: Vec<_> = (2..=10_001).map(|s| Ok(record(s, 100))).collect();
        let outcome = shard.deliver(&records).await;
        assert!(
            outcome.records.iter().all(|r| *r == RecordOutcome::Landed(Landing::Table)),
            "{:?}",
            outcome.stats
        );
        println!("encode_first={encode_first}: {:?}", outcome.stats);
        assert_eq!((outcome.stats.claims, outcome.stats.state_writes), (1, 2), "{encode_first}");
        assert_eq!(shard.emu.read_rows(&shard.table)?.len(), 10_001);
        shard.emu.shutdown().await;
    }
    Ok(())
}
