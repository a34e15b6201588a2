//! The Lambda Kinesis event as Lambda delivers it, read with exact arrival
//! times: the entry to the flow (`LambdaEvent<source::Event>`).
//!
//! Why not `aws_lambda_events`' own `Deserialize`: in 1.2.1 its
//! `SecondTimestamp` reads the digits after the decimal point as a count of
//! milliseconds, so `1764064800.5` becomes …800.005 and `.120` becomes 12 ms
//! (only three-digit fractions without a trailing zero survive, and a float
//! printed with more digits can fail the whole event). Kinesis stamps
//! `approximateArrivalTimestamp` in seconds with millisecond precision.
//! [`Event`] reads the same JSON in one pass into the same
//! [`KinesisEvent`], with the arrival time taken from the number itself.

use std::ops::Deref;

use aws_lambda_events::encodings::{Base64Data, SecondTimestamp};
use aws_lambda_events::event::kinesis::{
    KinesisEncryptionType, KinesisEvent, KinesisEventRecord, KinesisRecord,
};
use chrono::{DateTime, Utc};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A Lambda Kinesis event; derefs to [`KinesisEvent`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event(pub KinesisEvent);

impl Deref for Event {
    type Target = KinesisEvent;
    fn deref(&self) -> &KinesisEvent {
        &self.0
    }
}

/// For events built in code (tests, benchmarks, the demo), whose arrival
/// times are already exact.
impl From<KinesisEvent> for Event {
    fn from(e: KinesisEvent) -> Self {
        Self(e)
    }
}

impl From<Event> for KinesisEvent {
    fn from(e: Event) -> Self {
        e.0
    }
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = WireEvent::deserialize(d)?;
        let mut event = KinesisEvent::default();
        event.records = wire.records.into_iter().map(WireRecord::into_record).collect();
        Ok(Event(event))
    }
}

// Field names as in the documented event (and in aws_lambda_events).
#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "Records")]
    records: Vec<WireRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRecord {
    #[serde(default)]
    aws_region: Option<String>,
    #[serde(default, rename = "eventID")]
    event_id: Option<String>,
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    event_source: Option<String>,
    #[serde(default, rename = "eventSourceARN")]
    event_source_arn: Option<String>,
    #[serde(default)]
    event_version: Option<String>,
    #[serde(default)]
    invoke_identity_arn: Option<String>,
    kinesis: WireKinesis,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireKinesis {
    #[serde(deserialize_with = "arrival")]
    approximate_arrival_timestamp: DateTime<Utc>,
    data: Base64Data,
    #[serde(default)]
    encryption_type: KinesisEncryptionType,
    #[serde(default)]
    partition_key: String,
    #[serde(default)]
    sequence_number: String,
    #[serde(default)]
    kinesis_schema_version: Option<String>,
}

impl WireRecord {
    fn into_record(self) -> KinesisEventRecord {
        let k = self.kinesis;
        // Both types are non-exhaustive: fill a default field by field.
        let mut kinesis = KinesisRecord::default();
        kinesis.approximate_arrival_timestamp = SecondTimestamp(k.approximate_arrival_timestamp);
        kinesis.data = k.data;
        kinesis.encryption_type = k.encryption_type;
        kinesis.partition_key = k.partition_key;
        kinesis.sequence_number = k.sequence_number;
        kinesis.kinesis_schema_version = k.kinesis_schema_version;
        let mut r = KinesisEventRecord::default();
        r.aws_region = self.aws_region;
        r.event_id = self.event_id;
        r.event_name = self.event_name;
        r.event_source = self.event_source;
        r.event_source_arn = self.event_source_arn;
        r.event_version = self.event_version;
        r.invoke_identity_arn = self.invoke_identity_arn;
        r.kinesis = kinesis;
        r
    }
}

/// Seconds since the epoch (a number, or a string holding one) → time,
/// rounded to the microsecond: at today's epoch values an f64 resolves
/// about 0.25 µs, so Kinesis' milliseconds come back exactly.
fn arrival<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Seconds {
        Number(f64),
        Text(String),
    }
    let seconds = match Seconds::deserialize(d)? {
        Seconds::Number(n) => n,
        Seconds::Text(s) => s.trim().parse().map_err(D::Error::custom)?,
    };
    let micros = (seconds * 1e6).round();
    // i64 microseconds span ±292,000 years; anything outside is not a time.
    if !micros.is_finite() || micros.abs() >= 9.2e18 {
        return Err(D::Error::custom(format!(
            "approximateArrivalTimestamp {seconds} out of range"
        )));
    }
    DateTime::from_timestamp_micros(micros as i64).ok_or_else(|| {
        D::Error::custom(format!("approximateArrivalTimestamp {seconds} out of range"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(arrival: serde_json::Value) -> Result<Event, serde_json::Error> {
        serde_json::from_value(sample(arrival))
    }

    fn sample(arrival: serde_json::Value) -> serde_json::Value {
        json!({"Records": [{
            "eventID": "shardId-000000000000:1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:1:stream/s",
            "awsRegion": "us-east-1",
            "eventName": "aws:kinesis:record",
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "invokeIdentityArn": "arn:aws:iam::1:role/r",
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": "pk",
                "sequenceNumber": "1",
                "data": "aGk=",
                "approximateArrivalTimestamp": arrival,
            }
        }]})
    }

    fn micros(e: &Event) -> i64 {
        e.records[0].kinesis.approximate_arrival_timestamp.timestamp_micros()
    }

    #[test]
    fn arrival_fractions_are_read_as_fractions() {
        for (input, want) in [
            (json!(1764064800.5), 1_764_064_800_500_000),
            (json!(1764064800.12), 1_764_064_800_120_000),
            (json!(1764064800.123), 1_764_064_800_123_000),
            (json!(1764064800.005), 1_764_064_800_005_000),
            (json!(1764064800), 1_764_064_800_000_000),
            (json!("1764064800.9"), 1_764_064_800_900_000),
        ] {
            assert_eq!(micros(&one(input.clone()).unwrap()), want, "{input}");
        }
        assert!(one(json!("soon")).is_err());
        assert!(one(json!(1e300)).is_err());
    }

    #[test]
    fn every_other_field_matches_aws_lambda_events() {
        // With an arrival time that library reads right, the two agree exactly.
        let ours = one(json!(1764064800.123)).unwrap();
        let theirs: KinesisEvent = serde_json::from_value(sample(json!(1764064800.123))).unwrap();
        assert_eq!(ours.0, theirs);
        assert_eq!(ours.records[0].kinesis.data.0, b"hi");
        assert_eq!(
            ours.records[0].event_source_arn.as_deref(),
            Some("arn:aws:kinesis:us-east-1:1:stream/s")
        );
    }

    #[test]
    fn aws_lambda_events_still_misreads_fractions() {
        // Why this module exists; when this fails, the library is fixed and
        // `Event` can go.
        let theirs: KinesisEvent = serde_json::from_value(sample(json!(1764064800.5))).unwrap();
        let got = theirs.records[0].kinesis.approximate_arrival_timestamp.timestamp_micros();
        assert_eq!(got, 1_764_064_800_005_000);
    }
}
