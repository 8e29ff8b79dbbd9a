//! Encoder tests over records built in memory: every particle type, deletes,
//! keys, missing set/LUT, TTL edge cases, collections and bin policies, in
//! every format. Outputs are parsed back by independent readers (serde_json,
//! rmpv, apache-avro) and compared to exact expected values.

use serde_json::json;

use super::testing::{encode, record};
use super::*;
use crate::record::{Action, Bin, Collection, Geo, ListOrder, MapOrder, UserKey, Value};

/// Aerospike msgpack elements, for building collection bodies.
enum M {
    Nil,
    Int(i64),
    F(f64),
    B(bool),
    S(&'static str),
    Blob(u8, &'static [u8]),
    Geo(&'static str),
    L(Vec<M>),
    OrdL(Vec<M>),
    Map(Vec<(M, M)>),
}

fn put(out: &mut Vec<u8>, m: &M) {
    use rmp::encode as e;
    match m {
        M::Nil => e::write_nil(out).unwrap(),
        M::Int(i) => drop(e::write_sint(out, *i).unwrap()),
        M::F(f) => e::write_f64(out, *f).unwrap(),
        M::B(b) => e::write_bool(out, *b).unwrap(),
        M::S(s) => {
            e::write_str_len(out, s.len() as u32 + 1).unwrap();
            out.push(3);
            out.extend_from_slice(s.as_bytes());
        }
        M::Blob(t, b) => {
            e::write_bin_len(out, b.len() as u32 + 1).unwrap();
            out.push(*t);
            out.extend_from_slice(b);
        }
        M::Geo(s) => {
            e::write_str_len(out, s.len() as u32 + 1).unwrap();
            out.push(23);
            out.extend_from_slice(s.as_bytes());
        }
        M::L(items) => {
            e::write_array_len(out, items.len() as u32).unwrap();
            items.iter().for_each(|i| put(out, i));
        }
        M::OrdL(items) => {
            e::write_array_len(out, items.len() as u32 + 1).unwrap();
            out.extend_from_slice(&[0xc7, 0x00, 0x01]);
            items.iter().for_each(|i| put(out, i));
        }
        M::Map(entries) => {
            e::write_map_len(out, entries.len() as u32).unwrap();
            for (k, v) in entries {
                put(out, k);
                put(out, v);
            }
        }
    }
}

/// A collection body (elements only, no header) and its element count.
fn body(items: &[M]) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    items.iter().for_each(|i| put(&mut out, i));
    (out, items.len() as u32)
}

fn pairs(entries: Vec<(M, M)>) -> (Vec<u8>, u32) {
    let mut out = Vec::new();
    for (k, v) in &entries {
        put(&mut out, k);
        put(&mut out, v);
    }
    (out, entries.len() as u32)
}

fn coll(b: &(Vec<u8>, u32)) -> Collection<'_> {
    Collection {
        raw: &b.0,
        body: &b.0,
        len: b.1,
    }
}

const GEO: &str = "{\"type\":\"Point\",\"coordinates\":[-122.5,37.25]}";

/// Owned storage for the collection bins of [`all_bins`].
struct Store {
    list: (Vec<u8>, u32),
    olist: (Vec<u8>, u32),
    map: (Vec<u8>, u32),
    kvmap: (Vec<u8>, u32),
}

fn store() -> Store {
    Store {
        list: body(&[
            M::Int(1),
            M::S("two"),
            M::F(3.0),
            M::Blob(4, &[4]),
            M::Nil,
            M::B(true),
        ]),
        olist: body(&[M::Int(1), M::Int(2)]),
        map: pairs(vec![
            (M::S("a"), M::Int(1)),
            (M::Int(7), M::S("x")),
            (
                M::Blob(4, &[0xde, 0xad]),
                M::L(vec![M::Int(-1), M::Map(vec![(M::S("deep"), M::B(true))])]),
            ),
            (M::S("g"), M::Geo(GEO)),
            (M::S("o"), M::OrdL(vec![M::Int(5)])),
        ]),
        kvmap: pairs(vec![(M::S("k"), M::F(-0.5))]),
    }
}

fn all_bins(s: &Store) -> Vec<Bin<'_>> {
    let b = |name, value| Bin {
        name,
        lut: None,
        value,
    };
    vec![
        b("i", Value::Int(-42)),
        b("f", Value::Float(1.5)),
        b("s", Value::Str("hé\"\n")),
        b("t", Value::Bool(true)),
        b(
            "b",
            Value::Blob {
                ptype: 4,
                bytes: &[0, 1, 0xfe, 0xff],
            },
        ),
        b(
            "py",
            Value::Blob {
                ptype: 9,
                bytes: &[0x80],
            },
        ),
        b("h", Value::Hll(&[1, 2, 3])),
        b("gone", Value::Null),
        b(
            "l",
            Value::List {
                order: ListOrder::Unordered,
                items: coll(&s.list),
            },
        ),
        b(
            "ol",
            Value::List {
                order: ListOrder::Ordered,
                items: coll(&s.olist),
            },
        ),
        b(
            "m",
            Value::Map {
                order: MapOrder::Key,
                items: coll(&s.map),
            },
        ),
        b(
            "kv",
            Value::Map {
                order: MapOrder::KeyValue,
                items: coll(&s.kvmap),
            },
        ),
        b(
            "g",
            Value::Geo(Geo {
                flags: 0,
                cells: &[0, 0, 0, 0, 0, 0, 0, 9],
                json: GEO,
            }),
        ),
        b("nan", Value::Float(f64::NAN)),
    ]
}

