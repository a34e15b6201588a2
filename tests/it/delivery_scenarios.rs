//! Exactly-once and at-least-once delivery, one named scenario at a time,
//! against the in-process emulator over real gRPC with `file://` state,
//! spillover and dead-letter queue: what lands where, what the state says,
//! and what it cost (finalizes, rotations).

use crate::common::col;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use kinesis_bigquery::bigquery::{AppenderOptions, RetryPolicy, WriteClient};
use kinesis_bigquery::delivery::store::{FileStateStore, StateStore};
use kinesis_bigquery::delivery::{
    Boundary, CrashPoints, DeliveryDeps, DeliveryMode, EncoderCell, GaveBack, Landing,
    RecordOutcome, ShardBatch, ShardOutcome, ShardState, WriteMode, deliver, state_key,
};
use kinesis_bigquery::dlq::{DeadLetter, FileDeadLetter, Reason};
use kinesis_bigquery::emulator::{self, Emulator, EmulatorConfig};
use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use kinesis_bigquery::rows::{Encoder, EncoderOptions, RowFormat, UnknownFields};
use kinesis_bigquery::source::{BadRecord, Position, SequenceNumber, SourceRecord};
use kinesis_bigquery::spill::{FileSpill, SpillFilter, SpillReason, SpillSink};
use kinesis_bigquery::table::TableName;

pub(crate) const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/scenarios";
pub(crate) const SHARD: &str = "shardId-000000000002";

/// The table requires `must`; the encoder thinks it optional, so a record
/// without it encodes and BigQuery rejects the row. `opt` (last, so the
/// field numbers of the others do not move) lets a test take a column out of
/// the encoder's view, as an older container's schema would.
pub(crate) fn table_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("must", Type::String, Mode::Required),
            col("opt", Type::String, Mode::Nullable),
        ],
    }
}

pub(crate) fn encoder_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("must", Type::String, Mode::Nullable),
            col("opt", Type::String, Mode::Nullable),
        ],
    }
}

/// The encoder's view without `opt`.
fn older_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("must", Type::String, Mode::Nullable),
        ],
    }
}

pub(crate) fn pos(seq: u64) -> Position {
    Position {
        sequence_number: SequenceNumber::new(&seq.to_string()).unwrap(),
        sub_sequence_number: 0,
    }
}

pub(crate) fn rec(seq: u64, json: &str) -> Result<SourceRecord, BadRecord> {
    Ok(SourceRecord {
        shard_id: Arc::from(SHARD),
        stream_arn: Arc::from(ARN),
        position: pos(seq),
        event_index: seq as usize,
        partition_key: Arc::from("pk"),
        explicit_hash_key: None,
        arrival_micros: None,
        data: Bytes::from(json.to_string()),
    })
}

