//! The encoders behind the real parser: frames written with
//! `sluice_codec::build`, parsed with `wire::parse`, encoded, and the output
//! read back by an independent reader (serde_json, rmpv, apache-avro).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use serde_json::{json, Value as J};
use sluice_codec::build::{compress, BinSpec, Elem, Key, Message, ValueSpec};
use sluice_codec::encode::{avro, BinPolicy, EncodeError, Encoder, NameTransform};
use sluice_codec::wire;
use sluice_codec::{ListOrder, MapOrder};

const LUT: u64 = 1_698_586_936_461;
const RECEIVED: u64 = 1_700_000_000_999;

fn encode_frame(enc: &Encoder, frame: &[u8], policy: &BinPolicy) -> Result<Vec<u8>, EncodeError> {
    let mut scratch = Vec::new();
    let rec = wire::parse(frame, &mut scratch, 1 << 20).unwrap();
    let mut out = Vec::new();
    enc.encode(&rec, policy, RECEIVED, &mut out)?;
    Ok(out)
}

fn json_of(m: &Message) -> J {
    let out = encode_frame(&Encoder::json(), &m.to_vec().unwrap(), &BinPolicy::all()).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// XDR always sends a digest; a record without a key needs one given.
fn with_digest(mut m: Message) -> Message {
    if m.user_key.is_none() {
        m.digest = Some([0x11; 20]);
    }
    m
}

fn write_msg(ns: &str, set: Option<&str>, key: Option<Key>, bins: Vec<BinSpec>) -> Message {
    with_digest(Message::write_record(ns, set, key, bins))
}

fn s(x: &str) -> Elem {
    Elem::Str(x.to_string())
}

fn every_type() -> Vec<BinSpec> {
    vec![
        BinSpec::new("i", ValueSpec::Int(i64::MIN)),
        BinSpec::new("f", ValueSpec::Float(-0.125)),
        BinSpec::new("s", ValueSpec::Str("tab\there \u{1}".to_string())),
        BinSpec::new("t", ValueSpec::Bool(false)),
        BinSpec::new(
            "b",
            ValueSpec::Blob {
                ptype: 4,
                bytes: vec![0xff, 0x00],
            },
        ),
        BinSpec::new(
            "j",
            ValueSpec::Blob {
                ptype: 7,
                bytes: vec![0xac, 0xed],
            },
        ),
        BinSpec::new("h", ValueSpec::Hll(vec![9, 8, 7])),
        BinSpec::new("n", ValueSpec::Null),
        BinSpec::new(
            "ol",
            ValueSpec::List {
                order: ListOrder::Ordered,
                persist_index: true,
                items: vec![Elem::Int(1), Elem::Uint(u64::MAX), s("x")],
            },
        ),
        BinSpec::new(
            "im",
            ValueSpec::Map {
                order: MapOrder::Insertion,
                persist_index: false,
                entries: vec![
                    (
                        s("z"),
                        Elem::List {
                            order: ListOrder::Ordered,
                            items: vec![Elem::Float(0.5)],
                        },
                    ),
                    (
                        Elem::Int(-3),
                        Elem::Blob {
                            ptype: 4,
                            bytes: vec![1],
                        },
                    ),
                    (
                        Elem::Blob {
                            ptype: 4,
                            bytes: vec![0xfb],
                        },
                        Elem::Nil,
                    ),
                ],
            },
        ),
        BinSpec::new(
            "g",
            ValueSpec::Geo {
                flags: 0,
                cells: vec![1, 2],
                json: "{\"type\": \"Point\", \"coordinates\": [1, 2]}".to_string(),
            },
        ),
    ]
}

#[test]
fn json_of_every_particle_type_through_the_parser() {
    let mut m = Message::write_record("ns", Some("set"), Some(Key::Str("k".into())), every_type())
        .from_xdr(LUT);
    m.generation = 77;
    m.record_ttl = 3600;
    m.bins[0].lut = Some(LUT - 5);
    let digest = wire::field::digest(Some("set"), &sluice_codec::UserKey::Str("k"));
    let b64 = |b: &[u8]| base64_std(b);
    assert_eq!(
        json_of(&m),
        json!({
            "msg": "write",
            "key": ["ns", "set", b64(&digest), "k"],
            "gen": 77, "exp": LUT / 1000 + 3600, "lut": LUT,
            "bins": [
                {"name": "i", "type": "int", "value": i64::MIN},
                {"name": "f", "type": "float", "value": -0.125},
                {"name": "s", "type": "str", "value": "tab\there \u{1}"},
                {"name": "t", "type": "bool", "value": false},
                {"name": "b", "type": "blob", "value": "/wA="},
                {"name": "j", "type": "blob", "value": "rO0="},
                {"name": "h", "type": "hll", "value": "CQgH"},
                {"name": "n", "type": "null", "value": null},
                {"name": "ol", "type": "list", "value": [1, u64::MAX, "x"], "ordered": true},
                {"name": "im", "type": "map", "value": {"z": [0.5], "-3": "AQ==", "+w==": null}, "order": "insertion"},
                {"name": "g", "type": "geojson", "value": {"type": "Point", "coordinates": [1, 2]}},
            ]
        })
    );
}

/// Standard base64 with padding, written out here so the test does not use
/// the code under test.
fn base64_std(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn json_deletes_keys_sets_and_ttls() {
    let d = Message::delete_record("ns", Some("set"), Some(Key::Int(7)), true).from_xdr(LUT);
    let v = json_of(&d);
    assert_eq!(v["msg"], json!("delete"));
    assert_eq!(v["durable"], json!(true));
    assert_eq!(v["lut"], json!(LUT));
    assert_eq!(v["key"][3], json!(7));
    assert_eq!(v.get("exp"), None);
    assert_eq!(v.get("bins"), None);
    let d = with_digest(Message::delete_record("ns", None, None, false));
    let v = json_of(&d);
    assert_eq!(v["durable"], json!(false));
    assert_eq!(v["key"][1], json!(null));
    assert_eq!(v["key"][3], json!(null));
    assert_eq!(v["lut"], json!(0));

    // An empty set field is no set; no LUT: exp from the time received.
    let mut w = Message::write_record("ns", Some(""), Some(Key::Blob(vec![1, 2, 3])), vec![]);
    w.record_ttl = 10;
    let v = json_of(&w);
    assert_eq!(v["key"][1], json!(null));
    assert_eq!(v["key"][3], json!("AQID"));
    assert_eq!(v["exp"], json!(RECEIVED / 1000 + 10));
    assert_eq!(v["bins"], json!([]));
    w.record_ttl = u32::MAX;
    assert_eq!(json_of(&w)["exp"], json!(0));
    w.record_ttl = 0;
    assert_eq!(json_of(&w)["exp"], json!(0));
}

#[test]
fn flat_json_through_the_parser() {
    let m = Message::write_record(
        "ns",
        Some("set"),
        Some(Key::Int(5)),
        every_type()[..4].to_vec(),
    )
    .from_xdr(LUT);
    let out = encode_frame(
        &Encoder::flat_json("metadata"),
        &m.to_vec().unwrap(),
        &BinPolicy::all(),
    )
    .unwrap();
    let v: J = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["metadata"]["userKey"], json!(5));
    assert_eq!(v["metadata"]["msg"], json!("write"));
    assert_eq!(v["i"], json!(i64::MIN));
    assert_eq!(v["s"], json!("tab\there \u{1}"));
    assert_eq!(v.as_object().map(|o| o.len()), Some(5));

    let clash = write_msg(
        "ns",
        None,
        None,
        vec![BinSpec::new("metadata", ValueSpec::Int(1))],
    );
    let err = encode_frame(
        &Encoder::flat_json("metadata"),
        &clash.to_vec().unwrap(),
        &BinPolicy::all(),
    )
    .unwrap_err();
    assert!(
        matches!(err, EncodeError::MetadataKeyCollision { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("metadata"), "{err}");
}

#[test]
fn message_pack_through_the_parser() {
    use rmpv::Value as V;
    let m = write_msg("ns", Some("set"), None, every_type()[8..10].to_vec()).from_xdr(LUT);
    let out = encode_frame(
        &Encoder::message_pack(),
        &m.to_vec().unwrap(),
        &BinPolicy::all(),
    )
    .unwrap();
    let v = rmpv::decode::read_value(&mut &out[..]).unwrap();
    assert_eq!(v[0], V::from(1));
    assert_eq!(v[1], V::from(1));
    assert_eq!(v[2][0][1], V::from("set"));
    assert_eq!(v[2][0][3], V::Nil);
    assert_eq!(
        v[2][4],
        V::Array(vec![
            V::Array(vec![
                V::from("ol"),
                V::from(20),
                V::from(1),
                V::Array(vec![V::from(1), V::from(u64::MAX), V::from("x")])
            ]),
            V::Array(vec![
                V::from("im"),
                V::from(19),
                V::from(8),
                V::Map(vec![
                    (V::from("z"), V::Array(vec![V::F64(0.5)])),
                    (V::from(-3), V::Ext(4, vec![1])),
                    (V::Ext(4, vec![0xfb]), V::Nil),
                ])
            ]),
        ])
    );
}

#[test]
fn avro_through_the_parser_and_mismatch() {
    use apache_avro::types::Value as A;
    let m = write_msg("ns", Some("set"), None, every_type()[..2].to_vec()).from_xdr(LUT);
    let enc = Encoder::avro(avro::DEFAULT_SCHEMA, true).unwrap();
    let out = encode_frame(&enc, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap();
    let schema = apache_avro::Schema::parse_str(avro::DEFAULT_SCHEMA).unwrap();
    #[allow(deprecated)]
    let v = apache_avro::from_avro_datum(&schema, &mut &out[..], None).unwrap();
    let A::Record(f) = v else {
        panic!("not a record")
    };
    let A::Map(bins) = &f[1].1 else {
        panic!("bins")
    };
    assert_eq!(bins["i"], A::Union(2, Box::new(A::Long(i64::MIN))));
    assert_eq!(bins["f"], A::Union(3, Box::new(A::Double(-0.125))));

    let strict = r#"{"type":"record","name":"R","fields":[{"name":"i","type":"string"}]}"#;
    let enc = Encoder::avro(strict, true).unwrap();
    let only_i = BinPolicy::include(["i"]);
    let err = encode_frame(&enc, &m.to_vec().unwrap(), &only_i).unwrap_err();
    assert!(matches!(err, EncodeError::AvroMismatch(_)), "{err}");
}

#[test]
fn xdr_is_the_inner_message_even_when_compressed() {
    let m = write_msg(
        "ns",
        Some("set"),
        None,
        vec![BinSpec::new("s", ValueSpec::Str("x".repeat(500)))],
    );
    let frame = m.to_vec().unwrap();
    assert_eq!(
        encode_frame(&Encoder::xdr(), &frame, &BinPolicy::all()).unwrap(),
        frame
    );
    let mut z = Vec::new();
    compress(&frame, &mut z).unwrap();
    assert_ne!(z, frame);
    assert_eq!(
        encode_frame(&Encoder::xdr(), &z, &BinPolicy::all()).unwrap(),
        frame
    );
}

#[test]
fn bin_policy_through_the_parser() {
    let m = write_msg("ns", None, None, every_type()[..4].to_vec());
    let p = BinPolicy::all()
        .exclude(["s"])
        .rename("t", "Flag")
        .transform(NameTransform::Uppercase);
    let out = encode_frame(&Encoder::json(), &m.to_vec().unwrap(), &p).unwrap();
    let v: J = serde_json::from_slice(&out).unwrap();
    let names: Vec<_> = v["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].clone())
        .collect();
    assert_eq!(names, [json!("I"), json!("F"), json!("Flag")]);
}

/// A user schema with a field per bin: optional fields (unions with null),
/// an enum, a fixed, int / float / timestamp-millis, nested arrays and maps,
/// and a recursive one-field record.
const USER_SCHEMA: &str = r#"{"type": "record", "name": "R", "namespace": "u", "fields": [
  {"name": "metadata", "type": {"type": "record", "name": "M", "fields": [
    {"name": "msg", "type": {"type": "enum", "name": "Msg", "symbols": ["write", "delete"]}},
    {"name": "set", "type": ["null", "string"]},
    {"name": "userKey", "type": ["null", "long", "string"]},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 20}},
    {"name": "gen", "type": "int"},
    {"name": "lut", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "exp", "type": "long"},
    {"name": "durable", "type": "boolean"},
    {"name": "note", "type": ["null", "string"]}
  ]}},
  {"name": "id", "type": ["null", "int"]},
  {"name": "score", "type": ["null", "float"]},
  {"name": "desc", "type": ["null", "bytes", "string"]},
  {"name": "matrix", "type": ["null", {"type": "array", "items": {"type": "array", "items": ["long", "string"]}}]},
  {"name": "lookup", "type": ["null", {"type": "map", "values": {"type": "map", "values": ["null", "double"]}}]},
  {"name": "tree", "type": ["null", {"type": "record", "name": "Node", "fields": [
    {"name": "v", "type": ["long", {"type": "array", "items": "Node"}]}
  ]}]},
  {"name": "absent", "type": ["null", "long"], "default": null}
]}"#;

fn user_bins() -> Vec<BinSpec> {
    let list = |items| Elem::List {
        order: ListOrder::Unordered,
        items,
    };
    vec![
        BinSpec::new("id", ValueSpec::Int(42)),
        BinSpec::new("score", ValueSpec::Float(2.5)),
        BinSpec::new("desc", ValueSpec::Str("text".to_string())),
        BinSpec::new(
            "matrix",
            ValueSpec::List {
                order: ListOrder::Ordered,
                persist_index: false,
                items: vec![
                    list(vec![Elem::Int(1), s("a")]),
                    list(vec![]),
                    list(vec![Elem::Int(-2)]),
                ],
            },
        ),
        BinSpec::new(
            "lookup",
            ValueSpec::Map {
                order: MapOrder::Key,
                persist_index: false,
                entries: vec![(
                    s("x"),
                    Elem::Map {
                        order: MapOrder::Unordered,
                        entries: vec![(s("p"), Elem::Float(1.5)), (Elem::Int(9), Elem::Nil)],
                    },
                )],
            },
        ),
        BinSpec::new(
            "tree",
            ValueSpec::List {
                order: ListOrder::Unordered,
                persist_index: false,
                items: vec![Elem::Int(1), list(vec![Elem::Int(2), Elem::Int(3)])],
            },
        ),
    ]
}

fn avro_read(schema: &str, bytes: &[u8]) -> apache_avro::types::Value {
    let schema = apache_avro::Schema::parse_str(schema).unwrap();
    let mut r = bytes;
    let v = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut r)
        .unwrap();
    assert!(r.is_empty(), "{} bytes after the datum", r.len());
    v
}