fn parse(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

const DIGEST_B64: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwc=";

fn expected_map_json() -> serde_json::Value {
    json!({"a": 1, "7": "x", "3q0=": [-1, {"deep": true}],
           "g": {"type": "Point", "coordinates": [-122.5, 37.25]}, "o": [5]})
}

#[test]
fn json_write_with_every_particle_type() {
    let st = store();
    let bins = all_bins(&st);
    let out = encode(&Encoder::json(), &record(), &bins, &BinPolicy::all()).unwrap();
    let geo = json!({"type": "Point", "coordinates": [-122.5, 37.25]});
    assert_eq!(
        parse(&out),
        json!({
            "msg": "write",
            "key": ["test", "demo", DIGEST_B64, null],
            "gen": 3,
            "exp": 1_698_586_936 + 100,
            "lut": 1_698_586_936_461u64,
            "bins": [
                {"name": "i", "type": "int", "value": -42},
                {"name": "f", "type": "float", "value": 1.5},
                {"name": "s", "type": "str", "value": "hé\"\n"},
                {"name": "t", "type": "bool", "value": true},
                {"name": "b", "type": "blob", "value": "AAH+/w=="},
                {"name": "py", "type": "blob", "value": "gA=="},
                {"name": "h", "type": "hll", "value": "AQID"},
                {"name": "gone", "type": "null", "value": null},
                {"name": "l", "type": "list", "value": [1, "two", 3.0, "BA==", null, true], "ordered": false},
                {"name": "ol", "type": "list", "value": [1, 2], "ordered": true},
                {"name": "m", "type": "map", "value": expected_map_json(), "order": "key"},
                {"name": "kv", "type": "map", "value": {"k": -0.5}, "order": "key-value"},
                {"name": "g", "type": "geojson", "value": geo},
                {"name": "nan", "type": "float", "value": null},
            ]
        })
    );
    // Key order is part of the format (FORMATS.md sample).
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("{\"msg\":\"write\",\"key\":[\"test\",\"demo\","),
        "{text}"
    );
    assert!(!text.contains('\n'), "one record is one line: {text}");
}

#[test]
fn json_deletes_durable_or_not() {
    let mut rec = record();
    rec.action = Action::Delete { durable: true };
    rec.user_key = Some(UserKey::Int(123));
    let out = encode(&Encoder::json(), &rec, &[], &BinPolicy::all()).unwrap();
    assert_eq!(
        parse(&out),
        json!({"msg": "delete", "key": ["test", "demo", DIGEST_B64, 123], "gen": 3,
               "lut": 1_698_586_936_461u64, "durable": true})
    );
    rec.action = Action::Delete { durable: false };
    let out = encode(&Encoder::json(), &rec, &[], &BinPolicy::all()).unwrap();
    assert_eq!(parse(&out)["durable"], json!(false));
    assert_eq!(parse(&out).get("exp"), None);
}

#[test]
fn json_keys_of_each_type() {
    let mut rec = record();
    for (key, expected) in [
        (UserKey::Int(-7), json!(-7)),
        (UserKey::Float(2.5), json!(2.5)),
        (UserKey::Str("k\"1"), json!("k\"1")),
        (UserKey::Blob(&[0xde, 0xad]), json!("3q0=")),
    ] {
        rec.user_key = Some(key);
        let out = encode(&Encoder::json(), &rec, &[], &BinPolicy::all()).unwrap();
        assert_eq!(parse(&out)["key"][3], expected);
    }
}

#[test]
fn json_no_set_no_lut_and_ttls() {
    let mut rec = record();
    rec.set = None;
    rec.lut = None;
    let out = encode(&Encoder::json(), &rec, &[], &BinPolicy::all()).unwrap();
    let v = parse(&out);
    assert_eq!(v["key"][1], json!(null));
    assert_eq!(v["lut"], json!(0));
    // received_ms = 1_700_000_000_123 stands in for the LUT.
    assert_eq!(v["exp"], json!(1_700_000_000u64 + 100));
    assert_eq!(v["bins"], json!([]));
    for ttl in [0, u32::MAX] {
        rec.record_ttl = ttl;
        let out = encode(&Encoder::json(), &rec, &[], &BinPolicy::all()).unwrap();
        assert_eq!(parse(&out)["exp"], json!(0));
    }
}