pub(crate) fn good(seq: u64) -> Result<SourceRecord, BadRecord> {
    rec(seq, &format!(r#"{{"key":"k{seq}","must":"x"}}"#))
}

/// Encodes, but BigQuery rejects it (no `must`).
pub(crate) fn rejected(seq: u64) -> Result<SourceRecord, BadRecord> {
    rec(seq, &format!(r#"{{"key":"k{seq}"}}"#))
}

/// The encoder refuses it (unknown field).
pub(crate) fn unknown_field(seq: u64) -> Result<SourceRecord, BadRecord> {
    rec(seq, &format!(r#"{{"key":"k{seq}","must":"x","extra":1}}"#))
}

/// Good for a schema with `opt`; an unknown field for one without.
fn with_opt(seq: u64) -> Result<SourceRecord, BadRecord> {
    rec(seq, &format!(r#"{{"key":"k{seq}","must":"x","opt":"y"}}"#))
}

pub(crate) fn not_json(seq: u64) -> Result<SourceRecord, BadRecord> {
    rec(seq, "{\"key\":")
}

pub(crate) struct Setup {
    pub emu: Emulator,
    pub table: TableName,
    pub deps: DeliveryDeps,
    pub state: Arc<FileStateStore>,
    pub spill: Arc<FileSpill>,
    pub dlq: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) fn quick() -> RetryPolicy {
    RetryPolicy {
        budget: Duration::from_secs(60),
        max_attempts: 2,
        initial_delay: Duration::from_millis(1),
        throttled_initial_delay: Duration::from_millis(1),
        factor: 1.0,
        max_delay: Duration::from_millis(1),
        jitter: false,
        reserve: Duration::ZERO,
    }
}

pub(crate) async fn setup(mode: WriteMode) -> anyhow::Result<Setup> {
    setup_with(mode, table_schema(), encoder_schema()).await
}

pub(crate) async fn setup_with(
    mode: WriteMode,
    table_schema: TableSchema,
    encoder_schema: TableSchema,
) -> anyhow::Result<Setup> {
    let table = TableName::new("p", "scen", &format!("t{}", uuid::Uuid::new_v4().simple()))?;
    let emu = emulator::start(EmulatorConfig {
        tables: vec![(table.clone(), table_schema)],
        ..Default::default()
    })
    .await?;
    let client = WriteClient::connect(&emu.endpoint())
        .await?
        .with_unary_retry(quick())
        .with_rpc_timeout(Duration::from_secs(2));
    let dir = tempfile::tempdir()?;
    let state = Arc::new(FileStateStore::new(dir.path().join("state")));
    let spill = Arc::new(FileSpill::new(dir.path().join("spill")));
    let dlq = dir.path().join("dlq.ndjson");
    let options =
        EncoderOptions { format: RowFormat::Proto, unknown_fields: UnknownFields::Reject };
    let mut deps = DeliveryDeps::new(
        client,
        EncoderCell::new(Encoder::new(&encoder_schema, options)?, options),
        DeliveryMode::of(mode, state.clone()),
        spill.clone(),
        Arc::new(FileDeadLetter::new(dlq.clone())),
    );
    deps.appender = AppenderOptions { retry: quick(), ..AppenderOptions::default() };
    deps.spill_reserve = Duration::from_millis(300);
    Ok(Setup { emu, table, deps, state, spill, dlq, _dir: dir })
}

impl Setup {
    pub(crate) async fn run(&self, records: &[Result<SourceRecord, BadRecord>]) -> ShardOutcome {
        let batch = ShardBatch { table: &self.table, stream_arn: ARN, shard_id: SHARD, records };
        deliver(batch, &self.deps, Instant::now() + Duration::from_secs(5)).await
    }

    pub(crate) fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .emu
            .read_rows(&self.table)
            .unwrap()
            .iter()
            .filter_map(|r| r.get("key").and_then(|k| k.as_str()).map(str::to_string))
            .collect();
        keys.sort();
        keys
    }

    pub(crate) fn letters(&self) -> Vec<DeadLetter> {
        std::fs::read_to_string(&self.dlq)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub(crate) async fn state(&self) -> ShardState {
        let (bytes, _) =
            self.state.load(&state_key(&self.table, ARN, SHARD)).await.unwrap().unwrap();
        ShardState::from_json(&bytes).unwrap()
    }
}

pub(crate) fn keys(seqs: &[u64]) -> Vec<String> {
    let mut k: Vec<String> = seqs.iter().map(|s| format!("k{s}")).collect();
    k.sort();
    k
}

pub(crate) const TABLE: RecordOutcome = RecordOutcome::Landed(Landing::Table);
pub(crate) const DLQ: RecordOutcome = RecordOutcome::Landed(Landing::DeadLetter);
pub(crate) const EARLIER: RecordOutcome = RecordOutcome::Landed(Landing::Earlier);

#[tokio::test]
async fn happy_path_then_redelivery_is_skipped() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    let batch: Vec<_> = (1..=5).map(good).collect();
    let out = s.run(&batch).await;
    assert_eq!(out.records, vec![TABLE; 5]);
    assert_eq!(out.gave_back, None);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5]));
    let st = s.state().await;
    assert_eq!((st.next_offset, st.last_position.clone()), (5, Some(pos(5))));
    // Kinesis delivers the same batch again plus one new record.
    let mut more = batch.clone();
    more.push(good(6));
    let out = s.run(&more).await;
    assert_eq!(out.records, [vec![EARLIER; 5], vec![TABLE]].concat());
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(out.stats.finalizes + out.stats.rotations, 0);
    Ok(())
}

#[tokio::test]
async fn crash_after_the_append_resolves_already_exists_without_duplicates() -> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await; // state and stream exist
    let batch: Vec<_> = (2..=4).map(good).collect();
    let hook = Arc::new(CrashPoints::counting());
    s.deps.crash = Some(hook.clone());
    s.run(&batch).await;
    let after_round = hook.log().iter().position(|b| *b == Boundary::AfterAppendRound).unwrap();
    s.deps.crash = Some(Arc::new(CrashPoints::at(after_round)));
    let crashed = s.run(&[good(5)]).await; // appended, then the container dies
    assert!(crashed.gave_back.is_some());
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5]));
    s.deps.crash = None;
    // The retry maps record 5 to the same offset: ALREADY_EXISTS, resolved.
    let out = s.run(&[good(5), good(6)]).await;
    assert_eq!(out.records, vec![TABLE, TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(out.stats.finalizes, 1, "{:?}", out.stats);
    Ok(())
}

#[tokio::test]
async fn bad_records_go_to_the_dead_letter_queue_and_the_rest_lands() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    let batch = vec![good(2), not_json(3), unknown_field(4), good(5), rejected(6), good(7)];
    let out = s.run(&batch).await;
    assert_eq!(out.records, vec![TABLE, DLQ, DLQ, TABLE, DLQ, TABLE]);
    assert_eq!(s.keys(), keys(&[1, 2, 5, 7]));
    let mut reasons: Vec<(String, Reason)> =
        s.letters().iter().map(|l| (l.sequence_number.to_string(), l.reason)).collect();
    reasons.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        reasons,
        vec![
            ("3".into(), Reason::InvalidJson),
            ("4".into(), Reason::UnknownField),
            ("6".into(), Reason::RejectedByBigquery)
        ]
    );
    // Rows before the refused record told the stream's end: no rotation.
    assert_eq!(out.stats.rotations, 0, "{:?}", out.stats);
    let st = s.state().await;
    assert_eq!((st.next_offset, st.intent.clone()), (4, None));
    Ok(())
}

