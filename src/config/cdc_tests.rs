//! `WRITE_MODE=cdc` and its variables.

use super::*;
use crate::delivery::WriteMode;

/// CDC keeps no shard state: the base environment without `STATE_URL`.
fn load(pairs: &[(&'static str, &str)]) -> Result<Config, ConfigError> {
    super::tests::lookup(&["STATE_URL"], pairs)
}

#[test]
fn cdc_needs_no_state_and_reads_its_fields() {
    let c = load(&[
        ("WRITE_MODE", "cdc"),
        ("CDC_CHANGE_TYPE_FIELD", "metadata.operation"),
        ("CDC_SEQUENCE_FIELD", "lsn"),
    ])
    .unwrap();
    assert_eq!(c.write_mode(), WriteMode::Cdc);
    assert_eq!(c.state(), None);
    assert_eq!(c.cdc.change_type_field.unwrap().to_string(), "metadata.operation");
    assert_eq!(c.cdc.sequence_field.unwrap().to_string(), "lsn");
    let plain = load(&[("WRITE_MODE", "CDC")]).unwrap();
    assert_eq!(plain.cdc, crate::cdc::CdcSettings::default());
}

#[test]
fn cdc_with_arrow_is_refused_naming_both_variables() {
    let e = load(&[("WRITE_MODE", "cdc"), ("ROW_FORMAT", "arrow")]).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("ROW_FORMAT"), "{text}");
    assert!(text.contains("WRITE_MODE=cdc"), "{text}");
    assert!(load(&[("WRITE_MODE", "at_least_once"), ("ROW_FORMAT", "arrow")]).is_ok());
}

#[test]
fn bad_field_paths_are_named() {
    let e = load(&[("WRITE_MODE", "cdc"), ("CDC_SEQUENCE_FIELD", "a..b")]).unwrap_err();
    assert!(e.to_string().contains("CDC_SEQUENCE_FIELD"), "{e}");
    let e = load(&[("WRITE_MODE", "upsert")]).unwrap_err();
    assert!(e.to_string().contains("cdc"), "{e}");
}
