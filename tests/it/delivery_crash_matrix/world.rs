//! The world a crash-matrix scenario runs in: the shard log (records of
//! every kind), one emulator per worker, and per scenario a table with its
//! state store (a file, or S3 on moto), spillover and dead-letter queue,
//! and the invocations that deliver batches of the log to it — connected
//! (`delivery::deliver`) or in an outage (`delivery::deliver_offline_with`).

use crate::common::{self, col, fast_retry};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rand::rngs::StdRng;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use kinesis_bigquery::bigquery::{AppenderOptions, WriteClient};
use kinesis_bigquery::delivery::store::{FileStateStore, S3StateStore, StateStore};
use kinesis_bigquery::delivery::{
    CrashPoints, DeliveryDeps, DeliveryMode, EncoderCell, OfflineSinks, ShardBatch, ShardOutcome,
    ShardState, WriteMode, deliver, deliver_offline_with, state_key,
};
use kinesis_bigquery::dlq::{DeadLetterSink, FileDeadLetter};
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RowFormat, UnknownFields};
use kinesis_bigquery::source::{BadReason, BadRecord, Position, SequenceNumber, SourceRecord};
use kinesis_bigquery::spill::{FileSpill, SpillSink};
use kinesis_bigquery::table::TableName;

pub const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/crash-matrix";
pub const SHARD: &str = "shardId-000000000000";

/// The table requires `must`; the encoder is built from a schema where it is
/// NULLABLE, so a record without it encodes and BigQuery rejects the row.
fn table_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("must", Type::String, Mode::Required),
            col("opt", Type::String, Mode::Nullable),
        ],
    }
}

pub fn encoder_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("must", Type::String, Mode::Nullable),
            col("opt", Type::String, Mode::Nullable),
        ],
    }
}

/// The view of a container that has not seen `opt` yet: a record with it
/// is refused there (unknown field) although other attempts write it.
pub fn older_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("must", Type::String, Mode::Nullable),
        ],
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Good,
    /// Good under the current schema, refused under the older view: in
    /// the table or the dead-letter queue (whichever attempt decided),
    /// never both (issue 12, scenario 7).
    WithOpt,
    RejectedByServer,
    UnknownField,
    NotJson,
}

/// One user record of the shard log.
#[derive(Clone, Debug)]
pub struct UserRecord {
    pub position: Position,
    pub kind: Kind,
    data: Bytes,
}

/// One Kinesis record: a plain record, a KPL aggregate of several user
/// records, or a corrupt aggregate (one bad record at sub-sequence 0).
#[derive(Clone, Debug)]
pub struct KinesisRecord {
    pub users: Vec<UserRecord>,
    corrupt: bool,
}

pub fn key_of(p: &Position) -> String {
    format!("{}/{}", p.sequence_number, p.sub_sequence_number)
}

