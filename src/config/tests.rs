//! Table-driven tests of [`Config::from_lookup`].

use super::*;
use crate::delivery::WriteMode;
use crate::rows::{RowFormat, UnknownFields};
use std::collections::HashMap;
use std::time::Duration;
use test_case::test_case;

/// The smallest valid environment.
fn base() -> HashMap<&'static str, String> {
    HashMap::from([
        ("BIGQUERY_TABLE", "proj.ds.events".to_string()),
        ("STATE_URL", "s3://bucket/state".to_string()),
        ("SPILL_URL", "s3://bucket/spill".to_string()),
        ("DLQ_URL", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq".to_string()),
    ])
}

fn load(env: &HashMap<&'static str, String>) -> Result<Config, ConfigError> {
    Config::from_lookup(|k| env.get(k).cloned())
}

/// [`base`] without the variables `unset`, then with `pairs` set (a later
/// pair wins); the other config test modules load through this too.
pub(super) fn lookup(
    unset: &[&str],
    pairs: &[(&'static str, &str)],
) -> Result<Config, ConfigError> {
    let mut env = base();
    for k in unset {
        env.remove(*k);
    }
    for (k, v) in pairs {
        env.insert(k, v.to_string());
    }
    load(&env)
}

fn with(pairs: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
    lookup(&[], pairs)
}

#[test]
fn defaults() {
    let c = load(&base()).unwrap();
    assert_eq!(c.table.to_string(), "proj.ds.events");
    assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
    assert_eq!(c.write_mode(), WriteMode::ExactlyOnce);
    assert_eq!(c.row_format, RowFormat::Proto);
    assert_eq!(c.unknown_fields, UnknownFields::Reject);
    assert_eq!(c.batch.max_bytes as u64, DEFAULT_BATCH_MAX_BYTES);
    assert_eq!(c.batch.max_rows, 10_000);
    assert_eq!(c.batch.window, crate::batch::BATCH_WINDOW);
    assert_eq!(c.max_inflight_requests, 8);
    assert_eq!(c.max_inflight_bytes, 64 << 20);
    assert_eq!(c.retry.budget, Duration::from_secs(30));
    assert_eq!(c.deadline_margin, Duration::from_secs(5));
    assert_eq!(c.state().map(|u| u.to_string()).as_deref(), Some("s3://bucket/state"));
    assert_eq!(c.log_filter, LogFilter::default());
}

#[test_case("BIGQUERY_ENDPOINT", "http://127.0.0.1:9060/" ; "endpoint slash trimmed")]
#[test_case("WRITE_MODE", "AT_LEAST_ONCE" ; "mode any case")]
#[test_case("ROW_FORMAT", "arrow" ; "arrow")]
#[test_case("UNKNOWN_FIELDS", "ignore" ; "ignore")]
#[test_case("BATCH_MAX_ROWS", "1" ; "min rows")]
#[test_case("BATCH_MAX_BYTES", "9_961_472" ; "underscores")]
#[test_case("BATCH_WINDOW_MS", "300000" ; "max window")]
#[test_case("MAX_INFLIGHT_REQUESTS", "1000" ; "max inflight")]
#[test_case("RETRY_BUDGET_MS", "0" ; "no retries")]
#[test_case("DEADLINE_MARGIN_MS", "900000" ; "max margin")]
#[test_case("SPILL_URL", "file:///tmp/spill" ; "file spill")]
#[test_case("DLQ_URL", "file:///tmp/dlq.ndjson" ; "file dlq")]
#[test_case("DLQ_URL", "http://127.0.0.1:5000/123456789012/dlq" ; "local sqs")]
#[test_case("STATE_URL", "file:///tmp/state" ; "file state")]
#[test_case("LOG_LEVEL", "DEBUG" ; "level any case")]
#[test_case("RUST_LOG", "info,kinesis_bigquery=trace" ; "rust log")]
#[test_case("BIGQUERY_TABLE", "projects/p/datasets/d/tables/t" ; "resource path")]
#[test_case("WRITE_MODE", " exactly_once " ; "trimmed")]
fn accepts(var: &'static str, value: &str) {
    if let Err(e) = with(&[(var, value)]) {
        panic!("{var}={value:?} rejected: {e}");
    }
}

#[test_case("BIGQUERY_TABLE", "proj.events", "PROJECT.DATASET.TABLE" ; "two parts")]
#[test_case("BIGQUERY_ENDPOINT", "bigquerystorage.googleapis.com", "https://HOST" ; "no scheme")]
#[test_case("BIGQUERY_ENDPOINT", "grpc://h:1", "https://HOST" ; "bad scheme")]
#[test_case("BIGQUERY_ENDPOINT", "https://h/v1", "https://HOST" ; "with path")]
#[test_case("WRITE_MODE", "once", "exactly_once, at_least_once" ; "mode")]
#[test_case("ROW_FORMAT", "avro", "proto, arrow" ; "format")]
#[test_case("UNKNOWN_FIELDS", "drop", "reject, ignore" ; "unknown")]
#[test_case("BATCH_MAX_ROWS", "0", "from 1 to 1000000" ; "zero rows")]
#[test_case("BATCH_MAX_ROWS", "ten", "from 1 to 1000000" ; "not a number")]
#[test_case("BATCH_MAX_BYTES", "10485761", "from 65536 to 10485760" ; "over the service limit")]
#[test_case("BATCH_MAX_BYTES", "1024", "from 65536 to 10485760" ; "below a request's overhead and a row")]
#[test_case("BATCH_WINDOW_MS", "-1", "from 0 to 300000" ; "negative")]
#[test_case("MAX_INFLIGHT_REQUESTS", "1001", "from 1 to 1000" ; "too many")]
#[test_case("RETRY_BUDGET_MS", "900001", "from 0 to 900000" ; "past lambda max")]
#[test_case("DEADLINE_MARGIN_MS", "1.5", "from 0 to 900000" ; "fraction")]
#[test_case("STATE_URL", "https://sqs.x/1/q", "s3://BUCKET/PREFIX" ; "state on sqs")]
#[test_case("SPILL_URL", "/tmp/spill", "file:///PATH" ; "bare path")]
#[test_case("SPILL_URL", "s3://", "s3://BUCKET/PREFIX" ; "no bucket")]
#[test_case("DLQ_URL", "s3://bucket/dlq", "https://sqs.REGION" ; "dlq on s3")]
#[test_case("LOG_LEVEL", "verbose", "trace, debug, info, warn, error, off" ; "level")]
#[test_case("RUST_LOG", "info,[", "tracing filter directives" ; "bad directives")]
fn rejects(var: &'static str, value: &str, expected: &str) {
    let err = with(&[(var, value)]).unwrap_err();
    assert_eq!(err.variables(), vec![var], "{err}");
    let text = err.to_string();
    assert!(text.contains(var) && text.contains(expected), "{text}");
}

#[test_case("BIGQUERY_TABLE" ; "table")]
#[test_case("SPILL_URL" ; "spill")]
#[test_case("DLQ_URL" ; "dlq")]
#[test_case("STATE_URL" ; "state with exactly once")]
fn requires(var: &'static str) {
    let mut env = base();
    env.remove(var);
    let err = load(&env).unwrap_err();
    assert_eq!(err.variables(), vec![var]);
    assert!(err.to_string().contains("required"), "{err}");
}

#[test]
fn empty_counts_as_unset() {
    let c = with(&[("BATCH_MAX_ROWS", ""), ("LOG_LEVEL", " ")]).unwrap();
    assert_eq!(c.batch.max_rows, 10_000);
    assert!(with(&[("BIGQUERY_TABLE", "")]).is_err());
}

#[test]
fn state_is_optional_at_least_once() {
    let mut env = base();
    env.remove("STATE_URL");
    env.insert("WRITE_MODE", "at_least_once".into());
    assert_eq!(load(&env).unwrap().state(), None);
}

#[test]
fn reports_every_problem_at_once() {
    let env = HashMap::from([
        ("BIGQUERY_TABLE", "nope".to_string()),
        ("WRITE_MODE", "sometimes".to_string()),
        ("BATCH_MAX_ROWS", "-5".to_string()),
        ("LOG_LEVEL", "loud".to_string()),
    ]);
    let err = load(&env).unwrap_err();
    assert_eq!(
        err.variables(),
        vec!["BIGQUERY_TABLE", "WRITE_MODE", "BATCH_MAX_ROWS", "SPILL_URL", "DLQ_URL", "LOG_LEVEL"]
    );
}

#[test]
fn inflight_bytes_must_hold_one_request() {
    let err = with(&[("BATCH_MAX_BYTES", "131072"), ("MAX_INFLIGHT_BYTES", "65536")]).unwrap_err();
    assert_eq!(err.variables(), vec!["MAX_INFLIGHT_BYTES"]);
}

#[test]
fn rust_log_wins_over_log_level() {
    let c = with(&[("LOG_LEVEL", "error"), ("RUST_LOG", "debug")]).unwrap();
    assert_eq!(c.log_filter.as_str(), "debug");
    let c = with(&[("LOG_LEVEL", "trace")]).unwrap();
    assert_eq!(c.log_filter.as_str(), "warn,kinesis_bigquery=trace,lambda_runtime=info");
}

#[test]
fn never_echoes_user_info() {
    let err = with(&[("DLQ_URL", "s3://user:hunter2@bucket/x")]).unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test_case("ftp://bigquery.example" ; "other scheme")]
#[test_case("bigquerystorage.googleapis.com" ; "no scheme")]
#[test_case("https://bigquerystorage.googleapis.com/v1" ; "with a path")]
fn bad_endpoint_names_the_variable(value: &str) {
    let err = with(&[("BIGQUERY_ENDPOINT", value)]).unwrap_err();
    assert_eq!(err.variables(), vec!["BIGQUERY_ENDPOINT"]);
    assert!(err.to_string().contains("http://HOST:PORT"), "{err}");
}

#[test]
fn endpoint_scheme_decides_credentials() {
    use crate::bigquery::{AuthMode, Endpoint};
    let c = load(&base()).unwrap();
    assert_eq!(c.endpoint.auth(), AuthMode::ApplicationDefault);
    assert!(matches!(c.rest_endpoint, Endpoint::Google { .. }));
    let c = with(&[("BIGQUERY_ENDPOINT", "http://127.0.0.1:9060")]).unwrap();
    assert_eq!(c.endpoint, Endpoint::Emulator { url: "http://127.0.0.1:9060".into() });
    assert_eq!(c.endpoint.auth(), AuthMode::None);
}

#[test]
fn exactly_once_carries_its_state_store() {
    let c = load(&base()).unwrap();
    let Delivery::ExactlyOnce { state } = &c.delivery else {
        panic!("default mode is exactly_once: {:?}", c.delivery);
    };
    assert_eq!(state.to_string(), "s3://bucket/state");
    let mut env = base();
    env.remove("STATE_URL");
    let err = load(&env).unwrap_err();
    assert_eq!(err.variables(), vec!["STATE_URL"]);
    assert!(err.to_string().contains("WRITE_MODE=exactly_once"), "{err}");
}

#[test]
fn stateless_modes_carry_no_store_even_when_given_one() {
    let c = with(&[("WRITE_MODE", "at_least_once")]).unwrap();
    assert_eq!(c.delivery, Delivery::AtLeastOnce);
    assert_eq!(c.state(), None);
}

#[test]
fn retry_and_batch_limits_are_the_types_the_code_uses() {
    let c = with(&[("RETRY_BUDGET_MS", "1500"), ("BATCH_WINDOW_MS", "0")]).unwrap();
    let expected = crate::retry::RetryPolicy::with_budget(Duration::from_millis(1500));
    assert_eq!(c.retry, expected);
    assert_eq!(c.batch.window, Duration::ZERO);
}
