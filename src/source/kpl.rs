//! KPL de-aggregation: the bytes of one Kinesis record → its user records.
//!
//! Wire format (awslabs/amazon-kinesis-producer, `aggregation-format.md`):
//! the 4-byte magic `F3 89 9A C2`, a protobuf `AggregatedRecord`
//! (`proto/kpl/aggregated.proto`), then the 16-byte MD5 of the protobuf bytes.
//!
//! Guarantees: a record without the magic is a plain record, untouched. A
//! record with the magic either yields every sub-record, in order, or a
//! [`BadReason`] — never a panic, never a silent drop, never a partial list.
//! Unlike some deaggregators that pass a record with a bad checksum through
//! as plain data, we reject it: its bytes are corrupt, and a JSON record can
//! never start with the magic (`F3` opens a 4-byte UTF-8 sequence that `C2`
//! cannot continue), so a magic prefix always means "meant as an aggregate".

use std::sync::Arc;

use bytes::Bytes;
use md5::{Digest, Md5};
use prost::Message;

use crate::pb::kpl::AggregatedRecord;

/// The KPL aggregate prefix (aggregation-format.md).
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];
/// Length of the MD5 trailer.
const DIGEST_LEN: usize = 16;

/// One user record of an aggregate, before it is given its position.
#[derive(Clone, Debug, PartialEq)]
pub struct SubRecord {
    /// `partition_key_table[partition_key_index]`.
    pub partition_key: Arc<str>,
    /// `explicit_hash_key_table[explicit_hash_key_index]`, when the index is set.
    pub explicit_hash_key: Option<Arc<str>>,
    pub data: Bytes,
}

/// What a record's bytes turned out to be.
#[derive(Clone, Debug, PartialEq)]
pub enum Unpacked {
    /// No magic: the bytes are one user record.
    Plain,
    /// A well-formed aggregate: at least one sub-record, in aggregate order
    /// (the sub-sequence number is the index).
    Aggregate(Vec<SubRecord>),
}

/// Why a record with the KPL magic cannot be de-aggregated. Dead-letter
/// reasons: [`BadReason::KplChecksum`] is `kpl_checksum`; every other
/// variant means the aggregate is malformed, `kpl_protobuf`.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BadReason {
    /// Shorter than magic + MD5 trailer: no room for a checksum.
    #[error("KPL aggregate of {len} bytes is shorter than its magic and MD5 trailer (20 bytes)")]
    KplTruncated { len: usize },
    /// The MD5 trailer does not match the protobuf bytes: corrupted in transit or at rest.
    #[error("KPL aggregate MD5 trailer {found} does not match its protobuf bytes ({computed})")]
    KplChecksum { found: String, computed: String },
    /// The checksum matches but the protobuf does not decode.
    #[error("KPL aggregate protobuf does not decode: {0}")]
    KplProtobuf(#[from] prost::DecodeError),
    /// A sub-record names a key-table entry that does not exist.
    #[error("KPL sub-record {sub_record}: {table} index {index} is out of range (table has {len})")]
    KplKeyIndex { sub_record: usize, table: KeyTable, index: u64, len: usize },
    /// A valid aggregate with no sub-records: nothing could be delivered, so
    /// it is kept as a bad record rather than vanishing.
    #[error("KPL aggregate holds no records")]
    KplEmpty,
}

/// Which key table an index points into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyTable {
    PartitionKey,
    ExplicitHashKey,
}

impl std::fmt::Display for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyTable::PartitionKey => "partition key",
            KeyTable::ExplicitHashKey => "explicit hash key",
        })
    }
}