#[test]
fn avro_user_schema_with_unions_nested_collections_and_recursion() {
    use apache_avro::types::Value as A;
    let u = |i: u32, v: A| A::Union(i, Box::new(v));
    let key = Key::Str("k1".to_string());
    let mut m = write_msg("ns", Some("set"), Some(key.clone()), user_bins()).from_xdr(LUT);
    m.generation = 12;
    m.record_ttl = 100;
    let enc = Encoder::avro(USER_SCHEMA, true).unwrap();
    let out = encode_frame(&enc, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap();
    let A::Record(f) = avro_read(USER_SCHEMA, &out) else {
        panic!("not a record")
    };
    let digest = sluice_codec::build::digest(Some("set"), &key).to_vec();
    assert_eq!(
        f[0],
        (
            "metadata".to_string(),
            A::Record(vec![
                ("msg".into(), A::Enum(0, "write".into())),
                ("set".into(), u(1, A::String("set".into()))),
                ("userKey".into(), u(2, A::String("k1".into()))),
                ("digest".into(), A::Fixed(20, digest)),
                ("gen".into(), A::Int(12)),
                ("lut".into(), A::TimestampMillis(LUT as i64)),
                ("exp".into(), A::Long((LUT / 1000 + 100) as i64)),
                // Not nullable: a write says false.
                ("durable".into(), A::Boolean(false)),
                ("note".into(), u(0, A::Null)),
            ])
        )
    );
    let node = |v: A| A::Record(vec![("v".into(), v)]);
    let want = [
        ("id", u(1, A::Int(42))),
        ("score", u(1, A::Float(2.5))),
        // The first branch that takes a string.
        ("desc", u(2, A::String("text".into()))),
        (
            "matrix",
            u(
                1,
                A::Array(vec![
                    A::Array(vec![u(0, A::Long(1)), u(1, A::String("a".into()))]),
                    A::Array(vec![]),
                    A::Array(vec![u(0, A::Long(-2))]),
                ]),
            ),
        ),
        (
            "lookup",
            u(
                1,
                A::Map(
                    [(
                        "x".to_string(),
                        A::Map(
                            [
                                ("p".to_string(), u(1, A::Double(1.5))),
                                ("9".to_string(), u(0, A::Null)),
                            ]
                            .into(),
                        ),
                    )]
                    .into(),
                ),
            ),
        ),
        (
            "tree",
            u(
                1,
                node(u(
                    1,
                    A::Array(vec![
                        node(u(0, A::Long(1))),
                        node(u(
                            1,
                            A::Array(vec![node(u(0, A::Long(2))), node(u(0, A::Long(3)))]),
                        )),
                    ]),
                )),
            ),
        ),
        ("absent", u(0, A::Null)),
    ];
    assert_eq!(f.len(), 1 + want.len());
    for ((name, value), (want_name, want_value)) in f[1..].iter().zip(want) {
        assert_eq!((name.as_str(), value), (want_name, &want_value));
    }

    // A durable delete in the same schema: no bins, exp 0 (not nullable).
    let d = with_digest(Message::delete_record("ns", None, None, true)).from_xdr(LUT);
    let out = encode_frame(&enc, &d.to_vec().unwrap(), &BinPolicy::all()).unwrap();
    let A::Record(f) = avro_read(USER_SCHEMA, &out) else {
        panic!("not a record")
    };
    let A::Record(md) = &f[0].1 else {
        panic!("metadata")
    };
    assert_eq!(md[0].1, A::Enum(1, "delete".into()));
    assert_eq!(md[1].1, u(0, A::Null));
    assert_eq!(md[6].1, A::Long(0));
    assert_eq!(md[7].1, A::Boolean(true));
    assert!(f[1..].iter().all(|(_, v)| *v == u(0, A::Null)), "{f:?}");
}

#[test]
fn avro_user_schema_mismatches_name_the_bin_and_leave_the_buffer() {
    let enc = Encoder::avro(USER_SCHEMA, true).unwrap();
    let mismatch = |bins: Vec<BinSpec>, policy: &BinPolicy| {
        let m = write_msg("ns", None, Some(Key::Int(1)), bins).from_xdr(LUT);
        let mut scratch = Vec::new();
        let frame = m.to_vec().unwrap();
        let rec = wire::parse(&frame, &mut scratch, 1 << 20).unwrap();
        let mut out = b"earlier record".to_vec();
        let err = enc.encode(&rec, policy, RECEIVED, &mut out).unwrap_err();
        assert_eq!(out, b"earlier record", "{err}");
        err
    };
    let text = |e: EncodeError| match e {
        EncodeError::AvroMismatch(m) => m,
        other => panic!("not a mismatch: {other}"),
    };
    // An int beyond i32 does not fit ["null", "int"].
    let m = text(mismatch(
        vec![BinSpec::new("id", ValueSpec::Int(1 << 40))],
        &BinPolicy::all(),
    ));
    assert!(m.starts_with("\"id\": a integer value does not fit"), "{m}");
    // A float deep inside a nested list fits neither long nor string.
    let bad_matrix = ValueSpec::List {
        order: ListOrder::Unordered,
        persist_index: false,
        items: vec![Elem::List {
            order: ListOrder::Unordered,
            items: vec![Elem::Int(1), Elem::Float(0.5)],
        }],
    };
    let m = text(mismatch(
        vec![BinSpec::new("matrix", bad_matrix)],
        &BinPolicy::all(),
    ));
    assert!(
        m.starts_with("\"matrix\": a float value does not fit"),
        "{m}"
    );
    // A map where the schema has an array.
    let as_map = ValueSpec::Map {
        order: MapOrder::Unordered,
        persist_index: false,
        entries: vec![(s("a"), Elem::Int(1))],
    };
    let m = text(mismatch(
        vec![BinSpec::new("tree", as_map)],
        &BinPolicy::all(),
    ));
    assert!(m.starts_with("\"tree\": a map value does not fit"), "{m}");
    // A bin with no field (and no `bins` map), after renaming.
    let m = text(mismatch(
        vec![BinSpec::new("id", ValueSpec::Int(1))],
        &BinPolicy::all().rename("id", "other"),
    ));
    assert!(m.contains("bin \"other\" has no field"), "{m}");
    // Two bins that both want field `id`.
    let m = text(mismatch(
        vec![
            BinSpec::new("id", ValueSpec::Int(1)),
            BinSpec::new("ID", ValueSpec::Int(2)),
        ],
        &BinPolicy::all().transform(NameTransform::Lowercase),
    ));
    assert!(m.contains("bin \"id\" has no field"), "{m}");
    // A non-string map key with stringify-map-keys off.
    let strict = Encoder::avro(USER_SCHEMA, false).unwrap();
    let m = write_msg("ns", None, Some(Key::Int(1)), user_bins()).from_xdr(LUT);
    let err = encode_frame(&strict, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::BadMapKey { ref bin, .. } if bin == "lookup"),
        "{err}"
    );
}