#[tokio::test]
async fn a_refused_record_first_is_settled_by_a_probe_not_a_rotation() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    let out = s.run(&[unknown_field(2), good(3), good(4)]).await;
    assert_eq!(out.records, vec![DLQ, TABLE, TABLE]);
    assert_eq!(s.keys(), keys(&[1, 3, 4]));
    assert_eq!((out.stats.rotations, out.stats.finalizes), (0, 0), "{:?}", out.stats);
    Ok(())
}

#[tokio::test]
async fn a_record_an_earlier_attempt_wrote_stays_in_the_table_when_the_schema_now_refuses_it()
-> anyhow::Result<()> {
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    // Attempt 1 knows `opt`: appends records 2..4, then dies after the answers.
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    let crashed = s.run(&[with_opt(2), good(3), good(4)]).await;
    assert!(
        matches!(&crashed.gave_back, Some(GaveBack::Crashed(c)) if c.contains("AfterAppendRound")),
        "{crashed:?}"
    );
    s.deps.crash = None;
    // The retry runs where the schema view lacks `opt`: record 2 is refused
    // now, but the stream's row count shows an earlier attempt wrote it.
    s.deps.encoder.replace(&older_schema())?;
    let out = s.run(&[with_opt(2)]).await;
    assert_eq!(out.records, vec![TABLE], "{out:?}");
    assert_eq!(out.stats.finalizes, 1);
    // The rest of the batch, and one more: 3 and 4 are below the row count,
    // 5 goes to a new stream.
    let out = s.run(&[with_opt(2), good(3), good(4), good(5)]).await;
    assert_eq!(out.records, vec![EARLIER, TABLE, TABLE, TABLE], "{out:?}");
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5]));
    // Scenario 7: in the table, so never in the dead-letter queue too.
    assert!(s.letters().is_empty(), "{:?}", s.letters());
    Ok(())
}

#[tokio::test]
async fn a_refused_first_record_with_rows_after_it_in_the_stream_is_resolved() -> anyhow::Result<()>
{
    let mut s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    s.deps.crash = Some(Arc::new(CrashPoints::on(Boundary::AfterAppendRound)));
    s.run(&[with_opt(2), good(3), good(4)]).await;
    s.deps.crash = None;
    s.deps.encoder.replace(&older_schema())?;
    // The probe appends record 3 at its offset: ALREADY_EXISTS, so the
    // mapping stands and the stream's row count settles it.
    let out = s.run(&[with_opt(2), good(3), good(4), good(5)]).await;
    assert_eq!(out.records, vec![TABLE; 4], "{out:?}");
    assert_eq!(s.keys(), keys(&[1, 2, 3, 4, 5]));
    assert!(s.letters().is_empty(), "in the table, not dead-lettered: {:?}", s.letters());
    Ok(())
}