#[test]
fn json_bad_geojson_is_an_error_and_leaves_nothing_behind() {
    let bins = [Bin {
        name: "g",
        lut: None,
        value: Value::Geo(Geo {
            flags: 0,
            cells: &[],
            json: "{\"type\":\"Point\"",
        }),
    }];
    let mut out = b"prefix".to_vec();
    let err = Encoder::json()
        .encode_bins(
            &record(),
            bins.iter().copied(),
            &BinPolicy::all(),
            0,
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(err, EncodeError::BadGeoJson { ref bin, .. } if bin == "g"),
        "{err}"
    );
    assert_eq!(out, b"prefix");
}

#[test]
fn json_list_map_key_is_an_error_and_deep_nesting_is_bounded() {
    let m = pairs(vec![(M::L(vec![]), M::Int(1))]);
    let bins = [Bin {
        name: "m",
        lut: None,
        value: Value::Map {
            order: MapOrder::Unordered,
            items: coll(&m),
        },
    }];
    let err = encode(&Encoder::json(), &record(), &bins, &BinPolicy::all()).unwrap_err();
    assert_eq!(
        err,
        EncodeError::BadMapKey {
            bin: "m".into(),
            what: "list"
        }
    );

    let mut deep = M::Int(0);
    for _ in 0..(MAX_DEPTH + 2) {
        deep = M::L(vec![deep]);
    }
    let d = body(&[deep]);
    let bins = [Bin {
        name: "d",
        lut: None,
        value: Value::List {
            order: ListOrder::Unordered,
            items: coll(&d),
        },
    }];
    for enc in [Encoder::json(), Encoder::message_pack()] {
        let err = encode(&enc, &record(), &bins, &BinPolicy::all()).unwrap_err();
        assert_eq!(err, EncodeError::TooDeep { bin: "d".into() });
    }
}

#[test]
fn json_truncated_collection_is_an_error() {
    let (mut b, n) = body(&[M::S("abcdef")]);
    b.truncate(3);
    let c = (b, n);
    let bins = [Bin {
        name: "l",
        lut: None,
        value: Value::List {
            order: ListOrder::Unordered,
            items: coll(&c),
        },
    }];
    let err = encode(&Encoder::json(), &record(), &bins, &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::BadCollection { ref bin, .. } if bin == "l"),
        "{err}"
    );
}

#[test]
fn flat_json_write_and_delete() {
    let st = store();
    let bins = all_bins(&st);
    let mut rec = record();
    rec.user_key = Some(UserKey::Str("k1"));
    let out = encode(
        &Encoder::flat_json("metadata"),
        &rec,
        &bins[..4],
        &BinPolicy::all(),
    )
    .unwrap();
    assert_eq!(
        parse(&out),
        json!({"metadata": {"namespace": "test", "set": "demo", "userKey": "k1",
                            "digest": DIGEST_B64, "msg": "write", "gen": 3,
                            "lut": 1_698_586_936_461u64, "exp": 1_698_587_036u64},
               "i": -42, "f": 1.5, "s": "hé\"\n", "t": true})
    );
    let out = encode(
        &Encoder::flat_json("meta"),
        &record(),
        &bins[7..11],
        &BinPolicy::all(),
    )
    .unwrap();
    let v = parse(&out);
    assert_eq!(v["gone"], json!(null));
    assert_eq!(v["l"], json!([1, "two", 3.0, "BA==", null, true]));
    assert_eq!(v["m"], expected_map_json());
    assert_eq!(
        v["meta"].get("userKey"),
        None,
        "no stored key: userKey absent"
    );

    rec.action = Action::Delete { durable: false };
    let out = encode(
        &Encoder::flat_json("metadata"),
        &rec,
        &bins,
        &BinPolicy::all(),
    )
    .unwrap();
    assert_eq!(
        parse(&out),
        json!({"metadata": {"namespace": "test", "set": "demo", "userKey": "k1",
                            "digest": DIGEST_B64, "msg": "delete", "gen": 3,
                            "lut": 1_698_586_936_461u64}})
    );
    rec.action = Action::Delete { durable: true };
    let out = encode(
        &Encoder::flat_json("metadata"),
        &rec,
        &[],
        &BinPolicy::all(),
    )
    .unwrap();
    assert_eq!(parse(&out)["metadata"]["durable"], json!(true));
}

