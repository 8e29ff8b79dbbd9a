//! Frames no client sends (XDR-PROTOCOL.md §7), built by hand here: what XDR
//! adds (LUT field, bin LUTs, ordered collections, HLL, GeoJSON cells,
//! unknown fields) and every malformed shape, each with its exact error kind
//! and offset.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use sluice_codec::build::{self, BinSpec, Elem, Key, Message, ValueSpec};
use sluice_codec::wire::{self, field, msgpack::Reader};
use sluice_codec::{Action, ErrorKind, ListOrder, MapOrder, Record, Value};

const MAX: usize = 1 << 20;
const DIGEST: [u8; 20] = [0x11; 20];
/// Where ops start in a frame made by [`msg`] with [`std_fields`].
const OPS_AT: usize = 8 + 22 + 9 + 25;

/// A type-3 frame from raw parts: the header counts are taken from them.
fn msg(info2: u8, fields: &[(u8, &[u8])], ops: &[Vec<u8>]) -> Vec<u8> {
    msg_counts(info2, fields, ops, fields.len() as u16, ops.len() as u16)
}

fn msg_counts(info2: u8, fields: &[(u8, &[u8])], ops: &[Vec<u8>], nf: u16, no: u16) -> Vec<u8> {
    let mut body = vec![22, 0x10, info2, 0, 0, 0];
    body.extend_from_slice(&7u32.to_be_bytes()); // generation
    body.extend_from_slice(&60u32.to_be_bytes()); // record ttl
    body.extend_from_slice(&1000u32.to_be_bytes());
    body.extend_from_slice(&nf.to_be_bytes());
    body.extend_from_slice(&no.to_be_bytes());
    for (ty, data) in fields {
        body.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
        body.push(*ty);
        body.extend_from_slice(data);
    }
    for op in ops {
        body.extend_from_slice(op);
    }
    let mut f = vec![2, 3];
    f.extend_from_slice(&(body.len() as u64).to_be_bytes()[2..]);
    f.extend_from_slice(&body);
    f
}

fn std_fields() -> Vec<(u8, &'static [u8])> {
    vec![(field::NAMESPACE, b"test"), (field::DIGEST, &DIGEST)]
}

fn op(code: u8, ptype: u8, name: &str, lut: Option<u64>, value: &[u8]) -> Vec<u8> {
    let lut_len = if lut.is_some() { 8 } else { 0 };
    let size = 4 + name.len() + lut_len + value.len();
    let mut o = (size as u32).to_be_bytes().to_vec();
    o.extend_from_slice(&[code, ptype, u8::from(lut.is_some()), name.len() as u8]);
    o.extend_from_slice(name.as_bytes());
    if let Some(l) = lut {
        o.extend_from_slice(&l.to_be_bytes());
    }
    o.extend_from_slice(value);
    o
}

fn write_op(ptype: u8, name: &str, value: &[u8]) -> Vec<u8> {
    op(2, ptype, name, None, value)
}

/// A write with the standard fields and these ops.
fn write(ops: &[Vec<u8>]) -> Vec<u8> {
    msg(1, &std_fields(), ops)
}

fn err(frame: &[u8]) -> (ErrorKind, usize) {
    let mut scratch = Vec::new();
    let e = wire::parse(frame, &mut scratch, MAX).unwrap_err();
    (e.kind, e.offset)
}

fn one_value(frame: &[u8]) -> ValueSpec {
    let rec = wire::parse_message(frame).unwrap();
    let bins: Vec<_> = rec.bins.iter().collect();
    assert_eq!(bins.len(), 1);
    ValueSpec::from_value(&bins[0].value).unwrap()
}

fn xdr_message(bins: Vec<BinSpec>) -> Message {
    Message::write_record("test", Some("demo"), Some(Key::Str("k1".into())), bins)
        .from_xdr(1_698_586_936_461)
}

// ---------------------------------------------------------------- accepted

#[test]
fn lut_field_in_unix_ms_and_in_aerospike_epoch() {
    let m = xdr_message(vec![]);
    let f = m.to_vec().unwrap();
    let rec = wire::parse_message(&f).unwrap();
    assert!(rec.is_xdr());
    assert_eq!(rec.lut, Some(1_698_586_936_461));
    // The same instant counted from 2010-01-01.
    let citrusleaf = 1_698_586_936_461 - 1_262_304_000_000;
    let f = m.clone().from_xdr(citrusleaf).to_vec().unwrap();
    assert_eq!(
        wire::parse_message(&f).unwrap().lut,
        Some(1_698_586_936_461)
    );
    // Exactly at the threshold the value is already Unix ms.
    let f = m.from_xdr(field::UNIX_MS_THRESHOLD).to_vec().unwrap();
    assert_eq!(
        wire::parse_message(&f).unwrap().lut,
        Some(field::UNIX_MS_THRESHOLD)
    );
    assert_eq!(
        field::lut_to_unix_ms(field::UNIX_MS_THRESHOLD - 1),
        field::UNIX_MS_THRESHOLD - 1 + field::CITRUSLEAF_EPOCH_MS
    );
}

