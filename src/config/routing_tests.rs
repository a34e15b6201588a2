//! A templated `BIGQUERY_TABLE` and the routing variables.

use super::*;

fn load(pairs: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
    let mut all = vec![("BIGQUERY_TABLE", "proj.ds.events_{event_type}")];
    all.extend_from_slice(pairs);
    super::tests::lookup(&[], &all)
}

#[test]
fn a_template_turns_routing_on_with_its_defaults() {
    let c = load(&[]).unwrap();
    let template = c.table.template().unwrap();
    assert_eq!(template.field(), "event_type");
    assert_eq!(c.routing, RouteSettings { create: None, max_tables: 16 });
    let one = load(&[("BIGQUERY_TABLE", "proj.ds.events")]).unwrap();
    assert_eq!(one.table.fixed().map(ToString::to_string).as_deref(), Some("proj.ds.events"));
}

#[test]
fn a_placeholder_outside_the_table_part_names_bigquery_table() {
    for bad in ["proj.{ds}.events", "proj.ds.{a}_{b}", "proj.ds.events_{}"] {
        let e = load(&[("BIGQUERY_TABLE", bad)]).unwrap_err();
        assert_eq!(e.variables(), ["BIGQUERY_TABLE"], "{bad}: {e}");
    }
}

#[test]
fn creating_tables_needs_a_schema_url_with_the_same_placeholder() {
    let c = load(&[
        ("CREATE_TABLES", "true"),
        ("TABLE_SCHEMA_URL", "s3://bucket/schemas/{event_type}.json"),
        ("MAX_TABLES", "4"),
    ])
    .unwrap();
    assert_eq!(c.routing.max_tables, 4);
    assert!(c.routing.create.is_some_and(|u| u.is_s3()));
    let e = load(&[("CREATE_TABLES", "true")]).unwrap_err();
    assert_eq!(e.variables(), ["TABLE_SCHEMA_URL"], "{e}");
    let e = load(&[("CREATE_TABLES", "true"), ("TABLE_SCHEMA_URL", "s3://b/{other}.json")])
        .unwrap_err();
    assert_eq!(e.variables(), ["TABLE_SCHEMA_URL"], "{e}");
    let e = load(&[("CREATE_TABLES", "yes")]).unwrap_err();
    assert_eq!(e.variables(), ["CREATE_TABLES"], "{e}");
    // One table: nothing to create per record.
    let e = load(&[
        ("BIGQUERY_TABLE", "proj.ds.events"),
        ("CREATE_TABLES", "true"),
        ("TABLE_SCHEMA_URL", "file:///schema.json"),
    ])
    .unwrap_err();
    assert_eq!(e.variables(), ["CREATE_TABLES"], "{e}");
}

#[test]
fn max_tables_is_bounded_and_the_emulator_needs_its_rest_address_to_create() {
    for bad in ["0", "1001", "many"] {
        let e = load(&[("MAX_TABLES", bad)]).unwrap_err();
        assert_eq!(e.variables(), ["MAX_TABLES"], "{bad}");
    }
    let e = load(&[
        ("BIGQUERY_ENDPOINT", "http://127.0.0.1:9060"),
        ("CREATE_TABLES", "true"),
        ("TABLE_SCHEMA_URL", "file:///schemas/{event_type}.json"),
    ])
    .unwrap_err();
    assert_eq!(e.variables(), ["BIGQUERY_REST_ENDPOINT"], "{e}");
}
