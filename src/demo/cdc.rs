//! `demo --mode cdc`: a source table's changes (Debezium-style `op`: `c`,
//! `u`, `d`, and a few `t` truncates that are no row change) published with
//! partition key = primary key, some in KPL aggregates, and the check that
//! the BigQuery table converged to the last change of each key in shard
//! order — under the same faults as the exactly-once demo.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::generate::{CorruptCounts, Generated, aggregate, kinesis_record};
use crate::emulator::{SchemaJsonError, parse_bq_schema};
use crate::pb::storage::TableSchema;
use crate::table::{TableName, TableNameError};

/// `demo.crm.accounts`.
///
/// # Errors
/// Only if the constant were invalid (a unit test proves it is not).
pub fn table_name() -> Result<TableName, TableNameError> {
    TableName::new("demo", "crm", "accounts")
}

/// The primary key column.
pub const KEY: &str = "id";

/// The field holding the operation (`CDC_CHANGE_TYPE_FIELD`).
pub const CHANGE_TYPE_FIELD: &str = "op";

const SCHEMA_JSON: &str = r#"[
  {"name": "id", "type": "INT64", "mode": "REQUIRED"},
  {"name": "balance", "type": "INT64"},
  {"name": "status", "type": "STRING"},
  {"name": "op", "type": "STRING"}
]"#;

/// # Errors
/// Only if the constant were malformed (a unit test proves it is not).
pub fn schema() -> Result<TableSchema, SchemaJsonError> {
    parse_bq_schema(SCHEMA_JSON)
}

/// A row of the table as the check compares it: `(balance, status)`.
pub type RowValue = (i64, String);

/// The table the generated changes must leave.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Per key, the value of its last change; deleted keys are absent.
    pub table: BTreeMap<i64, RowValue>,
    pub changes: u64,
    pub upserts: u64,
    pub deletes: u64,
}

/// About `changes` changes to `changes / 8` keys (at least 10), in bursts
/// on one key; every key on one shard (partition key = primary key); about
/// a third of the Kinesis records are KPL aggregates of 2–5 changes; ~1%
/// are truncates (dead letters).
pub fn generate(changes: u64, shards: usize, seed: u64) -> (Generated, Expected) {
    let mut rng = StdRng::seed_from_u64(seed);
    let shards = shards.max(1);
    let keys = (changes / 8).max(10);
    let mut per_shard: Vec<Vec<Value>> = vec![Vec::new(); shards];
    let mut expected = BTreeMap::new();
    let (mut upserts, mut deletes, mut truncates) = (0, 0, 0);
    let mut key = 0i64;
    for _ in 0..changes {
        if rng.random_bool(0.5) {
            key = rng.random_range(0..i64::try_from(keys).unwrap_or(i64::MAX));
        }
        let balance = rng.random_range(0..1_000_000i64);
        let status = ["active", "frozen", "closed"][rng.random_range(0..3)];
        let op = if rng.random_bool(0.01) {
            truncates += 1;
            "t"
        } else if !expected.contains_key(&key) {
            "c"
        } else if rng.random_bool(0.2) {
            "d"
        } else {
            "u"
        };
        match op {
            "d" => {
                deletes += 1;
                expected.remove(&key);
            }
            "t" => {}
            _ => {
                upserts += 1;
                expected.insert(key, (balance, status.to_string()));
            }
        }
        let shard = usize::try_from(key.unsigned_abs()).unwrap_or(0) % shards;
        if let Some(list) = per_shard.get_mut(shard) {
            list.push(json!({"id": key, "balance": balance, "status": status, "op": op}));
        }
    }
    let start_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    let mut generated = Generated {
        shards: Vec::new(),
        good: Vec::new(),
        corrupt: CorruptCounts { change_unreadable: truncates, ..CorruptCounts::default() },
        user_records: changes,
    };
    for (shard, changes) in per_shard.into_iter().enumerate() {
        let shard_id = format!("shardId-{shard:012}");
        let mut records = Vec::new();
        let mut rest = changes.as_slice();
        let mut counter = 0u64;
        while !rest.is_empty() {
            let n = if rng.random_bool(0.3) { rng.random_range(2..=5) } else { 1 };
            let (these, tail) = rest.split_at(n.min(rest.len()));
            rest = tail;
            counter += 1;
            let data = match these {
                [one] => one.to_string().into_bytes(),
                many => aggregate(many, &mut rng),
            };
            let partition_key =
                format!("account-{}", these.first().map_or(&json!(0), |c| &c["id"]));
            let arrival_ms = start_ms + i64::try_from(counter).unwrap_or(0) * 10;
            records.push(kinesis_record(
                &shard_id,
                shard,
                counter,
                arrival_ms,
                &data,
                &partition_key,
            ));
        }
        generated.shards.push((shard_id, records));
    }
    (generated, Expected { table: expected, changes, upserts, deletes })
}