#[test]
fn expiry_uses_lut_and_ttl() {
    let mut m = xdr_message(vec![]);
    m.record_ttl = 2_592_000;
    let f = m.to_vec().unwrap();
    let rec = wire::parse_message(&f).unwrap();
    assert_eq!(rec.expiry(0), 1_698_586_936 + 2_592_000);
    m.record_ttl = u32::MAX;
    let f = m.to_vec().unwrap();
    assert_eq!(wire::parse_message(&f).unwrap().expiry(5_000), 0);
}

#[test]
fn bin_luts_are_read_and_normalised() {
    let f = write(&[
        op(2, 1, "a", Some(1_700_000_000_000), &5i64.to_be_bytes()),
        op(2, 3, "b", Some(1000), b"x"),
        write_op(1, "c", &6i64.to_be_bytes()),
    ]);
    let rec = wire::parse_message(&f).unwrap();
    let got: Vec<_> = rec.bins.iter().map(|b| (b.name, b.lut, b.value)).collect();
    assert_eq!(
        got,
        vec![
            ("a", Some(1_700_000_000_000), Value::Int(5)),
            (
                "b",
                Some(1000 + field::CITRUSLEAF_EPOCH_MS),
                Value::Str("x")
            ),
            ("c", None, Value::Int(6)),
        ]
    );
}

#[test]
fn null_bin_is_a_bin_delete_inside_a_write() {
    let f = write(&[write_op(0, "gone", &[]), write_op(3, "kept", b"v")]);
    let rec = wire::parse_message(&f).unwrap();
    assert_eq!(rec.action, Action::Write);
    let got: Vec<_> = rec.bins.iter().map(|b| (b.name, b.value)).collect();
    assert_eq!(got, vec![("gone", Value::Null), ("kept", Value::Str("v"))]);
}

#[test]
fn zero_op_write_and_deletes() {
    let rec_of = |info2| {
        let f = msg(info2, &std_fields(), &[]);
        let rec = wire::parse_message(&f).unwrap();
        assert!(rec.bins.is_empty());
        assert_eq!(rec.bins.iter().count(), 0);
        assert_eq!(rec.digest, DIGEST);
        rec.action
    };
    assert_eq!(rec_of(0x01), Action::Write);
    assert_eq!(rec_of(0x03), Action::Delete { durable: false });
    assert_eq!(rec_of(0x13), Action::Delete { durable: true });
    // CREATE_ONLY and generation bits do not change the action.
    assert_eq!(rec_of(0x25), Action::Write);
}

#[test]
fn header_values_reach_the_record() {
    let f = write(&[]);
    let rec = wire::parse_message(&f).unwrap();
    assert_eq!(
        (rec.info1, rec.info2, rec.generation, rec.record_ttl),
        (0x10, 1, 7, 60)
    );
    assert_eq!(wire::header::generation_of(&f), 7);
    assert_eq!(wire::header::generation_of(&f[..17]), 0);
    assert_eq!(rec.namespace, "test");
    assert_eq!(rec.set, None);
    assert_eq!(rec.message, &f[..]);
}

#[test]
fn generation_of_a_compressed_frame_is_zero_not_zlib_bytes() {
    let f = write(&[]);
    let z = compressed(&f);
    assert_eq!(z[1], 4);
    // Where a type-3 frame keeps the generation, a type-4 frame has the low
    // bytes of the inflated size and the zlib header: never read them.
    assert_ne!(&z[14..18], &[0, 0, 0, 0]);
    assert_eq!(wire::header::generation_of(&z), 0);
    // The real generation comes from the parsed record.
    let mut scratch = Vec::new();
    assert_eq!(wire::parse(&z, &mut scratch, MAX).unwrap().generation, 7);
}

