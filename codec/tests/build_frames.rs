//! The builder's exact bytes: what it puts on the wire for each shape the
//! parser must accept, and how it fails.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use sluice_codec::build::{self, BinSpec, BuildError, Elem, Key, Message, ValueSpec};
use sluice_codec::wire;
use sluice_codec::{ListOrder, MapOrder};

/// The ops region of a one-bin message: the op's value bytes.
fn value_bytes(v: ValueSpec) -> Vec<u8> {
    let m = Message::write_record("n", None, Some(Key::Int(1)), vec![BinSpec::new("b", v)]);
    let f = m.to_vec().unwrap();
    // proto 8 + header 22 + ns 6 + digest 25 + key 14, then op header 8 + name 1.
    f[8 + 22 + 6 + 25 + 14 + 9..].to_vec()
}

fn elem_bytes(e: Elem) -> Vec<u8> {
    let mut out = Vec::new();
    build::write_elem(&mut out, &e).unwrap();
    out
}

#[test]
fn collection_headers_and_prefixes() {
    let list = |order, persist_index, items| {
        value_bytes(ValueSpec::List {
            order,
            persist_index,
            items,
        })
    };
    assert_eq!(
        list(ListOrder::Unordered, false, vec![Elem::Int(1)]),
        [0x91, 0x01]
    );
    assert_eq!(
        list(ListOrder::Ordered, false, vec![Elem::Int(1)]),
        [0x92, 0xc7, 0x00, 0x01, 0x01]
    );
    // Persisted index: flag 0x10 and a payload (one byte per element, here fixext2).
    assert_eq!(
        list(ListOrder::Ordered, true, vec![Elem::Int(1), Elem::Int(2)]),
        [0x93, 0xd5, 0x11, 0, 0, 0x01, 0x02]
    );
    let map = |order, entries| {
        value_bytes(ValueSpec::Map {
            order,
            persist_index: false,
            entries,
        })
    };
    let one = vec![(Elem::Str("a".into()), Elem::Nil)];
    assert_eq!(
        map(MapOrder::Unordered, one.clone()),
        [0x81, 0xa2, 0x03, b'a', 0xc0]
    );
    assert_eq!(
        map(MapOrder::Key, one.clone()),
        [0x82, 0xc7, 0x00, 0x01, 0xc0, 0xa2, 0x03, b'a', 0xc0]
    );
    assert_eq!(map(MapOrder::KeyValue, one.clone())[3], 0x03);
    assert_eq!(map(MapOrder::Insertion, one)[3], 0x08);
    assert_eq!(
        elem_bytes(Elem::Blob {
            ptype: 9,
            bytes: vec![0xff]
        }),
        [0xa2, 0x09, 0xff]
    );
    assert_eq!(elem_bytes(Elem::Geo("{}".into())), [0xa3, 0x17, b'{', b'}']);
    let long = "z".repeat(40);
    let b = elem_bytes(Elem::Str(long.clone()));
    assert_eq!(b[..3], [0xd9, 41, 0x03]);
    assert_eq!(&b[3..], long.as_bytes());
}