#[test]
fn flat_json_metadata_key_collision_and_duplicates() {
    let bins = [
        Bin {
            name: "meta",
            lut: None,
            value: Value::Int(1),
        },
        Bin {
            name: "META",
            lut: None,
            value: Value::Int(2),
        },
    ];
    let err = encode(
        &Encoder::flat_json("meta"),
        &record(),
        &bins,
        &BinPolicy::all(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        EncodeError::MetadataKeyCollision {
            bin: "meta".into(),
            key: "meta".into()
        }
    );
    // Renaming the bin away resolves it.
    let p = BinPolicy::all().rename("meta", "m2");
    let out = encode(&Encoder::flat_json("meta"), &record(), &bins, &p).unwrap();
    assert_eq!(parse(&out)["m2"], json!(1));
    assert_eq!(parse(&out)["META"], json!(2));
    // A transform that makes two names equal is an error in flat-json...
    let p = BinPolicy::all().transform(NameTransform::Lowercase);
    let err = encode(&Encoder::flat_json("metadata"), &record(), &bins, &p).unwrap_err();
    assert_eq!(
        err,
        EncodeError::DuplicateBinName {
            name: "meta".into()
        }
    );
    // ...and a collision with the metadata key after the transform too.
    let p = BinPolicy::all().transform(NameTransform::Uppercase);
    let err = encode(&Encoder::flat_json("META"), &record(), &bins[..1], &p).unwrap_err();
    assert_eq!(
        err,
        EncodeError::MetadataKeyCollision {
            bin: "META".into(),
            key: "META".into()
        }
    );
}

#[test]
fn bin_policies_in_json() {
    let st = store();
    let bins = all_bins(&st);
    let names = |p: &BinPolicy| -> Vec<serde_json::Value> {
        let out = encode(&Encoder::json(), &record(), &bins[..4], p).unwrap();
        parse(&out)["bins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].clone())
            .collect()
    };
    assert_eq!(
        names(&BinPolicy::all()),
        [json!("i"), json!("f"), json!("s"), json!("t")]
    );
    assert_eq!(names(&BinPolicy::none()), Vec::<serde_json::Value>::new());
    assert_eq!(
        names(&BinPolicy::include(["s", "i"])),
        [json!("i"), json!("s")]
    );
    assert_eq!(
        names(&BinPolicy::all().exclude(["f"])),
        [json!("i"), json!("s"), json!("t")]
    );
    let p = BinPolicy::all()
        .rename("t", "flag")
        .transform(NameTransform::Uppercase);
    assert_eq!(
        names(&p),
        [json!("I"), json!("F"), json!("S"), json!("flag")]
    );
}

fn mp(bytes: &[u8]) -> rmpv::Value {
    let mut r = bytes;
    let v = rmpv::decode::read_value(&mut r).unwrap();
    assert!(r.is_empty(), "trailing bytes after the record");
    v
}

#[test]
fn message_pack_write_with_every_particle_type() {
    use rmpv::Value as V;
    let st = store();
    let bins = all_bins(&st);
    let mut rec = record();
    rec.user_key = Some(UserKey::Blob(&[9, 9]));
    let out = encode(&Encoder::message_pack(), &rec, &bins, &BinPolicy::all()).unwrap();
    let s = |x: &str| V::from(x);
    let bin = |name: &str, pt: u8, flags: u8, v: V| {
        V::Array(vec![s(name), V::from(pt), V::from(flags), v])
    };
    let geo_ext = V::Ext(23, GEO.as_bytes().to_vec());
    let expected = V::Array(vec![
        V::from(1),
        V::from(1),
        V::Array(vec![
            V::Array(vec![
                s("test"),
                s("demo"),
                V::Binary(vec![7; 20]),
                V::Binary(vec![9, 9]),
            ]),
            V::from(3),
            V::from(1_698_587_036u64),
            V::from(1_698_586_936_461u64),
            V::Array(vec![
                bin("i", 1, 0, V::from(-42)),
                bin("f", 2, 0, V::F64(1.5)),
                bin("s", 3, 0, s("hé\"\n")),
                bin("t", 17, 0, V::Boolean(true)),
                bin("b", 4, 0, V::Binary(vec![0, 1, 0xfe, 0xff])),
                bin("py", 9, 0, V::Binary(vec![0x80])),
                bin("h", 18, 0, V::Binary(vec![1, 2, 3])),
                bin("gone", 0, 0, V::Nil),
                bin(
                    "l",
                    20,
                    0,
                    V::Array(vec![
                        V::from(1),
                        s("two"),
                        V::F64(3.0),
                        V::Ext(4, vec![4]),
                        V::Nil,
                        V::Boolean(true),
                    ]),
                ),
                bin("ol", 20, 1, V::Array(vec![V::from(1), V::from(2)])),
                bin(
                    "m",
                    19,
                    1,
                    V::Map(vec![
                        (s("a"), V::from(1)),
                        (V::from(7), s("x")),
                        (
                            V::Ext(4, vec![0xde, 0xad]),
                            V::Array(vec![
                                V::from(-1),
                                V::Map(vec![(s("deep"), V::Boolean(true))]),
                            ]),
                        ),
                        (s("g"), geo_ext),
                        (s("o"), V::Array(vec![V::from(5)])),
                    ]),
                ),
                bin("kv", 19, 3, V::Map(vec![(s("k"), V::F64(-0.5))])),
                bin("g", 23, 0, s(GEO)),
                bin("nan", 2, 0, V::F64(f64::NAN)),
            ]),
        ]),
    ]);
    // NaN != NaN: compare the NaN bin separately.
    let got = mp(&out);
    let (V::Array(g), V::Array(e)) = (&got, &expected) else {
        panic!("not arrays")
    };
    assert_eq!(g[..2], e[..2]);
    let (V::Array(gp), V::Array(ep)) = (&g[2], &e[2]) else {
        panic!("payload")
    };
    assert_eq!(gp[..4], ep[..4]);
    let (V::Array(gb), V::Array(eb)) = (&gp[4], &ep[4]) else {
        panic!("bins")
    };
    assert_eq!(gb.len(), eb.len());
    assert_eq!(gb[..13], eb[..13]);
    assert!(
        matches!(&gb[13], V::Array(x) if x[0] == s("nan") && matches!(x[3], V::F64(f) if f.is_nan()))
    );
}

#[test]
fn message_pack_deletes_and_keys() {
    use rmpv::Value as V;
    let mut rec = record();
    rec.set = None;
    rec.action = Action::Delete { durable: true };
    rec.user_key = Some(UserKey::Int(7));
    let out = encode(&Encoder::message_pack(), &rec, &[], &BinPolicy::all()).unwrap();
    let key = V::Array(vec![
        V::from("test"),
        V::Nil,
        V::Binary(vec![7; 20]),
        V::from(7),
    ]);
    assert_eq!(
        mp(&out),
        V::Array(vec![
            V::from(1),
            V::from(2),
            V::Array(vec![key.clone(), V::from(1)])
        ])
    );
    rec.action = Action::Delete { durable: false };
    let out = encode(&Encoder::message_pack(), &rec, &[], &BinPolicy::all()).unwrap();
    assert_eq!(
        mp(&out),
        V::Array(vec![
            V::from(1),
            V::from(2),
            V::Array(vec![key, V::from(0)])
        ])
    );
}

#[test]
fn message_pack_renamed_bins_are_counted_right() {
    use rmpv::Value as V;
    let bins = [
        Bin {
            name: "a",
            lut: None,
            value: Value::Int(1),
        },
        Bin {
            name: "b",
            lut: None,
            value: Value::Int(2),
        },
        Bin {
            name: "c",
            lut: None,
            value: Value::Int(3),
        },
    ];
    let p = BinPolicy::all()
        .exclude(["b"])
        .transform(NameTransform::Uppercase);
    let out = encode(&Encoder::message_pack(), &record(), &bins, &p).unwrap();
    let got = mp(&out);
    assert_eq!(
        got[2][4],
        V::Array(vec![
            V::Array(vec![V::from("A"), V::from(1), V::from(0), V::from(1)]),
            V::Array(vec![V::from("C"), V::from(1), V::from(0), V::from(3)]),
        ])
    );
}

#[test]
fn xdr_is_the_message_as_it_arrived() {
    let rec = record();
    let out = encode(&Encoder::xdr(), &rec, &[], &BinPolicy::all()).unwrap();
    assert_eq!(out, rec.message);
}

#[test]
fn names_and_content_types() {
    let avro = Encoder::avro(avro::DEFAULT_SCHEMA, true).unwrap();
    let all = [
        Encoder::json(),
        Encoder::flat_json("m"),
        Encoder::message_pack(),
        avro,
        Encoder::xdr(),
    ];
    let got: Vec<_> = all
        .iter()
        .map(|e| (e.name(), e.content_type(), e.batch_content_type()))
        .collect();
    assert_eq!(
        got,
        [
            ("json", "application/json", "application/x-ndjson"),
            ("flat-json", "application/json", "application/x-ndjson"),
            (
                "message-pack",
                "application/x-msgpack",
                "application/x-msgpack"
            ),
            ("avro", "application/avro", "application/avro"),
            (
                "xdr",
                "application/octet-stream",
                "application/octet-stream"
            ),
        ]
    );
    fn assert_traits<T: Clone + std::fmt::Debug + Send + Sync>() {}
    assert_traits::<Encoder>();
    assert_traits::<BinPolicy>();
}

fn batch(enc: &Encoder, n: u32) -> Vec<u8> {
    let bins = [Bin {
        name: "i",
        lut: None,
        value: Value::Int(1),
    }];
    let mut out = b"xx".to_vec();
    let start = enc.batch_begin(&mut out);
    for i in 0..n {
        if i > 0 {
            enc.batch_separator(&mut out);
        }
        let mut rec = record();
        rec.generation = i;
        enc.encode_bins(&rec, bins.iter().copied(), &BinPolicy::all(), 0, &mut out)
            .unwrap();
    }
    enc.batch_end(&mut out, start, n);
    out.split_off(2)
}

#[test]
fn batches_in_every_framing() {
    let nd = batch(&Encoder::json(), 3);
    let text = String::from_utf8(nd).unwrap();
    assert!(text.ends_with('\n'));
    let gens: Vec<_> = text
        .lines()
        .map(|l| parse(l.as_bytes())["gen"].clone())
        .collect();
    assert_eq!(gens, [json!(0), json!(1), json!(2)]);

    let arr = batch(
        &Encoder::flat_json("md").with_text_batch(TextBatch::JsonArray),
        2,
    );
    let v = parse(&arr);
    assert_eq!(v[1]["md"]["gen"], json!(1));
    assert_eq!(v.as_array().map(Vec::len), Some(2));
    assert_eq!(
        Encoder::json()
            .with_text_batch(TextBatch::JsonArray)
            .batch_content_type(),
        "application/json"
    );

    let m = batch(&Encoder::message_pack(), 3);
    let v = mp(&m);
    let items = v.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[2][2][1], rmpv::Value::from(2));

    let x = batch(&Encoder::xdr(), 2);
    assert_eq!(x, [record().message, record().message].concat());
}

// ---- avro ----

fn avro_read(enc_schema: &str, bytes: &[u8]) -> apache_avro::types::Value {
    let schema = apache_avro::Schema::parse_str(enc_schema).unwrap();
    let mut r = bytes;
    let v = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .unwrap()
        .read_value(&mut r)
        .unwrap();
    assert!(r.is_empty(), "trailing bytes after the datum");
    v
}

#[test]
fn avro_default_schema_round_trips() {
    use apache_avro::types::Value as A;
    let st = store();
    let bins = all_bins(&st);
    let mut rec = record();
    rec.user_key = Some(UserKey::Str("k1"));
    let enc = Encoder::avro(avro::DEFAULT_SCHEMA, true).unwrap();
    let out = encode(&enc, &rec, &bins, &BinPolicy::all()).unwrap();
    let v = avro_read(avro::DEFAULT_SCHEMA, &out);
    let A::Record(fields) = v else {
        panic!("not a record: {v:?}")
    };
    assert_eq!(fields[0].0, "metadata");
    assert_eq!(
        fields[0].1,
        A::Record(vec![
            ("msg".into(), A::String("write".into())),
            ("namespace".into(), A::String("test".into())),
            (
                "set".into(),
                A::Union(1, Box::new(A::String("demo".into())))
            ),
            (
                "userKey".into(),
                A::Union(3, Box::new(A::String("k1".into())))
            ),
            ("digest".into(), A::Bytes(vec![7; 20])),
            ("gen".into(), A::Long(3)),
            ("lut".into(), A::Long(1_698_586_936_461)),
            ("exp".into(), A::Union(1, Box::new(A::Long(1_698_587_036)))),
            ("durable".into(), A::Union(0, Box::new(A::Null))),
        ])
    );
    let A::Map(m) = &fields[1].1 else {
        panic!("bins not a map")
    };
    assert_eq!(m.len(), bins.len());
    assert_eq!(m["i"], A::Union(2, Box::new(A::Long(-42))));
    assert_eq!(m["f"], A::Union(3, Box::new(A::Double(1.5))));
    assert_eq!(m["s"], A::Union(4, Box::new(A::String("hé\"\n".into()))));
    assert_eq!(m["t"], A::Union(1, Box::new(A::Boolean(true))));
    assert_eq!(
        m["b"],
        A::Union(5, Box::new(A::Bytes(vec![0, 1, 0xfe, 0xff])))
    );
    assert_eq!(m["h"], A::Union(5, Box::new(A::Bytes(vec![1, 2, 3]))));
    assert_eq!(m["gone"], A::Union(0, Box::new(A::Null)));
    assert_eq!(m["g"], A::Union(4, Box::new(A::String(GEO.into()))));
    let el = |i: u32, v: A| A::Record(vec![("value".into(), A::Union(i, Box::new(v)))]);
    assert_eq!(
        m["ol"],
        A::Union(
            6,
            Box::new(A::Array(vec![el(2, A::Long(1)), el(2, A::Long(2))]))
        )
    );
    let A::Union(7, inner) = &m["m"] else {
        panic!("map bin: {:?}", m["m"])
    };
    let A::Map(mm) = &**inner else {
        panic!("map bin inner")
    };
    assert_eq!(mm["7"], el(4, A::String("x".into())));
    assert_eq!(
        mm["3q0="],
        el(
            6,
            A::Array(vec![
                el(2, A::Long(-1)),
                el(
                    7,
                    A::Map([("deep".to_string(), el(1, A::Boolean(true)))].into())
                )
            ])
        )
    );
}

#[test]
fn avro_delete_with_default_schema() {
    use apache_avro::types::Value as A;
    let mut rec = record();
    rec.action = Action::Delete { durable: true };
    let enc = Encoder::avro(avro::DEFAULT_SCHEMA, true).unwrap();
    let out = encode(&enc, &rec, &[], &BinPolicy::all()).unwrap();
    let A::Record(f) = avro_read(avro::DEFAULT_SCHEMA, &out) else {
        panic!()
    };
    let A::Record(md) = &f[0].1 else { panic!() };
    assert_eq!(md[0].1, A::String("delete".into()));
    assert_eq!(md[7].1, A::Union(0, Box::new(A::Null)));
    assert_eq!(md[8].1, A::Union(1, Box::new(A::Boolean(true))));
    assert_eq!(f[1].1, A::Map(Default::default()));
}

const USER_SCHEMA: &str = r#"{"type":"record","name":"R","fields":[
  {"name":"metadata","type":{"type":"record","name":"M","fields":[
     {"name":"msg","type":"string"},{"name":"gen","type":"int"},{"name":"lut","type":"long"}]}},
  {"name":"i","type":["null","long"]},
  {"name":"s","type":["null","string"]},
  {"name":"m","type":["null",{"type":"map","values":"long"}]}
]}"#;

