//! Properties: every message the builder writes parses back to the same
//! values (all particle types, nested collections, compression); random and
//! mutated bytes never panic, and whatever parses can be walked completely.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use proptest::collection::vec;
use proptest::prelude::*;
use sluice_codec::build::{self, BinSpec, Elem, Key, Message, ValueSpec};
use sluice_codec::wire::{self, field, msgpack::Reader};
use sluice_codec::{ListOrder, MapOrder};

const MAX: usize = 1 << 20;

fn float() -> impl Strategy<Value = f64> {
    use proptest::num::f64::{INFINITE, NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    // NaN is left out only because it is not equal to itself.
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
}

fn blob_ptype() -> impl Strategy<Value = u8> {
    prop_oneof![Just(4u8), 7u8..=12]
}

fn list_order() -> impl Strategy<Value = ListOrder> {
    prop_oneof![Just(ListOrder::Unordered), Just(ListOrder::Ordered)]
}

fn map_order() -> impl Strategy<Value = MapOrder> {
    prop_oneof![
        Just(MapOrder::Unordered),
        Just(MapOrder::Key),
        Just(MapOrder::KeyValue),
        Just(MapOrder::Insertion)
    ]
}

/// Scalars that can stand anywhere. (A plain ext value is left out: as the
/// first element of a list it is, by Aerospike's rules, the list's header.)
fn leaf() -> impl Strategy<Value = Elem> {
    prop_oneof![
        Just(Elem::Nil),
        any::<bool>().prop_map(Elem::Bool),
        any::<i64>().prop_map(Elem::Int),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(Elem::Uint),
        float().prop_map(Elem::Float),
        ".{0,40}".prop_map(Elem::Str),
        (blob_ptype(), vec(any::<u8>(), 0..40))
            .prop_map(|(ptype, bytes)| Elem::Blob { ptype, bytes }),
        ".{0,20}".prop_map(Elem::Geo),
    ]
}

fn elem() -> impl Strategy<Value = Elem> {
    leaf().prop_recursive(4, 48, 20, |inner| {
        prop_oneof![
            (list_order(), vec(inner.clone(), 0..20))
                .prop_map(|(order, items)| Elem::List { order, items }),
            (map_order(), vec((leaf(), inner), 0..8))
                .prop_map(|(order, entries)| Elem::Map { order, entries }),
        ]
    })
}

fn value() -> impl Strategy<Value = ValueSpec> {
    prop_oneof![
        Just(ValueSpec::Null),
        any::<i64>().prop_map(ValueSpec::Int),
        float().prop_map(ValueSpec::Float),
        ".{0,60}".prop_map(ValueSpec::Str),
        any::<bool>().prop_map(ValueSpec::Bool),
        (blob_ptype(), vec(any::<u8>(), 0..60))
            .prop_map(|(ptype, bytes)| ValueSpec::Blob { ptype, bytes }),
        vec(any::<u8>(), 0..100).prop_map(ValueSpec::Hll),
        (list_order(), any::<bool>(), vec(elem(), 0..20)).prop_map(
            |(order, persist_index, items)| ValueSpec::List {
                order,
                persist_index,
                items
            }
        ),
        (map_order(), any::<bool>(), vec((leaf(), elem()), 0..20)).prop_map(
            |(order, persist_index, entries)| ValueSpec::Map {
                order,
                persist_index,
                entries
            }
        ),
        (any::<u8>(), vec(any::<u64>(), 0..10), ".{0,40}")
            .prop_map(|(flags, cells, json)| ValueSpec::Geo { flags, cells, json }),
    ]
}

fn key() -> impl Strategy<Value = Key> {
    prop_oneof![
        any::<i64>().prop_map(Key::Int),
        ".{0,30}".prop_map(Key::Str),
        vec(any::<u8>(), 0..30).prop_map(Key::Blob),
    ]
}

/// Any raw LUT that normalises without overflow.
fn raw_lut() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..field::UNIX_MS_THRESHOLD,
        field::UNIX_MS_THRESHOLD..u64::MAX / 2
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let head = (
        prop_oneof![Just(0u8), Just(0x10)],
        prop_oneof![Just(0x01u8), Just(0x03), Just(0x13), Just(0x21), Just(0x05)],
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    );
    let ids = (
        "[a-z][a-z0-9]{0,30}",
        proptest::option::of(".{0,30}"),
        proptest::option::of(key()),
        proptest::option::of(any::<[u8; 20]>()),
        proptest::option::of(raw_lut()),
    );
    let bins = vec(
        (
            "[a-zA-Z0-9_]{0,15}",
            proptest::option::of(raw_lut()),
            value(),
        )
            .prop_map(|(name, lut, value)| BinSpec { name, lut, value }),
        0..10,
    );
    (head, ids, bins).prop_map(
        |(
            (info1, info2, info3, generation, record_ttl, transaction_ttl),
            (ns, set, user_key, digest, lut),
            bins,
        )| {
            // Without a key the digest must be sent.
            let digest = if user_key.is_none() {
                Some(digest.unwrap_or([7; 20]))
            } else {
                digest
            };
            Message {
                info1,
                info2,
                info3,
                generation,
                record_ttl,
                transaction_ttl,
                namespace: ns,
                set,
                user_key,
                digest,
                lut,
                extra_fields: vec![],
                bins,
            }
        },
    )
}

