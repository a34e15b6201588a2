//! What the CDC tests share: a keyed table with a primary key, change
//! records in the shape a Debezium-style producer writes, and the table read
//! back as a key → value map.

use crate::common::{Harness, col};
use crate::events::{Rec, seq};
use crate::handler_support::World;
use kinesis_bigquery::pb::storage::TableSchema;
use kinesis_bigquery::pb::storage::table_field_schema::{Mode, Type};
use std::collections::BTreeMap;

/// `id INT64 REQUIRED, v INT64, op STRING`, `PRIMARY KEY (id)`.
pub fn keyed_schema() -> TableSchema {
    TableSchema {
        fields: vec![
            col("id", Type::Int64, Mode::Required),
            col("v", Type::Int64, Mode::Nullable),
            col("op", Type::String, Mode::Nullable),
        ],
    }
}

/// A world whose table has a primary key on `id`.
pub async fn keyed_world() -> anyhow::Result<World> {
    let harness = Harness::start().await?;
    let table = harness.new_table(keyed_schema())?;
    harness.emulator.set_primary_key(&table, &["id"])?;
    let bucket = harness.new_bucket().await?;
    let queue = harness.new_queue().await?;
    Ok(World { harness, table, bucket, queue, dir: tempfile::tempdir()? })
}

/// The environment of a CDC function reading the change type from `op`.
pub fn cdc_env() -> Vec<(&'static str, String)> {
    vec![("WRITE_MODE", "cdc".into()), ("CDC_CHANGE_TYPE_FIELD", "op".into())]
}

/// One change of a source table.
#[derive(Clone, Debug)]
pub struct Change {
    pub id: i64,
    pub v: i64,
    /// Debezium's `op`: `c`, `u`, `d`.
    pub op: &'static str,
}

impl Change {
    pub fn json(&self) -> Vec<u8> {
        serde_json::json!({"id": self.id, "v": self.v, "op": self.op}).to_string().into_bytes()
    }
}

/// Change `i` of the shard as a Kinesis record (partition key = primary key).
pub fn record(i: usize, c: &Change) -> Rec {
    Rec { sequence_number: seq(i), partition_key: format!("id-{}", c.id), data: c.json() }
}

/// What the table must hold after `changes`, applied in shard order.
pub fn expected(changes: &[Change]) -> BTreeMap<i64, i64> {
    let mut table = BTreeMap::new();
    for c in changes {
        if c.op == "d" {
            table.remove(&c.id);
        } else {
            table.insert(c.id, c.v);
        }
    }
    table
}

/// The table as the emulator's merged view shows it.
pub fn table(world: &World) -> anyhow::Result<BTreeMap<i64, i64>> {
    let mut out = BTreeMap::new();
    for row in world.harness.emulator.read_rows(&world.table)? {
        // INT64 reads as a decimal string (canonical JSON).
        let int = |c: &str| row[c].as_str().and_then(|s| s.parse::<i64>().ok());
        let id = int("id").ok_or_else(|| anyhow::anyhow!("no id in {row}"))?;
        let v = int("v").ok_or_else(|| anyhow::anyhow!("no v in {row}"))?;
        if out.insert(id, v).is_some() {
            anyhow::bail!("key {id} shows twice");
        }
    }
    Ok(out)
}