#[test]
fn unknown_fields_and_transaction_id_are_skipped() {
    let txn = 99u64.to_be_bytes();
    let fields = vec![
        (field::NAMESPACE, &b"ns"[..]),
        (200, &b"whatever"[..]),
        (field::TRANSACTION_ID, &txn[..]),
        (field::SET, &b""[..]),
        (field::DIGEST, &DIGEST[..]),
        (3, &b""[..]),
    ];
    let f = msg(1, &fields, &[write_op(17, "t", &[1])]);
    let rec = wire::parse_message(&f).unwrap();
    assert_eq!((rec.namespace, rec.set, rec.digest), ("ns", None, DIGEST));
    assert_eq!(rec.bins.iter().next().unwrap().value, Value::Bool(true));
}

#[test]
fn digest_is_computed_from_set_and_key_when_absent() {
    let key = [&[3u8][..], b"k1"].concat();
    let fields = vec![
        (field::NAMESPACE, &b"test"[..]),
        (field::SET, b"demo"),
        (field::USER_KEY, &key),
    ];
    let f = msg(1, &fields, &[]);
    let rec = wire::parse_message(&f).unwrap();
    let hex: String = rec.digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "b747f5854d0b33259928d0cfab7fad81d6abfbf6");
    // An integer key: 8 bytes big-endian after the particle type.
    let key = [&[1u8][..], &7i64.to_be_bytes()].concat();
    let fields = vec![(field::NAMESPACE, &b"test"[..]), (field::USER_KEY, &key)];
    let f = msg(3, &fields, &[]);
    let rec = wire::parse_message(&f).unwrap();
    assert_eq!(rec.digest, build::digest(None, &Key::Int(7)));
    assert_eq!(rec.user_key, Some(sluice_codec::UserKey::Int(7)));
}

#[test]
fn narrow_integers_bools_and_language_blobs() {
    assert_eq!(
        one_value(&write(&[write_op(1, "i", &[0xff])])),
        ValueSpec::Int(255)
    );
    assert_eq!(
        one_value(&write(&[write_op(1, "i", &[1, 0])])),
        ValueSpec::Int(256)
    );
    assert_eq!(
        one_value(&write(&[write_op(1, "i", &[0xff, 0xff, 0xff, 0xfe])])),
        ValueSpec::Int(0xffff_fffe)
    );
    assert_eq!(
        one_value(&write(&[write_op(17, "b", &[0])])),
        ValueSpec::Bool(false)
    );
    for ptype in 7..=12 {
        let v = one_value(&write(&[write_op(ptype, "j", &[9, 8])]));
        assert_eq!(
            v,
            ValueSpec::Blob {
                ptype,
                bytes: vec![9, 8]
            }
        );
    }
    assert_eq!(
        one_value(&write(&[write_op(4, "e", &[])])),
        ValueSpec::Blob {
            ptype: 4,
            bytes: vec![]
        }
    );
}

#[test]
fn hll_bin_is_opaque_bytes() {
    let sketch: Vec<u8> = (0..=255).collect();
    let f = xdr_message(vec![BinSpec::new("h", ValueSpec::Hll(sketch.clone()))])
        .to_vec()
        .unwrap();
    let rec = wire::parse_message(&f).unwrap();
    let b = rec.bins.iter().next().unwrap();
    assert_eq!(b.value, Value::Hll(&sketch));
    assert_eq!(b.value.particle_type(), 18);
}

#[test]
fn geojson_with_cells() {
    let json = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}"#;
    let cells = vec![0x8000_0000_0000_0001, u64::MAX, 42];
    let spec = ValueSpec::Geo {
        flags: 1,
        cells: cells.clone(),
        json: json.into(),
    };
    let f = xdr_message(vec![BinSpec::new("g", spec.clone())])
        .to_vec()
        .unwrap();
    let rec = wire::parse_message(&f).unwrap();
    let Value::Geo(g) = rec.bins.iter().next().unwrap().value else {
        panic!()
    };
    assert_eq!(g.flags, 1);
    assert_eq!(g.cell_ids().collect::<Vec<_>>(), cells);
    assert_eq!(g.json, json);
    assert_eq!(one_value(&f), spec);
}

#[test]
fn ordered_list_ext_header_is_removed() {
    // [ext C7 00 01, 3, 1, 2] : an ordered list of 3 as the server stores it.
    let raw = [0x94, 0xc7, 0x00, 0x01, 0x03, 0x01, 0x02];
    let f = write(&[write_op(20, "l", &raw)]);
    let rec = wire::parse_message(&f).unwrap();
    let Value::List { order, items } = rec.bins.iter().next().unwrap().value else {
        panic!()
    };
    assert_eq!(order, ListOrder::Ordered);
    assert_eq!((items.raw, items.body, items.len), (&raw[..], &raw[4..], 3));
    let mut r = Reader::new(items.body);
    let got: Vec<_> = (0..3).map(|_| r.next().unwrap()).collect();
    assert_eq!(
        got,
        [
            wire::msgpack::Elem::Int(3),
            wire::msgpack::Elem::Int(1),
            wire::msgpack::Elem::Int(2)
        ]
    );
    assert!(r.next().is_err(), "end of input is an error");
}