/// Kinesis record `i` of a log: `kinds` are its user records (more than one
/// makes it a KPL aggregate).
pub fn kinesis_record(i: usize, kinds: &[Kind], corrupt: bool) -> anyhow::Result<KinesisRecord> {
    let seq = SequenceNumber::new(&format!("4960{:06}", 1000 + i * 7))?;
    let users = kinds
        .iter()
        .zip(0u64..)
        .map(|(&kind, sub)| {
            let position = Position { sequence_number: seq.clone(), sub_sequence_number: sub };
            let key = key_of(&position);
            let data = match kind {
                Kind::Good => format!(r#"{{"key":"{key}","must":"x"}}"#),
                Kind::WithOpt => format!(r#"{{"key":"{key}","must":"x","opt":"y"}}"#),
                Kind::RejectedByServer => format!(r#"{{"key":"{key}"}}"#),
                Kind::UnknownField => format!(r#"{{"key":"{key}","must":"x","nope":1}}"#),
                Kind::NotJson => format!(r#"{{"key":"{key}","must":"#),
            };
            UserRecord { position, kind, data: Bytes::from(data) }
        })
        .collect();
    Ok(KinesisRecord { users, corrupt })
}

pub fn make_log(rng: &mut StdRng) -> anyhow::Result<Vec<KinesisRecord>> {
    let n = rng.random_range(3..=14);
    (0..n)
        .map(|i| {
            let corrupt = rng.random_bool(0.04);
            let subs = if !corrupt && rng.random_bool(0.25) { rng.random_range(2..=4) } else { 1 };
            let kinds: Vec<Kind> = (0..subs)
                .map(|_| {
                    let roll: f64 = rng.random();
                    if corrupt {
                        Kind::NotJson
                    } else if roll < 0.08 {
                        Kind::RejectedByServer
                    } else if roll < 0.14 {
                        Kind::UnknownField
                    } else if roll < 0.20 {
                        Kind::NotJson
                    } else if roll < 0.28 {
                        Kind::WithOpt
                    } else {
                        Kind::Good
                    }
                })
                .collect();
            kinesis_record(i, &kinds, corrupt)
        })
        .collect()
}

fn source_record(u: &UserRecord, event_index: usize) -> SourceRecord {
    SourceRecord {
        shard_id: Arc::from(SHARD),
        stream_arn: Arc::from(STREAM_ARN),
        position: u.position.clone(),
        event_index,
        partition_key: Arc::from("pk"),
        explicit_hash_key: None,
        arrival_micros: Some(1_700_000_000_000_000),
        data: u.data.clone(),
    }
}

/// The batch Kinesis hands over for log[from..to]: records and, per record,
/// the Kinesis record it belongs to.
pub fn batch_of(
    log: &[KinesisRecord],
    from: usize,
    to: usize,
) -> (Vec<Result<SourceRecord, BadRecord>>, Vec<usize>) {
    let mut records = Vec::new();
    let mut parents = Vec::new();
    for (event_index, k) in log.iter().enumerate().take(to).skip(from) {
        for u in &k.users {
            let r = source_record(u, event_index);
            if k.corrupt {
                records.push(Err(BadRecord {
                    record: r,
                    reason: BadReason::KplChecksum { found: "00".into(), computed: "11".into() },
                }));
            } else {
                records.push(Ok(r));
            }
            parents.push(event_index);
        }
    }
    (records, parents)
}

/// One emulator and client per worker: fault rules are emulator-wide. The
/// S3 bucket on moto is made on the first scenario that keeps its state
/// there, so a rerun of a file-store seed needs no moto.
pub struct World {
    pub emulator: Emulator,
    pub client: WriteClient,
    bucket: OnceCell<(aws_sdk_s3::Client, String)>,
}

impl World {
    pub async fn start() -> anyhow::Result<Self> {
        let emulator = emulator::start(EmulatorConfig::default()).await?;
        let fast = fast_retry(3);
        let client = WriteClient::connect(&emulator.endpoint())
            .await?
            .with_unary_retry(fast)
            .with_rpc_timeout(Duration::from_secs(2));
        Ok(Self { emulator, client, bucket: OnceCell::new() })
    }

    async fn s3(&self) -> anyhow::Result<&(aws_sdk_s3::Client, String)> {
        self.bucket
            .get_or_try_init(|| async {
                let moto = common::moto()?;
                let bucket = moto.new_bucket().await?;
                anyhow::Ok((moto.s3_client(), bucket))
            })
            .await
    }
}

/// Where a scenario keeps the exactly-once state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    File,
    /// S3 on moto, through the real AWS SDK (conditional writes included).
    S3,
}

/// Whether an invocation reaches BigQuery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    Online,
    /// A container that could not build its BigQuery side (a cold start
    /// during an outage): raw spill through `deliver_offline_with`.
    Offline,
}

/// One scenario's table and sinks.
pub struct Shard {
    pub table: TableName,
    pub state: Arc<dyn StateStore>,
    pub spill: Arc<FileSpill>,
    pub dlq_path: std::path::PathBuf,
    pub options: EncoderOptions,
    pub max_rows: usize,
    _dir: tempfile::TempDir,
}

impl Shard {
    pub async fn new(
        world: &World,
        name: &str,
        store: Store,
        format: RowFormat,
        max_rows: usize,
    ) -> anyhow::Result<Self> {
        let table = TableName::new("p", "crash", name)?;
        world.emulator.create_table(&table, table_schema())?;
        let dir = scratch_dir()?;
        let state: Arc<dyn StateStore> = match store {
            Store::File => Arc::new(FileStateStore::new(dir.path().join("state"))),
            Store::S3 => {
                let (client, bucket) = world.s3().await?;
                Arc::new(S3StateStore::new(client.clone(), bucket.clone(), format!("state/{name}")))
            }
        };
        let spill = Arc::new(FileSpill::new(dir.path().join("spill")));
        let dlq_path = dir.path().join("dlq.ndjson");
        let options = EncoderOptions { format, unknown_fields: UnknownFields::Reject };
        Ok(Self { table, state, spill, dlq_path, options, max_rows, _dir: dir })
    }

    /// The delivery side of a new container (a cold start): no warm
    /// connections, the current view of the schema.
    pub fn container(&self, world: &World) -> anyhow::Result<DeliveryDeps> {
        let encoder = Encoder::new(&encoder_schema(), self.options)?;
        let mut deps = DeliveryDeps::new(
            world.client.clone(),
            EncoderCell::new(encoder, self.options),
            DeliveryMode::of(WriteMode::ExactlyOnce, self.state.clone()),
            self.spill.clone(),
            self.dlq(),
        );
        deps.appender = AppenderOptions { retry: fast_retry(3), ..AppenderOptions::default() };
        deps.limits.max_rows = self.max_rows;
        deps.spill_reserve = Duration::from_millis(300);
        Ok(deps)
    }

    pub fn dlq(&self) -> Arc<dyn DeadLetterSink> {
        Arc::new(FileDeadLetter::new(self.dlq_path.clone()))
    }

    pub async fn load_state(&self) -> anyhow::Result<Option<ShardState>> {
        match self.state.load(&state_key(&self.table, STREAM_ARN, SHARD)).await? {
            Some((bytes, _)) => Ok(Some(ShardState::from_json(&bytes)?)),
            None => Ok(None),
        }
    }

    /// One invocation on `records`, stopped at `crash` when it is given.
    pub async fn invoke(
        &self,
        deps: &mut DeliveryDeps,
        records: &[Result<SourceRecord, BadRecord>],
        reach: Reach,
        crash: Option<Arc<CrashPoints>>,
    ) -> ShardOutcome {
        let batch =
            ShardBatch { table: &self.table, stream_arn: STREAM_ARN, shard_id: SHARD, records };
        match reach {
            Reach::Online => {
                deps.crash = crash;
                deliver(batch, deps, Instant::now() + Duration::from_secs(3)).await
            }
            Reach::Offline => {
                let sinks = OfflineSinks {
                    mode: &deps.mode,
                    spill: deps.spill.as_ref(),
                    dlq: deps.dlq.as_ref(),
                };
                let why = "injected outage: the table schema could not be read";
                deliver_offline_with(batch, sinks, why, crash.as_deref()).await
            }
        }
    }
}

/// Whether the `DELIVERY_DEBUG` trace is on.
pub fn debug() -> bool {
    std::env::var_os("DELIVERY_DEBUG").is_some()
}

/// The file sinks fsync every write; on a memory file system that costs
/// nothing, and the matrix runs thousands of invocations.
fn scratch_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
}

/// Spill sinks that fail every write (a path under /dev/null cannot be
/// created), and a dead-letter queue that does.
pub fn broken_spill() -> Arc<dyn SpillSink> {
    Arc::new(FileSpill::new("/dev/null/spill".into()))
}

pub fn broken_dlq() -> Arc<dyn DeadLetterSink> {
    Arc::new(FileDeadLetter::new("/dev/null/dlq.ndjson".into()))
}
