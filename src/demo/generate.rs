//! Demo input: Kinesis records as a producer would write them — plain JSON,
//! KPL aggregates and a few corrupt records — spread over shards, with the
//! list of user records that must end up in the table exactly once.

use crate::pb::kpl::{AggregatedRecord, Record};
use base64::Engine as _;
use md5::{Digest, Md5};
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The KPL aggregate magic (awslabs `aggregation-format.md`).
const KPL_MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The demo's Kinesis stream.
pub const STREAM_ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/demo-clicks";

/// What a producer put on the stream, per shard, in sequence order.
pub struct Generated {
    /// `(shard id, Kinesis records)`; each record is one Lambda event record.
    pub shards: Vec<(String, Vec<Value>)>,
    /// `event_id` of every user record that must reach the table.
    pub good: Vec<String>,
    /// User records (or whole aggregates) that must go to the dead-letter
    /// queue, by the reason expected.
    pub corrupt: CorruptCounts,
    /// User records in total (after de-aggregation; a corrupt aggregate
    /// counts once).
    pub user_records: u64,
}

/// Corrupt records planted, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorruptCounts {
    pub invalid_json: u64,
    pub schema_mismatch: u64,
    pub kpl_checksum: u64,
    /// `--mode cdc`: changes whose operation is no row change (Debezium's
    /// `t` truncate).
    pub change_unreadable: u64,
}

impl CorruptCounts {
    pub fn total(&self) -> u64 {
        self.invalid_json + self.schema_mismatch + self.kpl_checksum + self.change_unreadable
    }
}

/// Generates about `user_records` user records over `shards` shards,
/// deterministically from `seed`: ~70% in KPL aggregates of 2–8, ~2% corrupt.
pub fn generate(user_records: u64, shards: usize, seed: u64) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed);
    let shards = shards.max(1);
    let mut out = Generated {
        shards: (0..shards).map(|i| (format!("shardId-{i:012}"), Vec::new())).collect(),
        good: Vec::new(),
        corrupt: CorruptCounts::default(),
        user_records: 0,
    };
    let mut seq = vec![0u64; shards];
    let mut next_id = 0u64;
    let start_ms = chrono::Utc::now().timestamp_millis() - 3_600_000;
    while out.user_records < user_records {
        let shard = rng.random_range(0..shards);
        let arrival_ms = start_ms + i64::try_from(out.user_records).unwrap_or(0) * 10;
        let roll: f64 = rng.random();
        let data = if roll < 0.01 {
            out.corrupt.invalid_json += 1;
            out.user_records += 1;
            let event = event_json(&mut rng, &mut next_id, arrival_ms);
            let text = event.to_string();
            // Truncated mid-object: not JSON any more.
            text.as_bytes().get(..text.len() / 2).unwrap_or_default().to_vec()
        } else if roll < 0.02 {
            out.corrupt.schema_mismatch += 1;
            out.user_records += 1;
            let mut event = event_json(&mut rng, &mut next_id, arrival_ms);
            event["user_id"] = json!("not-a-number");
            event.to_string().into_bytes()
        } else if roll < 0.025 {
            out.corrupt.kpl_checksum += 1;
            out.user_records += 1;
            let events: Vec<Value> =
                (0..3).map(|_| event_json(&mut rng, &mut next_id, arrival_ms)).collect();
            let mut bytes = aggregate(&events, &mut rng);
            // Flip a byte inside the protobuf: the MD5 trailer no longer matches.
            if let Some(b) = bytes.get_mut(KPL_MAGIC.len() + 2) {
                *b ^= 0x55;
            }
            bytes
        } else if roll < 0.30 {
            let event = event_json(&mut rng, &mut next_id, arrival_ms);
            out.good.push(event_id(&event));
            out.user_records += 1;
            event.to_string().into_bytes()
        } else {
            let n = rng.random_range(2..=8);
            let events: Vec<Value> =
                (0..n).map(|_| event_json(&mut rng, &mut next_id, arrival_ms)).collect();
            out.good.extend(events.iter().map(event_id));
            out.user_records += n;
            aggregate(&events, &mut rng)
        };
        let Some((shard_id, records)) = out.shards.get_mut(shard) else { continue };
        let Some(counter) = seq.get_mut(shard) else { continue };
        *counter += 1;
        let partition_key = format!("user-{}", rng.random_range(0..1000));
        records.push(kinesis_record(shard_id, shard, *counter, arrival_ms, &data, &partition_key));
    }
    out
}

