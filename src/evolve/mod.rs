//! Schema evolution (`UNKNOWN_FIELDS=add`): a field the table lacks becomes
//! a new NULLABLE column instead of a dead letter. Types are inferred from
//! the JSON value ([`infer`], rules in docs/coercions.md), added with an
//! etag-guarded `tables.patch` that merges with concurrent writers
//! ([`columns`]), and the batch waits for the Storage Write API to see them
//! before it is encoded and mapped to offsets ([`step`]).

pub mod columns;
pub mod infer;
pub mod step;

pub use step::{EvolveError, EvolveReport, Evolver};

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::collections::HashMap;

    fn config(extra: &[(&str, &str)]) -> Result<Config, String> {
        let mut env: HashMap<&str, &str> = HashMap::from([
            ("BIGQUERY_TABLE", "p.d.t"),
            ("STATE_URL", "file:///tmp/s"),
            ("SPILL_URL", "file:///tmp/sp"),
            ("DLQ_URL", "file:///tmp/dlq.ndjson"),
            ("UNKNOWN_FIELDS", "add"),
        ]);
        env.extend(extra.iter().copied());
        Config::from_lookup(|k| env.get(k).map(|v| v.to_string())).map_err(|e| e.to_string())
    }

    #[test]
    fn the_rest_endpoint_defaults_to_google_and_is_required_beside_the_emulator() {
        assert_eq!(config(&[]).unwrap().rest_endpoint, "https://bigquery.googleapis.com");
        let err = config(&[("BIGQUERY_ENDPOINT", "http://127.0.0.1:9060")]).unwrap_err();
        assert!(err.contains("BIGQUERY_REST_ENDPOINT"), "{err}");
        let ok = config(&[
            ("BIGQUERY_ENDPOINT", "http://127.0.0.1:9060"),
            ("BIGQUERY_REST_ENDPOINT", "http://127.0.0.1:9050/"),
        ]);
        assert_eq!(ok.unwrap().rest_endpoint, "http://127.0.0.1:9050");
        let bad = config(&[("BIGQUERY_REST_ENDPOINT", "ftp://x")]).unwrap_err();
        assert!(bad.contains("BIGQUERY_REST_ENDPOINT"), "{bad}");
    }
}