#[test]
fn avro_user_schema_fields_per_bin() {
    use apache_avro::types::Value as A;
    let m = pairs(vec![
        (M::Int(5), M::Int(50)),
        (M::F(3.0), M::Int(30)),
        (M::B(true), M::Int(1)),
    ]);
    let bins = [
        Bin {
            name: "i",
            lut: None,
            value: Value::Int(9),
        },
        Bin {
            name: "m",
            lut: None,
            value: Value::Map {
                order: MapOrder::Unordered,
                items: coll(&m),
            },
        },
    ];
    let enc = Encoder::avro(USER_SCHEMA, true).unwrap();
    let out = encode(&enc, &record(), &bins, &BinPolicy::all()).unwrap();
    assert_eq!(
        avro_read(USER_SCHEMA, &out),
        A::Record(vec![
            (
                "metadata".into(),
                A::Record(vec![
                    ("msg".into(), A::String("write".into())),
                    ("gen".into(), A::Int(3)),
                    ("lut".into(), A::Long(1_698_586_936_461)),
                ])
            ),
            ("i".into(), A::Union(1, Box::new(A::Long(9)))),
            ("s".into(), A::Union(0, Box::new(A::Null))),
            (
                "m".into(),
                A::Union(
                    1,
                    Box::new(A::Map(
                        [
                            ("5".to_string(), A::Long(50)),
                            ("3.0".to_string(), A::Long(30)),
                            ("true".to_string(), A::Long(1))
                        ]
                        .into()
                    ))
                )
            ),
        ])
    );
    // Without stringify-map-keys the integer key cannot be written.
    let strict = Encoder::avro(USER_SCHEMA, false).unwrap();
    let err = encode(&strict, &record(), &bins, &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::BadMapKey { ref bin, .. } if bin == "m"),
        "{err}"
    );
}