/// Whether `data` starts with the KPL magic.
pub fn is_aggregate(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// De-aggregates `data`, the bytes of one Kinesis record.
///
/// # Errors
/// A [`BadReason`] when `data` has the magic but is not a well-formed,
/// non-empty aggregate.
pub fn unpack(data: &[u8]) -> Result<Unpacked, BadReason> {
    let Some(rest) = data.strip_prefix(&MAGIC) else {
        return Ok(Unpacked::Plain);
    };
    let Some(split) = rest.len().checked_sub(DIGEST_LEN) else {
        return Err(BadReason::KplTruncated { len: data.len() });
    };
    let (proto, trailer) = rest.split_at(split);
    let computed = Md5::digest(proto);
    if computed.as_slice() != trailer {
        return Err(BadReason::KplChecksum { found: hex(trailer), computed: hex(&computed) });
    }
    let aggregate = AggregatedRecord::decode(proto)?;
    let partition_keys: Vec<Arc<str>> =
        aggregate.partition_key_table.into_iter().map(Arc::from).collect();
    let hash_keys: Vec<Arc<str>> =
        aggregate.explicit_hash_key_table.into_iter().map(Arc::from).collect();
    if aggregate.records.is_empty() {
        return Err(BadReason::KplEmpty);
    }
    aggregate
        .records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let partition_key =
                lookup(&partition_keys, record.partition_key_index, i, KeyTable::PartitionKey)?;
            let explicit_hash_key = record
                .explicit_hash_key_index
                .map(|index| lookup(&hash_keys, index, i, KeyTable::ExplicitHashKey))
                .transpose()?;
            Ok(SubRecord { partition_key, explicit_hash_key, data: Bytes::from(record.data) })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Unpacked::Aggregate)
}