#[test]
fn avro_a_bin_named_bins_takes_the_bins_field() {
    use apache_avro::types::Value as A;
    let enc = Encoder::avro(avro::DEFAULT_SCHEMA, true).unwrap();
    let map = ValueSpec::Map {
        order: MapOrder::Unordered,
        persist_index: false,
        entries: vec![(s("x"), Elem::Int(1))],
    };
    // Alone, its map value fills the `bins` field (the map branch of the union).
    let m = write_msg(
        "ns",
        None,
        Some(Key::Int(1)),
        vec![BinSpec::new("bins", map.clone())],
    )
    .from_xdr(LUT);
    let out = encode_frame(&enc, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap();
    let A::Record(f) = avro_read(avro::DEFAULT_SCHEMA, &out) else {
        panic!("not a record")
    };
    assert_eq!(f[1].0, "bins");
    let A::Map(entries) = &f[1].1 else {
        panic!("bins: {:?}", f[1].1)
    };
    assert_eq!(entries.len(), 1);
    // The bin's own entries, each a value of the map's union.
    assert_eq!(entries["x"], A::Union(2, Box::new(A::Long(1))));
    // Then every other bin has nowhere to go.
    let m = write_msg(
        "ns",
        None,
        Some(Key::Int(1)),
        vec![
            BinSpec::new("other", ValueSpec::Int(1)),
            BinSpec::new("bins", map),
        ],
    )
    .from_xdr(LUT);
    let err = encode_frame(&enc, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::AvroMismatch(ref m) if m.contains("bin \"other\" has no field")),
        "{err}"
    );
}

