//! The source step on third-party data: KPL aggregates made by awslabs'
//! `aws-kinesis-agg` (Python) and the documented Lambda event sample in
//! `tests/fixtures`.

use crate::common;

use aws_lambda_events::event::kinesis::KinesisEvent;
use kinesis_bigquery::source::{self, BadReason, SourceRecord};
use serde_json::{Value, json};

const SHARD: &str = "shardId-000000000006";
const STREAM: &str = "arn:aws:kinesis:us-east-2:123456789012:stream/app-events";
const SEQ: &str = "4959033827149025660855969253836157109592157598913658880";

fn read(rel: &str) -> anyhow::Result<Vec<u8>> {
    let path = common::fixture(rel);
    std::fs::read(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A one-record event carrying `data`, as Lambda would deliver it.
fn event_of(data: &[u8]) -> anyhow::Result<KinesisEvent> {
    use base64::Engine;
    let seq = format!("{SEQ}4");
    Ok(serde_json::from_value(json!({"Records": [{
        "eventID": format!("{SHARD}:{seq}"),
        "eventSourceARN": STREAM,
        "kinesis": {
            "partitionKey": "agg-pk",
            "sequenceNumber": seq,
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "approximateArrivalTimestamp": 1764064802.123,
        }
    }]}))?)
}

/// (partition key, explicit hash key, parsed JSON) of each sub-record.
fn summary(records: &[SourceRecord]) -> anyhow::Result<Vec<(String, Option<String>, Value)>> {
    records
        .iter()
        .map(|r| {
            Ok((
                r.partition_key.to_string(),
                r.explicit_hash_key.as_deref().map(str::to_string),
                serde_json::from_slice(&r.data)?,
            ))
        })
        .collect()
}

fn expected(rel: &str) -> anyhow::Result<Vec<(String, Option<String>, Value)>> {
    let doc: Value = serde_json::from_slice(&read(rel)?)?;
    let subs = doc["sub_records"].as_array().ok_or_else(|| anyhow::anyhow!("no sub_records"))?;
    Ok(subs
        .iter()
        .map(|s| {
            (
                s["partition_key"].as_str().unwrap_or_default().to_string(),
                s["explicit_hash_key"].as_str().map(str::to_string),
                s["data"].clone(),
            )
        })
        .collect())
}

fn deaggregate(file: &str) -> anyhow::Result<Vec<SourceRecord>> {
    let records = source::records(&mut event_of(&read(file)?)?)?;
    records.into_iter().map(|r| r.map_err(|bad| anyhow::anyhow!("{}", bad.reason))).collect()
}

#[test]
fn agg_5_deaggregates_to_the_expected_records() -> anyhow::Result<()> {
    let records = deaggregate("kpl/agg-5.bin")?;
    assert_eq!(summary(&records)?, expected("kpl/agg-5.expected.json")?);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.position.sequence_number.as_str(), format!("{SEQ}4"));
        assert_eq!(r.position.sub_sequence_number, i as u64);
        assert_eq!(r.event_index, 0);
        assert_eq!(&*r.shard_id, SHARD);
        assert_eq!(&*r.stream_arn, STREAM);
        assert_eq!(r.arrival_micros, Some(1_764_064_802_123_000));
    }
    Ok(())
}

#[test]
fn agg_200_deaggregates_to_the_expected_records() -> anyhow::Result<()> {
    let records = deaggregate("kpl/agg-200.bin")?;
    let want = expected("kpl/agg-200.expected.json")?;
    assert_eq!(want.len(), 200);
    assert_eq!(summary(&records)?, want);
    let subs: Vec<u64> = records.iter().map(|r| r.position.sub_sequence_number).collect();
    assert_eq!(subs, (0..200).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn agg_5_with_a_flipped_byte_is_one_bad_record_with_the_raw_bytes() -> anyhow::Result<()> {
    let raw = read("kpl/agg-5-bad-md5.bin")?;
    let records = source::records(&mut event_of(&raw)?)?;
    assert_eq!(records.len(), 1, "one Kinesis record, one item");
    let Err(bad) = &records[0] else { anyhow::bail!("accepted a corrupt aggregate") };
    assert!(matches!(bad.reason, BadReason::KplChecksum { .. }), "{}", bad.reason);
    assert_eq!(&bad.record.data[..], &raw[..]);
    assert_eq!(bad.position().to_string(), format!("{SEQ}4/0"));
    assert_eq!(&*bad.record.partition_key, "agg-pk");
    assert_eq!(&*bad.record.shard_id, SHARD);
    assert_eq!(&*bad.record.stream_arn, STREAM);
    assert_eq!(bad.record.arrival_micros, Some(1_764_064_802_123_000));
    Ok(())
}

#[test]
fn the_sample_event_yields_the_exact_record_list() -> anyhow::Result<()> {
    let mut event = common::sample_event()?;
    let records = source::records(&mut event)?;
    let agg = expected("kpl/agg-5.expected.json")?;

    // (event index, position, partition key, explicit hash key, arrival ms, data).
    let mut want: Vec<(usize, String, String, Option<String>, i64, Value)> = Vec::new();
    let plain = |i: usize, pk: &str, data: Value| {
        (
            i,
            format!("{SEQ}{}/0", i * 2),
            pk.to_string(),
            None,
            1_764_064_800_123 + i as i64 * 1000,
            data,
        )
    };
    want.push(plain(
        0,
        "user-17",
        json!({"event_id":"p0","type":"search","user_id":17,"ts":"2026-11-25T10:00:00Z","tags":["a","b"],"lat":1.5,"lng":2.25}),
    ));
    want.push(plain(
        1,
        "user-18",
        json!({"event_id":"p1","type":"browse","user_id":18,"ts":"2026-11-25T10:00:01.5Z","tags":[],"lat":null,"lng":null}),
    ));
    for (sub, (pk, ehk, data)) in agg.into_iter().enumerate() {
        want.push((2, format!("{SEQ}4/{sub}"), pk, ehk, 1_764_064_802_123, data));
    }
    // The truncated JSON record is still a record here: deciding that it is
    // not JSON is the encoder's job (and the DLQ's).
    let mut got = Vec::new();
    for r in &records {
        let Ok(r) = r else { anyhow::bail!("unexpected bad record") };
        let data = serde_json::from_slice(&r.data)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&r.data).into_owned()));
        got.push((
            r.event_index,
            r.position.to_string(),
            r.partition_key.to_string(),
            r.explicit_hash_key.as_deref().map(str::to_string),
            r.arrival_micros.unwrap_or_default() / 1000,
            data,
        ));
    }
    want.push(plain(
        3,
        "user-19",
        Value::String(r#"{"event_id":"p3","type":"map","user_id":"not-a-number""#.into()),
    ));
    want.push(plain(
        4,
        "user-20",
        json!({"event_id":"p4","type":"map","user_id":20,"ts":"2026-11-25T10:00:04Z","tags":["x"],"lat":-33.9,"lng":151.2}),
    ));
    assert_eq!(got.len(), 2 + 5 + 2, "two plain, five from the aggregate, two plain");
    assert_eq!(got, want);
    assert!(records.iter().flatten().all(|r| &*r.shard_id == SHARD && &*r.stream_arn == STREAM));
    Ok(())
}