#[test]
fn avro_schema_mismatches_are_per_record_errors() {
    let enc = Encoder::avro(USER_SCHEMA, true).unwrap();
    let wrong_type = [Bin {
        name: "i",
        lut: None,
        value: Value::Str("nine"),
    }];
    let err = encode(&enc, &record(), &wrong_type, &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::AvroMismatch(ref m) if m.contains("\"i\"")),
        "{err}"
    );
    let no_field = [Bin {
        name: "zz",
        lut: None,
        value: Value::Int(1),
    }];
    let err = encode(&enc, &record(), &no_field, &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::AvroMismatch(ref m) if m.contains("\"zz\"")),
        "{err}"
    );
    // Excluding the bin makes the record fit.
    assert!(encode(
        &enc,
        &record(),
        &no_field,
        &BinPolicy::all().exclude(["zz"])
    )
    .is_ok());

    let required = r#"{"type":"record","name":"R","fields":[{"name":"must","type":"long"}]}"#;
    let enc = Encoder::avro(required, true).unwrap();
    let err = encode(&enc, &record(), &[], &BinPolicy::all()).unwrap_err();
    assert!(
        matches!(err, EncodeError::AvroMismatch(ref m) if m.contains("must")),
        "{err}"
    );
}

#[test]
fn avro_bad_schemas_are_rejected_up_front() {
    assert!(matches!(
        Encoder::avro("{not json", true),
        Err(SchemaError::Parse(_))
    ));
    assert!(matches!(
        Encoder::avro("\"long\"", true),
        Err(SchemaError::NotARecord(_))
    ));
}

