//! Kinesis events built in code, in the documented Lambda shape, for the
//! handler's tests and benchmark (shared with `benches/handler.rs` by path).

use base64::Engine as _;
use serde_json::{Value, json};

pub const STREAM_ARN: &str = "arn:aws:kinesis:us-east-2:123456789012:stream/app-events";

/// One Kinesis record of an event.
pub struct Rec {
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// The sequence number of the `i`-th record of a shard: 56 digits, growing.
pub fn seq(i: usize) -> String {
    format!("4959033827149025660855969253836157109592157598913{:07}", i * 2)
}

/// A Lambda Kinesis event holding `records` of `shard`, in order.
pub fn event(shard: &str, records: &[Rec]) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": b64.encode(&r.data),
                    "approximateArrivalTimestamp": 1_764_064_800.0 + i as f64 / 1000.0,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{}", r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-2",
                "eventSourceARN": STREAM_ARN,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// A JSON event of the `events.schema.json` table, padded with tags to
/// about `size` bytes (at least ~120).
pub fn row_json(i: usize, size: usize) -> Vec<u8> {
    let base = row_value(i, &[]).to_string().len();
    // Each tag `"tag-000000",` adds 13 bytes.
    let mut n = size.saturating_sub(base) / 13;
    let mut out = loop {
        let tags: Vec<String> = (0..n).map(|t| format!("tag-{:06}", t % 1_000_000)).collect();
        let text = row_value(i, &tags).to_string().into_bytes();
        if text.len() <= size || n == 0 {
            break text;
        }
        n -= 1;
    };
    // Pad the last few bytes with spaces (valid JSON) to hit the size exactly.
    while out.len() < size {
        out.push(b' ');
    }
    out
}

fn row_value(i: usize, tags: &[String]) -> Value {
    let kind = ["search", "browse", "map"].get(i % 3).copied().unwrap_or("map");
    json!({
        "event_id": format!("e{i}"),
        "type": kind,
        "user_id": i as i64 * 7,
        "ts": format!("2026-11-25T10:{:02}:{:02}.{:03}Z", (i / 60) % 60, i % 60, i % 1000),
        "tags": tags,
        "lat": (i % 180) as f64 - 90.0 + 0.5,
        "lng": null,
    })
}

/// `n` plain records of about `size` bytes each, sequence numbers from `first`.
pub fn plain_records(first: usize, n: usize, size: usize) -> Vec<Rec> {
    (first..first + n)
        .map(|i| Rec {
            sequence_number: seq(i),
            partition_key: format!("user-{}", i % 100),
            data: row_json(i, size),
        })
        .collect()
}