#[test]
fn avro_unions_that_depend_on_the_value_ask_each_branch() {
    use apache_avro::types::Value as A;
    // `int` takes only what fits 32 bits, an enum only its symbols, a fixed
    // only its size: the next branch takes the rest.
    let schema = r#"{"type": "record", "name": "R", "fields": [
      {"name": "n", "type": ["null", "int", "long"]},
      {"name": "e", "type": [{"type": "enum", "name": "E", "symbols": ["a"]}, "string"]},
      {"name": "f", "type": [{"type": "fixed", "name": "F", "size": 2}, "bytes"]}
    ]}"#;
    let enc = Encoder::avro(schema, true).unwrap();
    let u = |i: u32, v: A| A::Union(i, Box::new(v));
    let read = |n: i64, e: &str, f: Vec<u8>| {
        let bins = vec![
            BinSpec::new("n", ValueSpec::Int(n)),
            BinSpec::new("e", ValueSpec::Str(e.to_string())),
            BinSpec::new("f", ValueSpec::Blob { ptype: 4, bytes: f }),
        ];
        let m = write_msg("ns", None, Some(Key::Int(1)), bins).from_xdr(LUT);
        let out = encode_frame(&enc, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap();
        let A::Record(f) = avro_read(schema, &out) else {
            panic!("not a record")
        };
        f.into_iter().map(|(_, v)| v).collect::<Vec<_>>()
    };
    assert_eq!(
        read(5, "a", vec![1, 2]),
        [
            u(1, A::Int(5)),
            u(0, A::Enum(0, "a".into())),
            u(0, A::Fixed(2, vec![1, 2]))
        ]
    );
    assert_eq!(
        read(1 << 40, "b", vec![1, 2, 3]),
        [
            u(2, A::Long(1 << 40)),
            u(1, A::String("b".into())),
            u(1, A::Bytes(vec![1, 2, 3]))
        ]
    );
}

#[test]
fn avro_a_record_that_wraps_itself_is_a_mismatch_not_a_crash() {
    // A value that fits `A` fits it again inside A's own union: the
    // first-branch rule would wrap it forever.
    let schema = r#"{"type": "record", "name": "R", "fields": [
      {"name": "x", "type": ["null", {"type": "record", "name": "A", "fields": [
        {"name": "v", "type": ["A", "long"]}
      ]}]}
    ]}"#;
    let enc = Encoder::avro(schema, true).unwrap();
    let m = write_msg(
        "ns",
        None,
        Some(Key::Int(1)),
        vec![BinSpec::new("x", ValueSpec::Int(7))],
    )
    .from_xdr(LUT);
    let err = encode_frame(&enc, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::AvroMismatch(ref m) if m.starts_with("\"x\": a integer value does not fit")),
        "{err}"
    );
    // A bin with nothing to wrap is still written: the field's null.
    let m = write_msg("ns", None, Some(Key::Int(1)), vec![]).from_xdr(LUT);
    let out = encode_frame(&enc, &m.to_vec().unwrap(), &BinPolicy::all()).unwrap();
    assert_eq!(out, [0]);
}