/// What the parser must give back for `m`.
fn expected(m: &Message) -> Message {
    let mut e = m.clone();
    e.digest = m.effective_digest();
    e.set = m.set.clone().filter(|s| !s.is_empty());
    e.lut = m.lut.map(field::lut_to_unix_ms);
    for b in &mut e.bins {
        b.lut = b.lut.map(field::lut_to_unix_ms);
    }
    e
}

fn check_walkable(frame: &[u8]) {
    let mut scratch = Vec::new();
    if let Ok(rec) = wire::parse(frame, &mut scratch, MAX) {
        // Whatever parses can be walked to the end without an error.
        assert_eq!(rec.bins.iter().count(), rec.bins.len());
        build::Message::from_record(&rec).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn built_messages_parse_back(m in message(), compress in any::<bool>()) {
        let mut frame = m.to_vec().unwrap();
        if compress {
            let mut z = Vec::new();
            build::compress(&frame, &mut z).unwrap();
            frame = z;
        }
        let mut scratch = Vec::new();
        let rec = wire::parse(&frame, &mut scratch, MAX).unwrap();
        prop_assert_eq!(rec.bins.len(), m.bins.len());
        let back = Message::from_record(&rec).unwrap();
        prop_assert_eq!(back, expected(&m));
    }

    #[test]
    fn elements_read_back(e in elem()) {
        let mut buf = Vec::new();
        build::write_elem(&mut buf, &e).unwrap();
        let mut r = Reader::new(&buf);
        prop_assert_eq!(Elem::read(&mut r).unwrap(), e);
        prop_assert_eq!(r.position(), buf.len());
        let mut r = Reader::new(&buf);
        r.skip_value().unwrap();
        prop_assert_eq!(r.position(), buf.len());
    }

    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        let _ = wire::frame::cut(&bytes, MAX);
        check_walkable(&bytes);
        let mut out = Vec::new();
        let _ = wire::inflate(&bytes, MAX, &mut out);
        let _ = Reader::new(&bytes).skip_values(1000);
        let _ = sluice_codec::ack::read(&bytes);
        // With a plausible header in front, the parser gets past the framing.
        let mut f = vec![2, 3];
        f.extend_from_slice(&(bytes.len() as u64).to_be_bytes()[2..]);
        f.extend_from_slice(&bytes);
        check_walkable(&f);
    }

    #[test]
    fn mutated_frames_never_panic(
        m in message(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut_at in any::<prop::sample::Index>(),
        compress in any::<bool>(),
    ) {
        let mut frame = m.to_vec().unwrap();
        for (at, b) in &edits {
            let i = at.index(frame.len());
            frame[i] = *b;
        }
        check_walkable(&frame);
        let _ = wire::frame::cut(&frame, MAX);
        let truncated = &frame[..cut_at.index(frame.len() + 1)];
        check_walkable(truncated);
        let _ = wire::frame::cut(truncated, MAX);
        if compress {
            // Mutations inside a compressed frame's zlib stream and header.
            let mut z = Vec::new();
            build::compress(&m.to_vec().unwrap(), &mut z).unwrap();
            for (at, b) in &edits {
                let i = at.index(z.len());
                z[i] = *b;
            }
            check_walkable(&z);
        }
    }
}