#[test]
fn persisted_index_payloads_are_skipped() {
    // Ordered list with persist-index flag and a 4-byte payload (fixext4).
    let raw = [0x93, 0xd6, 0x11, 1, 2, 3, 4, 0x05, 0x06];
    let v = one_value(&write(&[write_op(20, "l", &raw)]));
    assert_eq!(
        v,
        ValueSpec::List {
            order: ListOrder::Ordered,
            persist_index: true,
            items: vec![Elem::Int(5), Elem::Int(6)]
        }
    );
    // Key-ordered map with persisted index in an ext8 payload of 3 bytes.
    let raw = [
        0x82, 0xc7, 0x03, 0x11, 9, 9, 9, 0xc0, 0xa2, 0x03, b'a', 0x07,
    ];
    let v = one_value(&write(&[write_op(19, "m", &raw)]));
    assert_eq!(
        v,
        ValueSpec::Map {
            order: MapOrder::Key,
            persist_index: true,
            entries: vec![(Elem::Str("a".into()), Elem::Int(7))]
        }
    );
}

#[test]
fn flagged_maps_of_every_order() {
    for (flags, order) in [
        (0x01, MapOrder::Key),
        (0x03, MapOrder::KeyValue),
        (0x08, MapOrder::Insertion),
        (0x10, MapOrder::Unordered),
    ] {
        let raw = [0x82, 0xc7, 0x00, flags, 0xc0, 0x01, 0xa3, 0x04, 0xde, 0xad];
        let f = write(&[write_op(19, "m", &raw)]);
        let rec = wire::parse_message(&f).unwrap();
        let Value::Map { order: got, items } = rec.bins.iter().next().unwrap().value else {
            panic!()
        };
        assert_eq!(got, order, "flags {flags:#x}");
        assert_eq!((items.body, items.len), (&raw[5..], 1));
        let entries = ValueSpec::from_value(&rec.bins.iter().next().unwrap().value).unwrap();
        let ValueSpec::Map { entries, .. } = entries else {
            panic!()
        };
        assert_eq!(
            entries,
            vec![(
                Elem::Int(1),
                Elem::Blob {
                    ptype: 4,
                    bytes: vec![0xde, 0xad]
                }
            )]
        );
    }
}

#[test]
fn nested_collections_and_msgpack_forms() {
    // A list holding: bin8 blob, python blob in a str, geo, uint64 max,
    // float32, nested ordered list, map with int keys, a plain ext value.
    let mut raw = vec![0x98];
    raw.extend_from_slice(&[0xc4, 0x03, 0x04, 0x01, 0x02]);
    raw.extend_from_slice(&[0xa2, 0x09, 0x33]);
    raw.extend_from_slice(&[0xa3, 0x17, b'{', b'}']);
    raw.push(0xcf);
    raw.extend_from_slice(&u64::MAX.to_be_bytes());
    raw.push(0xca);
    raw.extend_from_slice(&1.5f32.to_be_bytes());
    raw.extend_from_slice(&[0x92, 0xc7, 0x00, 0x01, 0xd0, 0x80]);
    raw.extend_from_slice(&[0x81, 0xd1, 0xff, 0x00, 0xc2]);
    raw.extend_from_slice(&[0xd5, 0x05, 0xaa, 0xbb]);
    let v = one_value(&write(&[write_op(20, "l", &raw)]));
    let want = vec![
        Elem::Blob {
            ptype: 4,
            bytes: vec![1, 2],
        },
        Elem::Blob {
            ptype: 9,
            bytes: vec![0x33],
        },
        Elem::Geo("{}".into()),
        Elem::Uint(u64::MAX),
        Elem::Float(1.5),
        Elem::List {
            order: ListOrder::Ordered,
            items: vec![Elem::Int(-128)],
        },
        Elem::Map {
            order: MapOrder::Unordered,
            entries: vec![(Elem::Int(-256), Elem::Bool(false))],
        },
        Elem::Ext {
            ty: 5,
            data: vec![0xaa, 0xbb],
        },
    ];
    assert_eq!(
        v,
        ValueSpec::List {
            order: ListOrder::Unordered,
            persist_index: false,
            items: want
        }
    );
}

