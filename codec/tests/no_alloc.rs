//! Parsing a type-3 frame and encoding its record in every format allocates
//! nothing once the output buffer has grown (FORMATS.md): counted here by a
//! global allocator that forwards to `System` and counts, per thread, the
//! allocations made while a test has counting switched on.

// A `GlobalAlloc` impl is `unsafe` by definition; this file is its own test
// binary, so the allocator counts only what these tests do.
#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sluice_codec::build::{BinSpec, Elem, Key, Message, ValueSpec};
use sluice_codec::encode::{avro, BinPolicy, Encoder};
use sluice_codec::wire;
use sluice_codec::{ListOrder, MapOrder};

thread_local! {
    // `const` thread-locals need no lazy initialisation, so touching them
    // from inside the allocator cannot allocate.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

impl Counting {
    fn note() {
        // `try_with`: during thread teardown the thread-locals may be gone.
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the counting touches only `const`
// thread-locals (no allocation, no re-entry).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note();
        // SAFETY: forwarded unchanged (see the impl's note).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note();
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations (alloc, alloc_zeroed, realloc) made by this thread in `f`.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    f();
    COUNTING.with(|on| on.set(false));
    COUNT.with(|c| c.get())
}

const RECEIVED_MS: u64 = 1_700_000_000_000;
const ROUNDS: usize = 1000;

/// A write with nested lists and maps, blobs in collections, non-string map
/// keys, GeoJSON, HLL, a deleted bin and an integer key.
fn collections_frame() -> Vec<u8> {
    let list = |items| ValueSpec::List {
        order: ListOrder::Ordered,
        persist_index: false,
        items,
    };
    let bins = vec![
        BinSpec::new(
            "nested",
            list(vec![
                Elem::Int(-5),
                Elem::Float(2.5),
                Elem::Str("with \"quotes\" and\nline".to_owned()),
                Elem::Blob {
                    ptype: 4,
                    bytes: vec![0, 1, 2, 0xff],
                },
                Elem::List {
                    order: ListOrder::Unordered,
                    items: vec![Elem::Bool(true), Elem::Nil, Elem::Int(i64::MIN)],
                },
                Elem::Map {
                    order: MapOrder::Key,
                    entries: vec![(Elem::Str("deep".to_owned()), Elem::Int(1))],
                },
            ]),
        ),
        BinSpec::new(
            "keys",
            ValueSpec::Map {
                order: MapOrder::KeyValue,
                persist_index: false,
                entries: vec![
                    (Elem::Int(7), Elem::Str("seven".to_owned())),
                    (Elem::Float(1.5), Elem::Int(2)),
                    (
                        Elem::Blob {
                            ptype: 4,
                            bytes: vec![9, 9],
                        },
                        Elem::List {
                            order: ListOrder::Unordered,
                            items: vec![Elem::Int(1), Elem::Int(2)],
                        },
                    ),
                    (Elem::Str("s".to_owned()), Elem::Nil),
                ],
            },
        ),
        BinSpec::new(
            "where",
            ValueSpec::Geo {
                flags: 0,
                cells: vec![1, 2],
                json: r#"{"type":"Point","coordinates":[1.5,-2.25]}"#.to_owned(),
            },
        ),
        BinSpec::new("hll", ValueSpec::Hll(vec![1, 2, 3, 4])),
        BinSpec::new("gone", ValueSpec::Null),
        BinSpec::new(
            "java",
            ValueSpec::Blob {
                ptype: 7,
                bytes: vec![0xac, 0xed],
            },
        ),
    ];
    let mut m = Message::write_record("test", Some("demo"), Some(Key::Int(99)), bins)
        .from_xdr(1_698_586_936_461);
    m.generation = 3;
    m.record_ttl = 3600;
    m.to_vec().unwrap()
}

fn delete_frame() -> Vec<u8> {
    Message::delete_record("test", None, Some(Key::Blob(vec![1, 2, 3])), true)
        .from_xdr(1_698_586_936_461)
        .to_vec()
        .unwrap()
}

/// A user schema with a field per bin (optional fields, enum, fixed, int,
/// float, nested arrays and maps in unions) and no `bins` map.
const USER_SCHEMA: &str = r#"{"type": "record", "name": "R", "fields": [
  {"name": "metadata", "type": {"type": "record", "name": "M", "fields": [
    {"name": "msg", "type": {"type": "enum", "name": "Msg", "symbols": ["write", "delete"]}},
    {"name": "digest", "type": {"type": "fixed", "name": "D", "size": 20}},
    {"name": "gen", "type": "int"},
    {"name": "lut", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "exp", "type": ["null", "long"]},
    {"name": "durable", "type": ["null", "boolean"]},
    {"name": "extra", "type": ["null", "string"]}
  ]}},
  {"name": "id", "type": ["null", "int"]},
  {"name": "score", "type": ["null", "float"]},
  {"name": "name", "type": ["null", "string"]},
  {"name": "desc", "type": ["null", "bytes", "string"]},
  {"name": "nums", "type": ["null", {"type": "array", "items": "long"}]},
  {"name": "attrs", "type": ["null", {"type": "map", "values": ["null", "long"]}]},
  {"name": "absent", "type": ["null", "long"]}
]}"#;