fn event_id(event: &Value) -> String {
    event["event_id"].as_str().unwrap_or_default().to_string()
}

/// The click types the generator draws from (`demo --routing` makes one
/// table of each).
pub const TYPES: [&str; 4] = ["view", "click", "add_to_cart", "purchase"];

/// One click-stream event, shaped like the table's columns.
pub(super) fn event_json(rng: &mut StdRng, next_id: &mut u64, arrival_ms: i64) -> Value {
    *next_id += 1;
    const TAGS: [&str; 6] = ["mobile", "web", "promo", "returning", "eu", "us"];
    let kind = TYPES.get(rng.random_range(0..TYPES.len())).copied().unwrap_or("view");
    let tags: Vec<&str> = TAGS.iter().copied().filter(|_| rng.random_bool(0.3)).collect();
    let ts = chrono::DateTime::from_timestamp_millis(arrival_ms - rng.random_range(0..5_000))
        .unwrap_or_default()
        .to_rfc3339();
    let mut event = json!({
        "event_id": format!("evt-{:08}", *next_id),
        "type": kind,
        "user_id": rng.random_range(1..100_000),
        "ts": ts,
        "tags": tags,
        "page": {"path": format!("/p/{}", rng.random_range(1..500)), "referrer": null},
    });
    if rng.random_bool(0.8) {
        event["lat"] = json!(rng.random_range(-60.0..60.0));
        event["lng"] = json!(rng.random_range(-180.0..180.0));
    }
    if kind == "purchase" {
        event["amount"] =
            json!(format!("{}.{:02}", rng.random_range(1..500), rng.random_range(0..100)));
    }
    event
}

/// A KPL aggregate of `events`: magic, protobuf, MD5 of the protobuf.
pub(super) fn aggregate(events: &[Value], rng: &mut StdRng) -> Vec<u8> {
    let keys: Vec<String> = (0..events.len().min(3)).map(|i| format!("user-{i}")).collect();
    let records = events
        .iter()
        .enumerate()
        .map(|(i, e)| Record {
            partition_key_index: (i % keys.len().max(1)) as u64,
            explicit_hash_key_index: None,
            data: e.to_string().into_bytes(),
            tags: Vec::new(),
        })
        .collect();
    let agg = AggregatedRecord {
        partition_key_table: keys,
        explicit_hash_key_table: Vec::new(),
        records,
    };
    let body = agg.encode_to_vec();
    let mut out = KPL_MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&Md5::digest(&body));
    let _ = rng;
    out
}

/// One record of a Lambda Kinesis event, in the documented JSON shape.
pub(super) fn kinesis_record(
    shard_id: &str,
    shard: usize,
    counter: u64,
    arrival_ms: i64,
    data: &[u8],
    partition_key: &str,
) -> Value {
    // Kinesis sequence numbers are decimal strings that grow within a shard.
    let sequence_number = format!("4959{shard:04}{counter:048}");
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": sequence_number,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": arrival_ms as f64 / 1000.0,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{shard_id}:{sequence_number}"),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/demo",
        "awsRegion": "us-east-1",
        "eventSourceARN": STREAM_ARN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_complete() {
        let a = generate(500, 2, 7);
        let b = generate(500, 2, 7);
        assert_eq!(a.good, b.good);
        assert!(a.user_records >= 500);
        assert_eq!(a.good.len() as u64 + corrupt_user_records(&a), a.user_records);
        let mut ids = a.good.clone();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), a.good.len(), "event ids are unique");
    }

    fn corrupt_user_records(g: &Generated) -> u64 {
        g.corrupt.total()
    }

    #[test]
    fn records_parse_as_a_lambda_event() {
        let g = generate(50, 1, 1);
        let records = g.shards[0].1.clone();
        let event: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_value(json!({ "Records": records })).unwrap();
        assert!(!event.records.is_empty());
    }
}