#[test]
fn skip_value_skips_nested_values_whole() {
    let raw = [0x92, 0x81, 0xa2, 0x03, b'k', 0x91, 0x05, 0x07, 0x2a];
    let mut r = Reader::new(&raw);
    r.skip_value().unwrap();
    assert_eq!(r.position(), 8);
    assert_eq!(r.next().unwrap(), wire::msgpack::Elem::Int(42));
}

// ---------------------------------------------------------------- rejected

#[test]
fn short_and_misframed_frames() {
    assert_eq!(
        err(&[2, 3, 0]),
        (
            ErrorKind::Truncated {
                what: "proto header",
                need: 8,
                have: 3
            },
            0
        )
    );
    let good = write(&[]);
    let mut f = good.clone();
    f[0] = 1;
    assert_eq!(err(&f), (ErrorKind::BadVersion(1), 0));
    f = good.clone();
    f[1] = 9;
    assert_eq!(err(&f), (ErrorKind::UnknownFrameType(9), 1));
    f = good.clone();
    f[1] = 1;
    assert_eq!(
        err(&f),
        (
            ErrorKind::WrongFrameType {
                expected: 3,
                found: 1
            },
            1
        )
    );
    // Length says more than the frame holds, or less.
    let body = good.len() - 8;
    assert_eq!(
        err(&good[..good.len() - 1]),
        (
            ErrorKind::Truncated {
                what: "frame body",
                need: body,
                have: body - 1
            },
            8
        )
    );
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        err(&long),
        (ErrorKind::TrailingBytes { extra: 1 }, good.len())
    );
}

#[test]
fn wrong_or_short_message_header() {
    let mut f = write(&[]);
    f[8] = 21;
    assert_eq!(err(&f), (ErrorKind::BadHeaderSize(21), 8));
    let f = [2, 3, 0, 0, 0, 0, 0, 4, 22, 0, 1, 0];
    assert_eq!(
        err(&f),
        (
            ErrorKind::Truncated {
                what: "message header",
                need: 22,
                have: 4
            },
            8
        )
    );
}

#[test]
fn neither_write_nor_delete() {
    assert_eq!(
        err(&msg(0x02, &std_fields(), &[])),
        (ErrorKind::NotAWrite(0x02), 10)
    );
    assert_eq!(
        err(&msg(0x00, &std_fields(), &[])),
        (ErrorKind::NotAWrite(0), 10)
    );
}

#[test]
fn counts_that_run_past_the_end() {
    // Three fields announced, two present.
    let f = msg_counts(1, &std_fields(), &[], 3, 0);
    assert_eq!(
        err(&f),
        (
            ErrorKind::Truncated {
                what: "field size",
                need: 4,
                have: 0
            },
            OPS_AT
        )
    );
    // Two ops announced, one present.
    let f = msg_counts(1, &std_fields(), &[write_op(1, "i", &[1; 8])], 2, 2);
    let end = OPS_AT + 8 + 1 + 8;
    assert_eq!(
        err(&f),
        (
            ErrorKind::Truncated {
                what: "op header",
                need: 8,
                have: 0
            },
            end
        )
    );
    // A field whose size runs past the end.
    let mut f = msg(1, &[(field::NAMESPACE, b"test")], &[]);
    f[33] = 200;
    assert_eq!(
        err(&f),
        (
            ErrorKind::Truncated {
                what: "field",
                need: 200,
                have: 5
            },
            34
        )
    );
    // An op whose size runs past the end.
    let mut f = write(&[write_op(3, "s", b"abc")]);
    f[OPS_AT + 3] = 50;
    assert_eq!(
        err(&f),
        (
            ErrorKind::Truncated {
                what: "op",
                need: 54,
                have: 12
            },
            OPS_AT
        )
    );
}

#[test]
fn malformed_sizes() {
    let mut f = msg(1, &[(field::NAMESPACE, b"test")], &[]);
    f[33] = 0;
    // A zero field size: counted from the field's start.
    assert_eq!(err(&f[..]).0, ErrorKind::EmptyField);
    assert_eq!(err(&f[..]).1, 30);
    let f = msg(
        1,
        &[(field::NAMESPACE, b"t"), (field::DIGEST, &[0; 19])],
        &[],
    );
    assert_eq!(err(&f), (ErrorKind::BadFieldSize { ty: 4, len: 19 }, 36));
    let f = msg(
        1,
        &[
            (field::NAMESPACE, b"t"),
            (field::LUT, &[0; 7]),
            (field::DIGEST, &DIGEST),
        ],
        &[],
    );
    assert_eq!(err(&f), (ErrorKind::BadFieldSize { ty: 14, len: 7 }, 36));
    // Op size smaller than its name.
    let mut o = write_op(3, "name", b"");
    o[3] = 3;
    assert_eq!(
        err(&write(&[o])),
        (ErrorKind::BadOpSize { size: 3, need: 8 }, OPS_AT)
    );
    // Has-LUT flag but no room for the LUT.
    let mut o = write_op(3, "n", b"abc");
    o[6] = 1;
    assert_eq!(
        err(&write(&[o])),
        (ErrorKind::BadOpSize { size: 8, need: 13 }, OPS_AT)
    );
    let v = OPS_AT + 9;
    for (ptype, len) in [(1u8, 3usize), (2, 4), (17, 2), (0, 1)] {
        let f = write(&[write_op(ptype, "x", &vec![0; len])]);
        assert_eq!(
            err(&f),
            (ErrorKind::BadValueSize { ptype, len }, v),
            "ptype {ptype}"
        );
    }
}

