//! Records parsed lazily (`wire::parse_lazy`: the ops left to the consumer)
//! give the same output and the same errors as records parsed in full:
//! the `json` writer, which validates the ops as it writes them, returns
//! `EncodeError::Malformed` holding exactly the error (kind and offset)
//! `wire::parse` returns for the frame, and leaves the output as it was;
//! every other format and policy validates first.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use sluice_codec::build::{BinSpec, Elem, Message, ValueSpec};
use sluice_codec::encode::{BinPolicy, EncodeError, Encoder, NameTransform};
use sluice_codec::wire::{self, particle};
use sluice_codec::{ErrorKind, ListOrder};

const RECEIVED: u64 = 1_700_000_000_999;

fn policies() -> Vec<BinPolicy> {
    vec![
        BinPolicy::all(),
        BinPolicy::all().transform(NameTransform::Uppercase),
        BinPolicy::include(["a", "BAD"]),
    ]
}

/// Every encoder under every policy: the lazy path gives what the full
/// parse and `encode` give (both outputs after a prefix, which an error
/// must leave alone). Returns the full parse's error, if any.
fn same_both_ways(frame: &[u8]) -> Option<sluice_codec::Error> {
    let (mut s1, mut s2) = (Vec::new(), Vec::new());
    let full = wire::parse(frame, &mut s1, 1 << 20);
    let lazy = match wire::parse_lazy(frame, &mut s2, 1 << 20) {
        Ok(l) => l,
        Err(e) => {
            assert_eq!(full.as_ref().err(), Some(&e), "the lazy parse refused it");
            return Some(e);
        }
    };
    assert_eq!(
        lazy.validate().map(|r| format!("{r:?}")),
        full.as_ref()
            .map(|r| format!("{r:?}"))
            .map_err(Clone::clone)
    );
    for enc in Encoder::each_format() {
        for policy in policies() {
            let mut want = b"prefix".to_vec();
            let want_result = match &full {
                Ok(rec) => enc.encode(rec, &policy, RECEIVED, &mut want),
                Err(e) => Err(EncodeError::Malformed(e.clone())),
            };
            let mut got = b"prefix".to_vec();
            let result = enc.encode_lazy(&lazy, &policy, RECEIVED, &mut got);
            assert_eq!(result, want_result, "{}", enc.name());
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{}",
                enc.name()
            );
        }
    }
    full.err()
}

/// A write of bins `a` (an integer), `BAD` (the value given) and `z` (a
/// string), and where `BAD`'s op starts.
fn frame_with(bad: ValueSpec) -> (Vec<u8>, usize) {
    let bins = vec![
        BinSpec::new("a", ValueSpec::Int(7)),
        BinSpec::new("BAD", bad),
        BinSpec::new("z", ValueSpec::Str("after".into())),
    ];
    let mut m = Message::write_record("test", Some("demo"), None, bins);
    m.digest = Some([9; 20]);
    let f = m.to_vec().unwrap();
    let name = f.windows(4).position(|w| w == b"\x03BAD").unwrap() + 1;
    (f, name - 8)
}

fn list(items: Vec<Elem>) -> ValueSpec {
    ValueSpec::List {
        order: ListOrder::Unordered,
        persist_index: false,
        items,
    }
}