#[test]
fn avro_batch_is_datums_back_to_back() {
    let enc = Encoder::avro(avro::DEFAULT_SCHEMA, true).unwrap();
    let out = batch(&enc, 3);
    let schema = apache_avro::Schema::parse_str(avro::DEFAULT_SCHEMA).unwrap();
    let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
        .build()
        .unwrap();
    let mut r = &out[..];
    let mut gens = Vec::new();
    while !r.is_empty() {
        let apache_avro::types::Value::Record(f) = reader.read_value(&mut r).unwrap() else {
            panic!()
        };
        let apache_avro::types::Value::Record(md) = &f[0].1 else {
            panic!()
        };
        gens.push(md[5].1.clone());
    }
    assert_eq!(
        gens,
        (0..3)
            .map(apache_avro::types::Value::Long)
            .collect::<Vec<_>>()
    );
}

mod props {
    use proptest::prelude::*;

    use super::super::json::{write_base64, write_f64, write_str};

    proptest! {
        #[test]
        fn any_string_round_trips_through_json(s in any::<String>()) {
            let mut out = Vec::new();
            write_str(&mut out, &s);
            let back: String = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(back, s);
            prop_assert!(!out.contains(&b'\n'));
        }

        #[test]
        fn any_finite_float_round_trips_through_json(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
            let mut out = Vec::new();
            write_f64(&mut out, f);
            // std's parser is exact (serde_json's default one is not).
            let back: f64 = std::str::from_utf8(&out).unwrap().parse().unwrap();
            prop_assert_eq!(back, f);
            let _: serde_json::Value = serde_json::from_slice(&out).unwrap();
        }

        #[test]
        fn base64_matches_the_reference_engine(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            use base64::Engine as _;
            let mut out = b"x".to_vec();
            write_base64(&mut out, &b);
            let want = format!("x\"{}\"", base64::engine::general_purpose::STANDARD.encode(&b));
            prop_assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }
}

/// `json` reads the common particle types of a parsed record straight from
/// its ops; that text (and any error) is exactly what the decoded bins give.
#[test]
fn json_from_the_ops_matches_json_from_decoded_bins() {
    use crate::build::{BinSpec, Elem as E, Message, ValueSpec as V};
    let raw = |ptype, bytes: &[u8]| V::Raw {
        ptype,
        bytes: bytes.to_vec(),
    };
    let values = vec![
        V::Null,
        V::Int(0),
        V::Int(-17),
        V::Int(i64::MIN),
        V::Int(i64::MAX),
        raw(1, &[0xff, 0xfe, 0xfd, 0xfc]),
        raw(1, &[0xff, 0xfe]),
        raw(1, &[0xff]),
        V::Float(3.25),
        V::Float(f64::NAN),
        V::Float(-0.0),
        V::Bool(true),
        V::Bool(false),
        raw(17, &[7]),
        V::Str(String::new()),
        V::Str("sixteen-bytes-xx".into()),
        V::Str("seventeen-bytes-x".into()),
        V::Str("quote\"d".into()),
        V::Str("é".into()),
        V::Str("d".repeat(64)),
        V::Blob {
            ptype: 4,
            bytes: vec![],
        },
        V::Blob {
            ptype: 4,
            bytes: vec![0xff, 0, 1, 2, 3],
        },
        V::Blob {
            ptype: 9,
            bytes: (0..=255).collect(),
        },
        V::Hll(vec![1, 2, 3]),
        V::List {
            order: ListOrder::Ordered,
            persist_index: false,
            items: vec![E::Int(1), E::Str("x".into())],
        },
        V::List {
            order: ListOrder::Unordered,
            persist_index: false,
            items: vec![E::Int(1000), E::Str("x\ty".into()), E::Float(0.5)],
        },
        V::List {
            order: ListOrder::Unordered,
            persist_index: false,
            items: vec![],
        },
        V::List {
            order: ListOrder::Unordered,
            persist_index: false,
            items: vec![
                E::Int(1),
                E::List {
                    order: ListOrder::Unordered,
                    items: vec![E::Nil],
                },
            ],
        },
        V::Map {
            order: MapOrder::Unordered,
            persist_index: false,
            entries: vec![(E::Str("a".into()), E::Int(1)), (E::Int(2), E::Bool(true))],
        },
        V::Map {
            order: MapOrder::Unordered,
            persist_index: false,
            entries: vec![(
                E::Str("m".into()),
                E::Map {
                    order: MapOrder::Unordered,
                    entries: vec![],
                },
            )],
        },
        V::Map {
            order: MapOrder::Unordered,
            persist_index: false,
            entries: vec![(
                E::List {
                    order: ListOrder::Unordered,
                    items: vec![],
                },
                E::Nil,
            )],
        },
        V::Map {
            order: MapOrder::KeyValue,
            persist_index: true,
            entries: vec![(E::Str("a".into()), E::Float(0.5))],
        },
        V::Geo {
            flags: 0,
            cells: vec![1],
            json: "{\"type\":\"Point\",\"coordinates\":[1,2]}".into(),
        },
        V::Geo {
            flags: 0,
            cells: vec![],
            json: "{\"type\":".into(),
        },
    ];
    let policies = [
        BinPolicy::all(),
        BinPolicy::all().transform(NameTransform::Uppercase),
        BinPolicy::include(["b1", "b3"]),
    ];
    let mut compared = 0;
    for (i, v) in values.iter().enumerate() {
        // Each value alone, and after the ones before it (a long record).
        let alone = vec![BinSpec::new("b1", v.clone())];
        let all: Vec<_> = values[..=i]
            .iter()
            .enumerate()
            .map(|(j, v)| BinSpec::new(&format!("b{j}"), v.clone()))
            .collect();
        for bins in [alone, all] {
            let mut m = Message::write_record("test", Some("s"), None, bins);
            m.digest = Some([3; 20]);
            let frame = m.to_vec().unwrap();
            let rec = crate::wire::parse_message(&frame).unwrap();
            for p in &policies {
                let (mut wire, mut given) = (b"pfx".to_vec(), b"pfx".to_vec());
                let a = Encoder::json().encode(&rec, p, 5, &mut wire);
                let b = Encoder::json().encode_bins(&rec, rec.bins.iter(), p, 5, &mut given);
                assert_eq!(a, b, "{v:?}");
                assert_eq!(
                    String::from_utf8_lossy(&wire),
                    String::from_utf8_lossy(&given),
                    "{v:?}"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, values.len() * 2 * policies.len());
}

#[test]
fn each_format_has_one_encoder_of_every_format() {
    let names: Vec<_> = Encoder::each_format().iter().map(Encoder::name).collect();
    assert_eq!(
        names,
        ["json", "flat-json", "message-pack", "avro", "xdr"],
        "the tests and benches that walk every format rely on this list"
    );
}