#[test]
fn length_over_the_cap() {
    let f = write(&[write_op(3, "s", &[b'a'; 100])]);
    let e = wire::frame::cut(&f, 50).unwrap_err();
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::TooLong {
                len: (f.len() - 8) as u64,
                max: 50
            },
            2
        )
    );
    // Refused from the header alone, before the body arrived.
    let e = wire::frame::cut(&f[..8], 50).unwrap_err();
    assert_eq!(e.offset, 2);
    // A 48-bit length of 2^48 - 1.
    let e = wire::frame::cut(&[2, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], MAX).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::TooLong {
            len: (1 << 48) - 1,
            max: MAX
        }
    );
}

fn compressed(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    build::compress(inner, &mut out).unwrap();
    out
}

#[test]
fn compressed_frames() {
    let inner = xdr_message(vec![BinSpec::new("s", ValueSpec::Str("y".repeat(500)))])
        .to_vec()
        .unwrap();
    let z = compressed(&inner);
    assert_eq!(z[1], 4);
    assert!(z.len() < inner.len());
    let mut scratch = Vec::new();
    let rec = wire::parse(&z, &mut scratch, MAX).unwrap();
    assert_eq!(rec.message, &inner[..]);
    assert_eq!(
        rec.bins.iter().next().unwrap().value,
        Value::Str(&"y".repeat(500))
    );
    // parse_message refuses a type-4 frame: it must be inflated first.
    let e = wire::parse_message(&z).unwrap_err();
    assert_eq!(
        (e.kind, e.offset),
        (
            ErrorKind::WrongFrameType {
                expected: 3,
                found: 4
            },
            1
        )
    );
}

#[test]
fn bad_zlib_and_size_mismatches() {
    let inner = write(&[write_op(3, "s", &[b'q'; 300])]);
    let good = compressed(&inner);
    // Garbage instead of a zlib stream.
    let mut bad = good[..16].to_vec();
    bad.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]);
    let body = (bad.len() - 8) as u64;
    bad[2..8].copy_from_slice(&body.to_be_bytes()[2..]);
    assert_eq!(err(&bad), (ErrorKind::BadZlib, 16));
    // Declared size one more / one less than the inflated data.
    let actual = inner.len() as u64;
    for declared in [actual + 1, actual - 1] {
        let mut f = good.clone();
        f[8..16].copy_from_slice(&declared.to_be_bytes());
        let want = if declared > actual {
            actual
        } else {
            declared + 1
        };
        assert_eq!(
            err(&f),
            (
                ErrorKind::InflatedSize {
                    declared,
                    actual: want
                },
                16
            )
        );
    }
    // Declared size over the cap: refused before inflating anything.
    let mut f = good.clone();
    f[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(
        err(&f),
        (
            ErrorKind::TooLong {
                len: u64::MAX,
                max: MAX + 8
            },
            8
        )
    );
    // Too short to hold the inflated size.
    assert_eq!(
        err(&[2, 4, 0, 0, 0, 0, 0, 3, 0, 0, 0]),
        (
            ErrorKind::Truncated {
                what: "inflated size",
                need: 8,
                have: 3
            },
            8
        )
    );
    // The inflated frame is not a type-3 frame.
    let mut info = inner.clone();
    info[1] = 1;
    assert_eq!(
        err(&compressed(&info)),
        (
            ErrorKind::WrongFrameType {
                expected: 3,
                found: 1
            },
            1
        )
    );
    // Inflated frame whose own length disagrees with its size.
    let mut short = inner.clone();
    short.pop();
    assert_eq!(
        err(&compressed(&short)).0,
        ErrorKind::Truncated {
            what: "frame body",
            need: inner.len() - 8,
            have: inner.len() - 9
        }
    );
}