/// Parse + encode `frame` in `enc` ROUNDS times into one cleared buffer,
/// after a warm-up, both ways (parsed in full, then lazily as the session
/// does); returns the allocations counted.
fn count_encodes(enc: &Encoder, policy: &BinPolicy, frame: &[u8]) -> u64 {
    let mut out = Vec::new();
    let mut scratch = Vec::new();
    let mut once = |out: &mut Vec<u8>| {
        out.clear();
        let rec = wire::parse(frame, &mut scratch, wire::DEFAULT_MAX_BODY).unwrap();
        enc.encode(&rec, policy, RECEIVED_MS, out).unwrap();
        out.clear();
        let rec = wire::parse_lazy(frame, &mut scratch, wire::DEFAULT_MAX_BODY).unwrap();
        enc.encode_lazy(&rec, policy, RECEIVED_MS, out).unwrap();
    };
    for _ in 0..10 {
        once(&mut out);
    }
    assert!(!out.is_empty(), "{} wrote nothing", enc.name());
    allocations(|| {
        for _ in 0..ROUNDS {
            once(&mut out);
        }
    })
}

#[test]
fn the_counter_sees_allocations() {
    // Guards the tests below: a counter that cannot count proves nothing.
    let n = allocations(|| {
        let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(64));
        drop(v);
        let mut w = std::hint::black_box(vec![1u8]);
        w.reserve(4096);
    });
    assert_eq!(n, 3);
}

#[test]
fn parsing_a_type3_frame_allocates_nothing() {
    for frame in [
        Message::standard().to_vec().unwrap(),
        collections_frame(),
        delete_frame(),
    ] {
        let mut scratch = Vec::new();
        let n = allocations(|| {
            for _ in 0..ROUNDS {
                let rec = wire::parse(&frame, &mut scratch, wire::DEFAULT_MAX_BODY).unwrap();
                // Walk every bin as the encoders do.
                assert!(rec.bins.iter().count() <= rec.bins.len());
                std::hint::black_box(&rec);
            }
        });
        assert_eq!(n, 0, "parse of a {}-byte frame", frame.len());
    }
}

#[test]
fn every_encoder_allocates_nothing_per_record() {
    let policy = BinPolicy::all();
    for frame in [
        Message::standard().to_vec().unwrap(),
        collections_frame(),
        delete_frame(),
    ] {
        for enc in Encoder::each_format() {
            let n = count_encodes(&enc, &policy, &frame);
            assert_eq!(
                n,
                0,
                "{}: {ROUNDS} records of {} bytes",
                enc.name(),
                frame.len()
            );
        }
    }
}

#[test]
fn avro_with_a_user_schema_allocates_nothing_per_record() {
    let enc = Encoder::avro(USER_SCHEMA, true).unwrap();
    // Only the bins the schema has fields for.
    let policy = BinPolicy::include(["id", "score", "name", "desc", "nums", "attrs"]);
    let frame = Message::standard().to_vec().unwrap();
    assert_eq!(count_encodes(&enc, &policy, &frame), 0);
    assert_eq!(count_encodes(&enc, &policy, &delete_frame()), 0);
}

#[test]
fn renamed_and_case_mapped_bins_allocate_nothing() {
    let policy = BinPolicy::all()
        .rename("id", "ID")
        .transform(sluice_codec::encode::NameTransform::Uppercase);
    let frame = Message::standard().to_vec().unwrap();
    for enc in [
        Encoder::json(),
        Encoder::message_pack(),
        Encoder::avro(avro::DEFAULT_SCHEMA, true).unwrap(),
    ] {
        assert_eq!(count_encodes(&enc, &policy, &frame), 0, "{}", enc.name());
    }
}