#[tokio::test]
async fn a_new_column_announced_by_bigquery_swaps_the_encoder() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    s.emu.add_columns(&s.table, vec![col("late", Type::String, Mode::Nullable)])?;
    let late = |seq: u64| rec(seq, &format!(r#"{{"key":"k{seq}","must":"x","late":"z"}}"#));
    // The warm connection learns the new schema from its next response
    // (`updated_schema`); the record that needs it is refused until then.
    let out = s.run(&[good(2), late(3)]).await;
    assert_eq!(out.records, vec![TABLE, DLQ]);
    let out = s.run(&[late(4)]).await;
    assert_eq!(out.records, vec![TABLE], "the encoder now knows `late`");
    let row = s.emu.read_rows(&s.table)?.into_iter().last().unwrap();
    assert_eq!(row.get("late").and_then(|v| v.as_str()), Some("z"));
    Ok(())
}

#[tokio::test]
async fn bigquery_down_spills_in_doubt_records_with_their_offsets() -> anyhow::Result<()> {
    let s = setup(WriteMode::ExactlyOnce).await?;
    s.run(&[good(1)]).await;
    s.emu.faults().set_down(true);
    let out = s.run(&[good(2), not_json(3), good(4)]).await;
    s.emu.faults().set_down(false);
    assert_eq!(
        out.records,
        vec![RecordOutcome::Landed(Landing::Spill), DLQ, RecordOutcome::Landed(Landing::Spill)]
    );
    let keys_listed = s.spill.list(&SpillFilter::default()).await?;
    assert_eq!(keys_listed.len(), 1);
    let spilled = s.spill.read(&keys_listed[0]).await?;
    assert_eq!(spilled.reason, SpillReason::InDoubt);
    let st = s.state().await;
    assert_eq!(spilled.write_stream.as_deref(), Some(st.write_stream.as_str()));
    assert_eq!(
        spilled.records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![Some(1), Some(2)]
    );
    assert_eq!(st.spills, vec![keys_listed[0].path()]);
    assert_eq!((st.next_offset, st.last_position.clone()), (3, Some(pos(4))));
    // BigQuery is back: the next record finds the stream short (the in-doubt
    // rows never landed), resolves it and continues in a new stream.
    let out = s.run(&[good(5)]).await;
    assert_eq!(out.records, vec![TABLE]);
    assert_eq!(s.keys(), keys(&[1, 5]));
    Ok(())
}

#[tokio::test]
async fn at_least_once_writes_the_default_stream_and_dead_letters_rejects() -> anyhow::Result<()> {
    let s = setup(WriteMode::AtLeastOnce).await?;
    let out = s.run(&[good(1), rejected(2), not_json(3), good(4)]).await;
    assert_eq!(out.records, vec![TABLE, DLQ, DLQ, TABLE]);
    assert_eq!(s.keys(), keys(&[1, 4]));
    assert_eq!(s.letters().len(), 2);
    assert!(
        s.state.load(&state_key(&s.table, ARN, SHARD)).await?.is_none(),
        "no state in at-least-once"
    );
    s.emu.faults().set_down(true);
    let out = s.run(&[good(5)]).await;
    s.emu.faults().set_down(false);
    assert_eq!(out.records, vec![RecordOutcome::Landed(Landing::Spill)]);
    Ok(())
}

#[tokio::test]
async fn columns_that_are_not_proto_identifiers_land_through_proto_rows() -> anyhow::Result<()> {
    // The real column name travels in the descriptor's `column_name` field option,
    // which only survives when the appender sends the encoder's descriptor bytes.
    let schema = TableSchema {
        fields: vec![
            col("key", Type::String, Mode::Required),
            col("user-name", Type::String, Mode::Nullable),
        ],
    };
    let s = setup_with(WriteMode::ExactlyOnce, schema.clone(), schema).await?;
    let out = s.run(&[rec(1, r#"{"key":"k1","user-name":"ada"}"#)]).await;
    assert_eq!(out.records, vec![TABLE]);
    let rows = s.emu.read_rows(&s.table)?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["user-name"], "ada");
    Ok(())
}