#[test]
fn unknown_particle_and_unexpected_op() {
    let v = OPS_AT + 9;
    assert_eq!(
        err(&write(&[write_op(5, "x", b"?")])),
        (ErrorKind::UnknownParticle(5), v)
    );
    assert_eq!(
        err(&write(&[write_op(21, "x", b"")])),
        (ErrorKind::UnknownParticle(21), v)
    );
    assert_eq!(
        err(&write(&[op(1, 1, "x", None, &[0; 8])])),
        (ErrorKind::UnexpectedOp(1), OPS_AT + 4)
    );
}

#[test]
fn invalid_utf8_everywhere_it_can_hide() {
    let v = OPS_AT + 9;
    let bad = [0xff, 0xfe];
    assert_eq!(
        err(&write(&[write_op(3, "x", &bad)])),
        (ErrorKind::BadUtf8 { what: "string bin" }, v)
    );
    let mut o = write_op(3, "x", b"ok");
    o[8] = 0xff;
    assert_eq!(
        err(&write(&[o])),
        (ErrorKind::BadUtf8 { what: "bin name" }, OPS_AT + 8)
    );
    let f = msg(1, &[(field::NAMESPACE, &bad)], &[]);
    assert_eq!(err(&f), (ErrorKind::BadUtf8 { what: "namespace" }, 35));
    let f = msg(1, &[(field::NAMESPACE, b"t"), (field::SET, &bad)], &[]);
    assert_eq!(err(&f), (ErrorKind::BadUtf8 { what: "set name" }, 41));
    let f = msg(
        1,
        &[(field::NAMESPACE, b"t"), (field::USER_KEY, &[3, 0xff])],
        &[],
    );
    assert_eq!(err(&f), (ErrorKind::BadUtf8 { what: "user key" }, 42));
    let geo = [0, 0, 0, 0xff];
    assert_eq!(
        err(&write(&[write_op(23, "g", &geo)])),
        (
            ErrorKind::BadUtf8 {
                what: "GeoJSON text"
            },
            v + 3
        )
    );
    let list = [0x91, 0xa2, 0x03, 0xff];
    assert_eq!(
        err(&write(&[write_op(20, "l", &list)])),
        (
            ErrorKind::BadUtf8 {
                what: "string element"
            },
            v + 1
        )
    );
}

#[test]
fn bad_msgpack() {
    let v = OPS_AT + 9;
    let case = |raw: &[u8], ptype: u8| err(&write(&[write_op(ptype, "x", raw)]));
    assert_eq!(
        case(&[0x91, 0xc1], 20),
        (
            ErrorKind::BadMsgpack {
                why: "unused marker 0xc1"
            },
            v + 1
        )
    );
    assert_eq!(
        case(&[0x93, 0x01, 0x02], 20),
        (
            ErrorKind::Truncated {
                what: "msgpack element",
                need: 1,
                have: 0
            },
            v + 3
        )
    );
    assert_eq!(
        case(&[0x91, 0x01, 0x02], 20),
        (
            ErrorKind::BadMsgpack {
                why: "bytes follow the last element of a list or map"
            },
            v + 2
        )
    );
    assert_eq!(
        case(&[0x81, 0x01, 0x02], 20),
        (
            ErrorKind::BadMsgpack {
                why: "list/map bin does not start with an array/map header"
            },
            v
        )
    );
    assert_eq!(
        case(&[0x91, 0x01], 19),
        (
            ErrorKind::BadMsgpack {
                why: "list/map bin does not start with an array/map header"
            },
            v
        )
    );
    assert_eq!(
        case(&[0x82, 0xc7, 0x00, 0x01, 0x01, 0x01, 0x02], 19),
        (
            ErrorKind::BadMsgpack {
                why: "map ext header key is not followed by nil"
            },
            v + 4
        )
    );
    assert_eq!(
        case(&[0x91, 0xa2, 0x05, 0x41], 20),
        (
            ErrorKind::BadMsgpack {
                why: "str/bin element with an unknown particle prefix"
            },
            v + 1
        )
    );
    // A nested map that claims more pairs than there are bytes.
    assert_eq!(
        case(&[0x91, 0xdf, 0xff, 0xff, 0xff, 0xff, 0x01], 20),
        (
            ErrorKind::Truncated {
                what: "msgpack element",
                need: 1,
                have: 0
            },
            v + 7
        )
    );
    // A str whose length runs past the end.
    assert_eq!(
        case(&[0x91, 0xdb, 0x00, 0x00, 0x01, 0x00, 0x03], 20),
        (
            ErrorKind::Truncated {
                what: "msgpack str/bin payload",
                need: 256,
                have: 1
            },
            v + 6
        )
    );
    // Empty list bytes.
    assert_eq!(
        case(&[], 20),
        (
            ErrorKind::Truncated {
                what: "msgpack element",
                need: 1,
                have: 0
            },
            v
        )
    );
}