#[test]
fn integers_take_their_shortest_form() {
    let cases: [(i64, &[u8]); 10] = [
        (0, &[0x00]),
        (127, &[0x7f]),
        (-1, &[0xff]),
        (-32, &[0xe0]),
        (-33, &[0xd0, 0xdf]),
        (128, &[0xcc, 0x80]),
        (256, &[0xcd, 0x01, 0x00]),
        (65536, &[0xce, 0, 1, 0, 0]),
        (-129, &[0xd1, 0xff, 0x7f]),
        (i64::MIN, &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
    ];
    for (i, want) in cases {
        assert_eq!(elem_bytes(Elem::Int(i)), want, "{i}");
    }
    assert_eq!(elem_bytes(Elem::Uint(5))[0], 0xcf);
    // 16 elements need the array16 header.
    let big = elem_bytes(Elem::List {
        order: ListOrder::Unordered,
        items: vec![Elem::Nil; 16],
    });
    assert_eq!(big[..3], [0xdc, 0, 16]);
}

#[test]
fn fields_as_the_clients_write_them() {
    let mut m = Message::write_record("test", Some(""), Some(Key::Str("k1".into())), vec![]);
    m.extra_fields = vec![(200, vec![1, 2])];
    let f = m.to_vec().unwrap();
    // Header: 5 fields (ns, empty set, digest, key, extra), 0 ops.
    assert_eq!(f[8 + 18..8 + 22], [0, 5, 0, 0]);
    assert_eq!(f[30..39], [0, 0, 0, 5, 0, b't', b'e', b's', b't']);
    assert_eq!(f[39..44], [0, 0, 0, 1, 1], "an empty set field");
    assert_eq!(f[44..49], [0, 0, 0, 21, 4]);
    assert_eq!(f[49..69], build::digest(None, &Key::Str("k1".into())));
    assert_eq!(f[69..77], [0, 0, 0, 4, 2, 3, b'k', b'1']);
    assert_eq!(f[77..], [0, 0, 0, 3, 200, 1, 2]);
    // No key and no digest: no digest field (the parser then refuses it).
    let m = Message::write_record("test", None, None, vec![]);
    let f = m.to_vec().unwrap();
    assert_eq!(f.len(), 8 + 22 + 9);
    assert_eq!(
        wire::parse_message(&f).unwrap_err().kind,
        sluice_codec::ErrorKind::MissingDigest
    );
}

#[test]
fn deletes_xdr_and_bin_luts() {
    assert_eq!(
        Message::delete_record("n", None, Some(Key::Int(1)), false).info2,
        0x03
    );
    assert_eq!(
        Message::delete_record("n", None, Some(Key::Int(1)), true).info2,
        0x13
    );
    let mut b = BinSpec::new("x", ValueSpec::Bool(true));
    b.lut = Some(0x0102_0304_0506_0708);
    let m = Message::write_record("n", None, Some(Key::Int(1)), vec![b]).from_xdr(9);
    assert_eq!(m.info1, 0x10);
    let f = m.to_vec().unwrap();
    // The op: size 4 + 1 + 8 + 1, WRITE, bool, has-LUT flag, name length 1.
    let op = &f[f.len() - 18..];
    assert_eq!(op[..9], [0, 0, 0, 14, 2, 17, 1, 1, b'x']);
    assert_eq!(op[9..17], [1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(op[17], 1);
}

#[test]
fn errors_leave_the_buffer_as_it_was() {
    let mut out = vec![9, 9];
    let m = Message::write_record(
        "n",
        None,
        Some(Key::Int(1)),
        vec![
            BinSpec::new("ok", ValueSpec::Int(1)),
            BinSpec::new(&"n".repeat(256), ValueSpec::Int(1)),
        ],
    );
    assert_eq!(
        m.write_to(&mut out),
        Err(BuildError::NameTooLong("n".repeat(256)))
    );
    assert_eq!(out, [9, 9]);
    let mut m = Message::write_record("n", None, Some(Key::Int(1)), vec![]);
    m.bins = vec![BinSpec::new("b", ValueSpec::Null); 70_000];
    assert_eq!(
        m.to_vec(),
        Err(BuildError::TooMany {
            what: "ops",
            count: 70_000
        })
    );
    // Appends after what is there.
    let one = Message::write_record("n", None, Some(Key::Int(1)), vec![])
        .to_vec()
        .unwrap();
    let mut out = vec![7];
    Message::write_record("n", None, Some(Key::Int(1)), vec![])
        .write_to(&mut out)
        .unwrap();
    assert_eq!(out[0], 7);
    assert_eq!(&out[1..], &one[..]);
}

#[test]
fn compress_writes_a_type4_frame() {
    let inner = Message::write_record(
        "n",
        None,
        Some(Key::Int(1)),
        vec![BinSpec::new("s", ValueSpec::Str("a".repeat(1000)))],
    )
    .to_vec()
    .unwrap();
    let mut z = vec![1];
    build::compress(&inner, &mut z).unwrap();
    let z = &z[1..];
    assert_eq!(z[..2], [2, 4]);
    let body = u64::from_be_bytes([0, 0, z[2], z[3], z[4], z[5], z[6], z[7]]);
    assert_eq!(body as usize, z.len() - 8);
    assert_eq!(
        u64::from_be_bytes(z[8..16].try_into().unwrap()),
        inner.len() as u64
    );
    assert_eq!(z[16], 0x78, "zlib header");
    let mut out = Vec::new();
    wire::inflate(z, 1 << 20, &mut out).unwrap();
    assert_eq!(out, inner);
}

#[test]
fn raw_values_are_written_as_given() {
    assert_eq!(
        value_bytes(ValueSpec::Raw {
            ptype: 99,
            bytes: vec![1, 2, 3]
        }),
        [1, 2, 3]
    );
    let m = Message::write_record(
        "n",
        None,
        Some(Key::Int(1)),
        vec![BinSpec::new(
            "b",
            ValueSpec::Raw {
                ptype: 99,
                bytes: vec![],
            },
        )],
    );
    let e = wire::parse_message(&m.to_vec().unwrap()).unwrap_err();
    assert_eq!(e.kind, sluice_codec::ErrorKind::UnknownParticle(99));
}

#[test]
fn standard_record_is_about_300_bytes() {
    // BENCHMARKS.md's standard record, as the generator builds it.
    let bins = vec![
        BinSpec::new("i1", ValueSpec::Int(1)),
        BinSpec::new("i2", ValueSpec::Int(2)),
        BinSpec::new("i3", ValueSpec::Int(3)),
        BinSpec::new("i4", ValueSpec::Int(4)),
        BinSpec::new("f", ValueSpec::Float(0.5)),
        BinSpec::new("b", ValueSpec::Bool(true)),
        BinSpec::new("s16", ValueSpec::Str("s".repeat(16))),
        BinSpec::new("s64", ValueSpec::Str("s".repeat(64))),
        BinSpec::new(
            "l",
            ValueSpec::List {
                order: ListOrder::Unordered,
                persist_index: false,
                items: (1..=5).map(Elem::Int).collect(),
            },
        ),
        BinSpec::new(
            "m",
            ValueSpec::Map {
                order: MapOrder::Unordered,
                persist_index: false,
                entries: ["a", "b", "c"]
                    .iter()
                    .map(|k| (Elem::Str((*k).into()), Elem::Int(1)))
                    .collect(),
            },
        ),
    ];
    let mut m = Message::write_record("test", Some("demo"), Some(Key::Str("k".repeat(12))), bins)
        .from_xdr(1_700_000_000_000);
    m.record_ttl = 30 * 86_400;
    let f = m.to_vec().unwrap();
    assert!((250..=350).contains(&f.len()), "{} bytes", f.len());
    let rec = wire::parse_message(&f).unwrap();
    assert_eq!(rec.bins.len(), 10);
}