fn lookup(
    keys: &[Arc<str>],
    index: u64,
    sub_record: usize,
    table: KeyTable,
) -> Result<Arc<str>, BadReason> {
    usize::try_from(index).ok().and_then(|i| keys.get(i)).cloned().ok_or(BadReason::KplKeyIndex {
        sub_record,
        table,
        index,
        len: keys.len(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds an aggregate in the KPL wire format: for tests, benchmarks and the
/// demo, which need aggregates without the KPL itself.
pub fn aggregate(record: &AggregatedRecord) -> Vec<u8> {
    let proto = record.encode_to_vec();
    let mut out = Vec::with_capacity(MAGIC.len() + proto.len() + DIGEST_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&proto);
    out.extend_from_slice(&Md5::digest(&proto));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::kpl::Record;
    use proptest::prelude::*;

    fn record(pk: u64, ehk: Option<u64>, data: &[u8]) -> Record {
        Record {
            partition_key_index: pk,
            explicit_hash_key_index: ehk,
            data: data.to_vec(),
            tags: vec![],
        }
    }

    fn two_keys(records: Vec<Record>) -> AggregatedRecord {
        AggregatedRecord {
            partition_key_table: vec!["a".into(), "b".into()],
            explicit_hash_key_table: vec!["123".into()],
            records,
        }
    }

    #[test]
    fn plain_records_pass_through() {
        for data in [&b""[..], b"{}", b"\xF3\x89\x9A", b"\xF3\x89\x9A\xC3rest"] {
            assert_eq!(unpack(data), Ok(Unpacked::Plain), "{data:?}");
        }
    }

    #[test]
    fn sub_records_keep_order_keys_and_bytes() {
        let bytes = aggregate(&two_keys(vec![
            record(1, None, b"x"),
            record(0, Some(0), b""),
            record(1, Some(0), b"z"),
        ]));
        let Ok(Unpacked::Aggregate(subs)) = unpack(&bytes) else { panic!("not an aggregate") };
        let got: Vec<_> = subs
            .iter()
            .map(|s| (&*s.partition_key, s.explicit_hash_key.as_deref(), &s.data[..]))
            .collect();
        assert_eq!(
            got,
            [("b", None, &b"x"[..]), ("a", Some("123"), b""), ("b", Some("123"), b"z")]
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let mut bytes = aggregate(&two_keys(vec![record(0, None, b"hello")]));
        let last_proto_byte = bytes.len() - DIGEST_LEN - 1;
        bytes[last_proto_byte] ^= 0x01;
        assert!(matches!(unpack(&bytes), Err(BadReason::KplChecksum { .. })));
    }

    #[test]
    fn malformed_aggregates_are_bad_records() {
        // Checksum fine, protobuf not: a field with wire type 7 does not exist.
        let garbage = [0x0F, 0xFF];
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&garbage);
        bytes.extend_from_slice(&Md5::digest(garbage));
        assert!(matches!(unpack(&bytes), Err(BadReason::KplProtobuf(_))));

        let out_of_range = aggregate(&two_keys(vec![record(0, None, b"ok"), record(2, None, b"")]));
        assert_eq!(
            unpack(&out_of_range),
            Err(BadReason::KplKeyIndex {
                sub_record: 1,
                table: KeyTable::PartitionKey,
                index: 2,
                len: 2
            })
        );
        let bad_hash = aggregate(&two_keys(vec![record(0, Some(u64::MAX), b"")]));
        assert!(matches!(
            unpack(&bad_hash),
            Err(BadReason::KplKeyIndex { table: KeyTable::ExplicitHashKey, .. })
        ));

        assert_eq!(unpack(&aggregate(&two_keys(vec![]))), Err(BadReason::KplEmpty));
        assert_eq!(unpack(&MAGIC), Err(BadReason::KplTruncated { len: 4 }));
        assert_eq!(
            unpack(&[&MAGIC[..], &[0; 15]].concat()),
            Err(BadReason::KplTruncated { len: 19 })
        );
    }

    fn arb_aggregate() -> impl Strategy<Value = AggregatedRecord> {
        (prop::collection::vec("[a-z0-9-]{0,12}", 1..5), prop::collection::vec("[0-9]{1,39}", 0..3))
            .prop_flat_map(|(pks, ehks)| {
                let (npk, nehk) = (pks.len() as u64, ehks.len() as u64);
                let ehk =
                    if nehk == 0 { Just(None).boxed() } else { prop::option::of(0..nehk).boxed() };
                let rec = (0..npk, ehk, prop::collection::vec(any::<u8>(), 0..64))
                    .prop_map(|(p, e, d)| record(p, e, &d));
                prop::collection::vec(rec, 1..40).prop_map(move |records| AggregatedRecord {
                    partition_key_table: pks.clone(),
                    explicit_hash_key_table: ehks.clone(),
                    records,
                })
            })
    }

    proptest! {
        #[test]
        fn random_aggregates_come_back_exactly(agg in arb_aggregate()) {
            let Ok(Unpacked::Aggregate(subs)) = unpack(&aggregate(&agg)) else {
                return Err(TestCaseError::fail("not de-aggregated"));
            };
            prop_assert_eq!(subs.len(), agg.records.len());
            for (sub, rec) in subs.iter().zip(&agg.records) {
                let pk = &agg.partition_key_table[rec.partition_key_index as usize];
                prop_assert_eq!(&*sub.partition_key, pk.as_str());
                let ehk = rec.explicit_hash_key_index
                    .map(|i| agg.explicit_hash_key_table[i as usize].as_str());
                prop_assert_eq!(sub.explicit_hash_key.as_deref(), ehk);
                prop_assert_eq!(&sub.data[..], &rec.data[..]);
            }
        }

        #[test]
        fn random_bytes_after_the_magic_never_panic(tail in prop::collection::vec(any::<u8>(), 0..300)) {
            let data = [&MAGIC[..], &tail].concat();
            // Random bytes almost never carry a matching MD5: a bad record.
            prop_assert!(unpack(&data).is_err());
        }

        #[test]
        fn random_protobuf_with_a_valid_checksum_never_panics(proto in prop::collection::vec(any::<u8>(), 0..300)) {
            let data = [&MAGIC[..], &proto, &Md5::digest(&proto)[..]].concat();
            let _ = unpack(&data);
        }

        #[test]
        fn records_without_the_magic_are_plain(data in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assume!(!data.starts_with(&MAGIC));
            prop_assert_eq!(unpack(&data), Ok(Unpacked::Plain));
        }
    }
}
