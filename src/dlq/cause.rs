//! Why a record is dead-lettered, and the one place a cause becomes a
//! letter: each path (the Lambda's three write modes, routing, the outage
//! path, the backfill and redrive) names the cause, and the reason code,
//! message and field path are decided here, so the same failure reads the
//! same in the queue whichever path met it.

use super::{DeadLetter, Reason};
use crate::rows::{RowError, RowErrorKind};
use crate::source::{BadReason, SourceRecord};
use crate::table::TableName;

/// What the letter of a record whose encoded row is too large says.
const ROW_TOO_LARGE: &str = "the encoded row alone exceeds the AppendRows request limit";

/// Why a record cannot become a row.
#[derive(Clone, Copy, Debug)]
pub enum Cause<'e> {
    /// The encoder refused the record. `not_json`: its bytes are not a JSON
    /// object at all, whatever the encoder's error says.
    Encode { error: &'e RowError, not_json: bool },
    /// The record's bytes are not a JSON object (known before encoding).
    NotJson,
    /// A KPL aggregate that could not be de-aggregated.
    Kpl(&'e BadReason),
    /// The encoded row alone exceeds the request limit; the detail says by
    /// how much, when known.
    RowTooLarge(Option<&'e str>),
    /// BigQuery refused the row (its row error's message).
    Rejected(&'e str),
    /// A reason decided elsewhere (routing's `no_route`, `no_such_table`; an
    /// earlier attempt's recorded exclusion), with its message.
    Decided(Reason, &'e str),
}

impl DeadLetter {
    /// The letter of `record`, bound for `table`, for `cause`.
    pub fn of(record: &SourceRecord, table: &TableName, cause: Cause<'_>) -> Self {
        match cause {
            Cause::Encode { error, not_json } => {
                let reason = match error.kind {
                    _ if not_json => Reason::InvalidJson,
                    RowErrorKind::InvalidJson => Reason::InvalidJson,
                    RowErrorKind::UnknownField => Reason::UnknownField,
                    RowErrorKind::ChangeUnreadable => Reason::ChangeUnreadable,
                    _ => Reason::SchemaMismatch,
                };
                let letter = Self::new(record, table, reason, error.to_string());
                if error.path.is_empty() {
                    letter
                } else {
                    letter.with_field_path(error.path.clone())
                }
            }
            Cause::NotJson => {
                Self::new(record, table, Reason::InvalidJson, "the record is not a JSON object")
            }
            Cause::Kpl(bad) => {
                let reason = match bad {
                    BadReason::KplChecksum { .. } => Reason::KplChecksum,
                    _ => Reason::KplProtobuf,
                };
                Self::new(record, table, reason, bad.to_string())
            }
            Cause::RowTooLarge(detail) => {
                Self::new(record, table, Reason::RowTooLarge, detail.unwrap_or(ROW_TOO_LARGE))
            }
            Cause::Rejected(message) => {
                Self::new(record, table, Reason::RejectedByBigquery, message)
            }
            Cause::Decided(reason, message) => Self::new(record, table, reason, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::envelope::tests::record;

    fn table() -> TableName {
        "p.d.t".parse().expect("a table name")
    }

    fn error(kind: RowErrorKind, path: &str) -> RowError {
        RowError { path: path.into(), kind, message: "m".into() }
    }

    #[test]
    fn encoder_errors_keep_their_reason_and_field_path() {
        let r = record(br#"{"a": "x"}"#);
        let unknown = error(RowErrorKind::UnknownField, "extra");
        let l = DeadLetter::of(&r, &table(), Cause::Encode { error: &unknown, not_json: false });
        assert_eq!((l.reason, l.field_path.as_deref()), (Reason::UnknownField, Some("extra")));
        // Bytes that are not a JSON object are invalid_json whatever the encoder said.
        let l = DeadLetter::of(&r, &table(), Cause::Encode { error: &unknown, not_json: true });
        assert_eq!(l.reason, Reason::InvalidJson);
        let mismatch = error(RowErrorKind::TypeMismatch, "");
        let l = DeadLetter::of(&r, &table(), Cause::Encode { error: &mismatch, not_json: false });
        assert_eq!((l.reason, l.field_path), (Reason::SchemaMismatch, None));
    }

    #[test]
    fn each_other_cause_has_its_reason() {
        let r = record(b"x");
        let checksum = BadReason::KplChecksum { found: "a".into(), computed: "b".into() };
        let cases = [
            (Cause::NotJson, Reason::InvalidJson),
            (Cause::Kpl(&checksum), Reason::KplChecksum),
            (Cause::Kpl(&BadReason::KplTruncated { len: 3 }), Reason::KplProtobuf),
            (Cause::RowTooLarge(None), Reason::RowTooLarge),
            (Cause::Rejected("no"), Reason::RejectedByBigquery),
            (Cause::Decided(Reason::NoRoute, "no field"), Reason::NoRoute),
        ];
        for (cause, reason) in cases {
            assert_eq!(DeadLetter::of(&r, &table(), cause).reason, reason, "{cause:?}");
        }
        let l = DeadLetter::of(&r, &table(), Cause::RowTooLarge(None));
        assert_eq!(l.error, ROW_TOO_LARGE);
    }
}