/// How the table compares with the last change of each key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Convergence {
    pub changes: u64,
    pub upserts: u64,
    pub deletes: u64,
    /// Keys that must be in the table (their last change is an upsert).
    pub keys_expected: u64,
    pub rows_in_table: u64,
    /// Keys whose row is missing, holds an older value, shows twice, or
    /// should have been deleted; and rows that cannot be read as accounts.
    pub missing: Vec<i64>,
    pub stale: Vec<i64>,
    pub duplicated: Vec<i64>,
    pub not_deleted: Vec<i64>,
    pub unreadable: u64,
}

impl Convergence {
    /// The table equals, key by key, the last change of each key.
    pub fn converged(&self) -> bool {
        self.missing.is_empty()
            && self.stale.is_empty()
            && self.duplicated.is_empty()
            && self.not_deleted.is_empty()
            && self.unreadable == 0
    }
}

/// Compares the table's rows (canonical JSON, as the emulator reads them)
/// with `expected`.
pub fn check(expected: &Expected, rows: &[Value]) -> Convergence {
    let mut out = Convergence {
        changes: expected.changes,
        upserts: expected.upserts,
        deletes: expected.deletes,
        keys_expected: expected.table.len() as u64,
        rows_in_table: rows.len() as u64,
        ..Convergence::default()
    };
    let mut seen = BTreeMap::new();
    for row in rows {
        // INT64 reads as a decimal string (canonical JSON).
        let int = |c: &str| row[c].as_str().and_then(|s| s.parse::<i64>().ok());
        let (Some(id), Some(balance), Some(status)) =
            (int("id"), int("balance"), row["status"].as_str())
        else {
            out.unreadable += 1;
            continue;
        };
        if seen.insert(id, (balance, status.to_string())).is_some() {
            out.duplicated.push(id);
        }
    }
    for (id, want) in &expected.table {
        match seen.get(id) {
            None => out.missing.push(*id),
            Some(got) if got != want => out.stale.push(*id),
            Some(_) => {}
        }
    }
    out.not_deleted = seen.keys().filter(|id| !expected.table.contains_key(id)).copied().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_parse() {
        assert_eq!(schema().unwrap().fields.len(), 4);
        assert_eq!(table_name().unwrap().to_string(), "demo.crm.accounts");
    }

    #[test]
    fn every_key_on_one_shard_with_updates_and_deletes() {
        let (g, e) = generate(2_000, 3, 5);
        assert!(e.upserts > 0 && e.deletes > 0, "{} {}", e.upserts, e.deletes);
        assert!(g.corrupt.change_unreadable > 0);
        let mut shard_of = BTreeMap::new();
        for (shard, records) in &g.shards {
            for r in records {
                let key = r["kinesis"]["partitionKey"].as_str().unwrap().to_string();
                assert_eq!(shard_of.entry(key).or_insert(shard.clone()), shard);
            }
        }
        assert_eq!(generate(2_000, 3, 5).1, e, "deterministic");
    }

    #[test]
    fn finds_missing_stale_duplicated_and_undeleted_keys() {
        let g = Expected {
            table: BTreeMap::from([(1, (10, "active".into())), (2, (20, "active".into()))]),
            ..Expected::default()
        };
        let row = |id: i64, b: i64| json!({"id": id.to_string(), "balance": b.to_string(), "status": "active"});
        assert!(check(&g, &[row(1, 10), row(2, 20)]).converged());
        let c = check(&g, &[row(1, 11), row(3, 30), row(3, 30)]);
        assert_eq!(
            (c.missing, c.stale, c.duplicated, c.not_deleted),
            (vec![2], vec![1], vec![3], vec![3])
        );
    }
}
