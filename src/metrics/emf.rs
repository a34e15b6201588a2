//! CloudWatch Embedded Metric Format: one JSON object per line whose
//! `_aws.CloudWatchMetrics` directive tells CloudWatch Logs which top-level
//! members are metrics (AWS "Embedded metric format specification").
//! CloudWatch extracts them from the function's log stream; no API call,
//! no extra latency.

use super::summary::InvocationSummary;
use serde_json::{Map, Value, json};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "KinesisBigQuery";

/// The EMF line for one invocation, dimensioned by table (the unit an
/// operator watches). `function` is a plain property, so two functions
/// feeding one table add up. `timestamp_ms`: milliseconds since the epoch.
pub fn emf_line(
    summary: &InvocationSummary,
    table: &str,
    function: &str,
    timestamp_ms: u64,
) -> String {
    let ms = u64::try_from(summary.duration.as_millis()).unwrap_or(u64::MAX);
    let mut metrics: Vec<(&str, &str, u64)> = vec![
        ("Records", "Count", summary.records),
        ("UserRecords", "Count", summary.user_records),
        ("Rows", "Count", summary.rows),
        ("Skipped", "Count", summary.skipped),
        ("DeadLettered", "Count", summary.dead_lettered),
        ("Spilled", "Count", summary.spilled),
        ("NotLanded", "Count", summary.not_landed),
        ("DiscardedLanded", "Count", summary.discarded_landed),
        ("AtLeastOnce", "Count", summary.at_least_once),
        ("OutageInvocations", "Count", u64::from(summary.outage)),
        ("Bytes", "Bytes", summary.bytes),
        ("Duration", "Milliseconds", ms),
    ];
    if let Some(age) = summary.max_record_age_ms {
        metrics.push(("MaxRecordAge", "Milliseconds", age));
    }
    let definitions: Vec<Value> =
        metrics.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Table"]],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("Table".into(), table.into());
    if !function.is_empty() {
        root.insert("FunctionName".into(), function.into());
    }
    for (name, _, value) in metrics {
        root.insert(name.into(), value.into());
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn follows_the_specification() {
        let s = InvocationSummary {
            records: 5,
            user_records: 9,
            rows: 7,
            dead_lettered: 1,
            spilled: 1,
            bytes: 1234,
            duration: Duration::from_millis(42),
            max_record_age_ms: Some(10),
            ..Default::default()
        };
        let v: Value =
            serde_json::from_str(&emf_line(&s, "p.d.t", "fn", 1_700_000_000_000)).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Table"]]));
        // Every declared metric and dimension is a top-level member with a number/string.
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(v[name].is_u64(), "{name}");
        }
        assert_eq!(v["Table"], "p.d.t");
        assert_eq!(v["Rows"], 7);
        assert_eq!(v["AtLeastOnce"], 0);
        assert_eq!(v["Duration"], 42);
        assert_eq!(v["MaxRecordAge"], 10);
        assert_eq!(v["FunctionName"], "fn");
    }

    /// Operators alarm on invocations that ran without BigQuery.
    #[test]
    fn an_outage_invocation_counts_one() {
        let line = |outage| {
            let s = InvocationSummary { outage, ..Default::default() };
            serde_json::from_str::<Value>(&emf_line(&s, "p.d.t", "", 1)).unwrap()
        };
        assert_eq!(line(true)["OutageInvocations"], 1);
        assert_eq!(line(false)["OutageInvocations"], 0);
    }

    #[test]
    fn no_age_metric_without_arrival_times() {
        let v: Value =
            serde_json::from_str(&emf_line(&InvocationSummary::default(), "p.d.t", "", 1)).unwrap();
        assert!(v.get("MaxRecordAge").is_none());
        assert!(v.get("FunctionName").is_none());
    }
}