/// Each kind of malformed op, in the middle of a record whose other ops
/// are valid: the json writer's walk finds the same error as the parser.
#[test]
fn every_kind_of_malformed_op_gives_the_parsers_error() {
    type Case = (&'static str, ValueSpec, fn(&mut Vec<u8>, usize));
    let cases: Vec<Case> = vec![
        ("op code", ValueSpec::Int(1), |f, at| f[at + 4] = 1),
        ("name UTF-8", ValueSpec::Int(1), |f, at| f[at + 9] = 0xff),
        (
            "name UTF-8, value long",
            ValueSpec::Str("x".repeat(40)),
            |f, at| f[at + 8] = 0xc3,
        ),
        ("string UTF-8", ValueSpec::Str("abcd".into()), |f, at| {
            f[at + 8 + 3 + 3] = 0xff
        }),
        (
            "long string UTF-8",
            ValueSpec::Str("y".repeat(33)),
            |f, at| f[at + 8 + 3 + 20] = 0x80,
        ),
        // A short list that claims more elements than it holds.
        (
            "list truncated",
            list(vec![Elem::Int(1), Elem::Int(2)]),
            |f, at| f[at + 8 + 3] = 0x95,
        ),
        (
            "map truncated",
            ValueSpec::Map {
                order: Default::default(),
                persist_index: false,
                entries: vec![(Elem::Int(1), Elem::Int(2))],
            },
            |f, at| f[at + 8 + 3] = 0x83,
        ),
        // A list with an element left over after its count.
        (
            "list too long",
            list(vec![Elem::Int(1), Elem::Int(2)]),
            |f, at| f[at + 8 + 3] = 0x91,
        ),
        (
            "string in a list",
            list(vec![Elem::Str("ok".into())]),
            |f, at| f[at + 8 + 3 + 4] = 0xfe,
        ),
        // Elements after a count of none.
        (
            "empty list with elements",
            list(vec![Elem::Int(1)]),
            |f, at| f[at + 8 + 3] = 0x90,
        ),
        (
            "long string in a map",
            ValueSpec::Map {
                order: Default::default(),
                persist_index: false,
                entries: vec![(Elem::Str("k".repeat(20)), Elem::Int(2))],
            },
            |f, at| f[at + 8 + 3 + 1 + 2 + 1 + 10] = 0xc0,
        ),
        ("a boolean of 8 bytes", ValueSpec::Int(1), |f, at| {
            f[at + 5] = particle::BOOL
        }),
        ("unknown particle type", ValueSpec::Int(1), |f, at| {
            f[at + 5] = 99
        }),
        ("op size below its name", ValueSpec::Int(1), |f, at| {
            f[at..at + 4].copy_from_slice(&2u32.to_be_bytes())
        }),
        ("op size past the frame", ValueSpec::Int(1), |f, at| {
            f[at..at + 4].copy_from_slice(&1000u32.to_be_bytes())
        }),
        // One op fewer, then one more, than the header counts.
        ("trailing ops", ValueSpec::Int(1), |f, _| f[8 + 21] = 2),
        ("missing op", ValueSpec::Int(1), |f, _| f[8 + 21] = 4),
    ];
    let mut kinds = Vec::new();
    for (what, value, patch) in cases {
        let (mut f, at) = frame_with(value);
        assert_eq!(same_both_ways(&f), None, "{what}: the clean frame");
        patch(&mut f, at);
        let e = same_both_ways(&f).unwrap_or_else(|| panic!("{what}: accepted"));
        // The ops are at fault, not the header or the fields.
        assert!(e.offset >= at || what.ends_with("ops") || what == "missing op");
        kinds.push(format!("{what}: {:?}", e.kind));
    }
    let all = kinds.join("\n");
    for kind in [
        "UnexpectedOp(1)",
        "BadUtf8 { what: \"bin name\" }",
        "BadUtf8 { what: \"string bin\" }",
        "BadUtf8 { what: \"string element\" }",
        "Truncated { what: \"msgpack element\"",
        "Truncated { what: \"op\",",
        "BadValueSize",
        "UnknownParticle(99)",
        "BadOpSize",
        "TrailingBytes",
        "Truncated { what: \"op header\"",
        "BadMsgpack",
    ] {
        assert!(all.contains(kind), "{kind} not met in:\n{all}");
    }
}

/// A bin the json writer refuses (GeoJSON that is not JSON) before a
/// malformed op: the frame is malformed (as the parser would have said),
/// not unencodable (which would make a dead letter).
#[test]
fn a_malformed_op_after_an_unencodable_bin_is_still_malformed() {
    let geo = ValueSpec::Geo {
        flags: 0,
        cells: vec![],
        json: "{not json".into(),
    };
    let (mut f, _) = frame_with(geo);
    let mut scratch = Vec::new();
    let lazy = wire::parse_lazy(&f, &mut scratch, 1 << 20).unwrap();
    let r = Encoder::json().encode_lazy(&lazy, &BinPolicy::all(), RECEIVED, &mut Vec::new());
    assert!(matches!(r, Err(EncodeError::BadGeoJson { .. })), "{r:?}");
    // The last op's code broken.
    let z = f.windows(2).rposition(|w| w == b"\x01z").unwrap() - 7;
    f[z + 4] = 3;
    let e = same_both_ways(&f).unwrap();
    assert_eq!(e.kind, ErrorKind::UnexpectedOp(3));
    assert_eq!(e.offset, z + 4);
}

/// Deletes carry ops too (json writes none of them): still validated.
#[test]
fn a_delete_with_a_malformed_op_is_malformed() {
    let mut m = Message::delete_record("test", Some("demo"), None, false);
    m.digest = Some([3; 20]);
    m.bins = vec![BinSpec::new("BAD", ValueSpec::Int(5))];
    let mut f = m.to_vec().unwrap();
    assert_eq!(same_both_ways(&f), None);
    let at = f.windows(4).position(|w| w == b"\x03BAD").unwrap() - 7;
    f[at + 4] = 9;
    let e = same_both_ways(&f).unwrap();
    assert_eq!(e.kind, ErrorKind::UnexpectedOp(9));
}

/// Every byte of the standard record (and of a record with non-ASCII
/// names and text, nested and ordered collections) replaced by several
/// values: the lazy path agrees with the full one on each.
#[test]
fn every_byte_replaced_agrees_with_the_full_parse() {
    let mut odd = Message::write_record(
        "test",
        Some("demo"),
        None,
        vec![
            BinSpec::new("é", ValueSpec::Str("ünï".into())),
            BinSpec::new("n", list(vec![list_elem(), Elem::Str("ß".into())])),
            BinSpec::new("h", ValueSpec::Hll(vec![1, 2, 3])),
            BinSpec::new("0", ValueSpec::Null),
            BinSpec::new(&"long".repeat(5), ValueSpec::Float(0.1)),
        ],
    );
    odd.digest = Some([5; 20]);
    let mut errors = 0;
    let mut clean = 0;
    for m in [Message::standard(), odd] {
        let frame = m.to_vec().unwrap();
        assert_eq!(same_both_ways(&frame), None);
        for i in 0..frame.len() {
            for b in [0x00, 0x01, 0x03, 0x7f, 0x80, 0x91, 0xc0, 0xd9, 0xff] {
                let mut f = frame.clone();
                f[i] = b;
                match same_both_ways(&f) {
                    Some(_) => errors += 1,
                    None => clean += 1,
                }
            }
        }
    }
    // Both sides were met many times.
    assert!(errors > 1000 && clean > 1000, "{errors} {clean}");
}

fn list_elem() -> Elem {
    Elem::List {
        order: ListOrder::Ordered,
        items: vec![Elem::Int(1), Elem::Str("x".into())],
    }
}