#[test]
fn geo_and_key_shapes() {
    let v = OPS_AT + 9;
    assert_eq!(
        err(&write(&[write_op(23, "g", &[0, 0])])),
        (
            ErrorKind::Truncated {
                what: "GeoJSON value",
                need: 3,
                have: 2
            },
            v
        )
    );
    assert_eq!(
        err(&write(&[write_op(
            23,
            "g",
            &[0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8]
        )])),
        (
            ErrorKind::Truncated {
                what: "GeoJSON value",
                need: 19,
                have: 11
            },
            v
        )
    );
    let f = msg(
        1,
        &[(field::NAMESPACE, b"t"), (field::USER_KEY, &[7, 1])],
        &[],
    );
    assert_eq!(err(&f), (ErrorKind::BadUserKey(7), 41));
    let f = msg(
        1,
        &[(field::NAMESPACE, b"t"), (field::USER_KEY, &[1, 1, 2])],
        &[],
    );
    assert_eq!(err(&f), (ErrorKind::BadValueSize { ptype: 1, len: 2 }, 42));
    let f = msg(1, &[(field::NAMESPACE, b"t"), (field::USER_KEY, &[])], &[]);
    assert_eq!(
        err(&f),
        (
            ErrorKind::Truncated {
                what: "user key particle type",
                need: 1,
                have: 0
            },
            41
        )
    );
}

#[test]
fn missing_namespace_or_digest() {
    let f = msg(1, &[(field::DIGEST, &DIGEST)], &[]);
    assert_eq!(err(&f), (ErrorKind::MissingNamespace, 8 + 22 + 25));
    let f = msg(1, &[(field::NAMESPACE, b"test")], &[]);
    assert_eq!(err(&f), (ErrorKind::MissingDigest, 8 + 22 + 9));
}

#[test]
fn bins_iterate_again_after_parse() {
    let m = xdr_message(vec![
        BinSpec::new("a", ValueSpec::Int(1)),
        BinSpec::new(
            "b",
            ValueSpec::List {
                order: ListOrder::Ordered,
                persist_index: false,
                items: vec![Elem::Int(2)],
            },
        ),
    ]);
    let f = m.to_vec().unwrap();
    let rec: Record<'_> = wire::parse_message(&f).unwrap();
    let first: Vec<_> = rec.bins.iter().map(|b| b.name).collect();
    let again: Vec<_> = rec.bins.into_iter().map(|b| b.name).collect();
    assert_eq!(first, ["a", "b"]);
    assert_eq!(first, again);
    assert_eq!(rec.bins.iter().size_hint(), (2, Some(2)));
}

#[test]
fn nesting_is_bounded() {
    let v = OPS_AT + 9;
    let nested = |levels: usize| {
        let mut raw = vec![0x91; levels];
        raw.push(0x01);
        write(&[write_op(20, "l", &raw)])
    };
    let max = wire::msgpack::MAX_DEPTH;
    let f = nested(max);
    let rec = wire::parse_message(&f).unwrap();
    let mut spec = ValueSpec::from_value(&rec.bins.iter().next().unwrap().value).unwrap();
    let mut levels = 1;
    while let ValueSpec::List { items, .. } = spec {
        match items.into_iter().next().unwrap() {
            Elem::List { order, items } => {
                levels += 1;
                spec = ValueSpec::List {
                    order,
                    persist_index: false,
                    items,
                };
            }
            last => {
                assert_eq!(last, Elem::Int(1));
                break;
            }
        }
    }
    assert_eq!(levels, max);
    assert_eq!(err(&nested(max + 1)), (ErrorKind::TooDeep { max }, v + max));
    // Deep maps too, and a deep value after a shallow one.
    let mut raw = vec![0x92, 0x01];
    for _ in 0..max {
        raw.extend_from_slice(&[0x81, 0xc0]);
    }
    raw.push(0xc0);
    assert_eq!(
        err(&write(&[write_op(20, "l", &raw)])),
        (ErrorKind::TooDeep { max }, v + 2 + 2 * (max - 1))
    );
    // The standalone reader: a million levels are refused, not recursed into.
    let deep = vec![0x91; 1_000_000];
    let e = Reader::new(&deep).skip_value().unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::TooDeep { max }, max));
    let e = Elem::read(&mut Reader::new(&deep)).unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::TooDeep { max }, max));
}
