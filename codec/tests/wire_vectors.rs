//! Every request official clients put on the wire (`shared/vectors/`) parses
//! to what its label says, and agrees field by field with the decoded
//! `.jsonl` beside it.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value as Json;
use sluice_codec::build::{self, Elem, Key, ValueSpec};
use sluice_codec::wire::{self, header::MsgHeader};
use sluice_codec::{Action, ListOrder, MapOrder, Record, UserKey, Value};

const K1_DIGEST: &str = "b747f5854d0b33259928d0cfab7fad81d6abfbf6";
const MAX: usize = wire::DEFAULT_MAX_BODY;

fn vectors_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    assert!(
        dir.is_dir(),
        "wire vectors not found at {} (the shared/vectors folder beside the checkout)",
        dir.display()
    );
    dir
}

fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// (label, frame bytes) of every line of a `.hex.txt` file.
fn frames(name: &str) -> Vec<(String, Vec<u8>)> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (label, h) = l.split_once(' ').unwrap();
            (label.to_owned(), hex(h.trim()))
        })
        .collect()
}

fn decoded(name: &str) -> HashMap<String, Json> {
    let text = std::fs::read_to_string(vectors_dir().join(name)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let j: Json = serde_json::from_str(l).unwrap();
            (j["label"].as_str().unwrap().to_owned(), j)
        })
        .collect()
}

fn s(x: &str) -> Elem {
    Elem::Str(x.to_owned())
}

fn bins(rec: &Record<'_>) -> Vec<(String, ValueSpec)> {
    rec.bins
        .iter()
        .map(|b| (b.name.to_owned(), ValueSpec::from_value(&b.value).unwrap()))
        .collect()
}

fn one_bin(rec: &Record<'_>, name: &str, v: ValueSpec) {
    assert_eq!(bins(rec), vec![(name.to_owned(), v)]);
}

/// What each label promises (vectors/README.md).
fn check_label(label: &str, rec: &Record<'_>) {
    let default_key = !label.contains("sendkey");
    if default_key {
        assert_eq!(rec.namespace, "test");
        if label != "put_no_set" {
            assert_eq!(rec.set, Some("demo"));
            assert_eq!(to_hex(&rec.digest), K1_DIGEST);
        }
    }
    let is_delete = label.starts_with("remove");
    match (is_delete, rec.action) {
        (false, Action::Write) => {}
        (true, Action::Delete { durable }) => assert_eq!(durable, label.contains("durable")),
        other => panic!("{label}: action {other:?}"),
    }
    assert_eq!(rec.is_xdr(), label.contains("xdr_flag"), "{label}: XDR bit");
    assert_eq!(rec.lut, None, "{label}: clients send no LUT");
    let ttl = if label == "put_ttl_300" { 300 } else { 0 };
    assert_eq!(rec.record_ttl, ttl, "{label}");
    match label {
        "put_int" => one_bin(rec, "i", ValueSpec::Int(42)),
        "put_int_negative" => one_bin(rec, "i", ValueSpec::Int(-2)),
        "put_float" => one_bin(rec, "f", ValueSpec::Float(1.5)),
        "put_string" => one_bin(rec, "s", ValueSpec::Str("hello".into())),
        "put_bytes" => one_bin(
            rec,
            "b",
            ValueSpec::Blob {
                ptype: 4,
                bytes: vec![0, 1, 0xfe, 0xff],
            },
        ),
        "put_bool" => assert_eq!(
            bins(rec),
            vec![
                ("t".into(), ValueSpec::Bool(true)),
                ("fl".into(), ValueSpec::Bool(false))
            ]
        ),
        "put_list" => one_bin(
            rec,
            "l",
            ValueSpec::List {
                order: ListOrder::Unordered,
                persist_index: false,
                items: vec![
                    Elem::Int(1),
                    s("two"),
                    Elem::Float(3.0),
                    Elem::Blob {
                        ptype: 4,
                        bytes: vec![4],
                    },
                ],
            },
        ),
        "put_map" | "put_map_unordered_hash" => {
            let (name, v) = bins(rec).pop().unwrap();
            assert_eq!(name, "m");
            let ValueSpec::Map {
                order: MapOrder::Unordered,
                persist_index: false,
                mut entries,
            } = v
            else {
                panic!("{label}: {v:?}")
            };
            entries.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
            let mut want = vec![(s("a"), Elem::Int(1)), (s("b"), s("x"))];
            if label == "put_map_unordered_hash" {
                want.truncate(1);
            }
            assert_eq!(entries, want);
        }
        "put_nested_map" => {
            let (name, v) = bins(rec).pop().unwrap();
            assert_eq!(name, "nm");
            let ValueSpec::Map { mut entries, .. } = v else {
                panic!("{v:?}")
            };
            entries.sort_by(|a, b| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)));
            let deep = Elem::Map {
                order: MapOrder::Unordered,
                entries: vec![(s("deep"), Elem::Bool(true))],
            };
            let inner = Elem::List {
                order: ListOrder::Unordered,
                items: vec![Elem::Int(1), deep],
            };
            let outer = Elem::Map {
                order: MapOrder::Unordered,
                entries: vec![(s("inner"), inner)],
            };
            assert_eq!(entries, vec![(s("n"), Elem::Nil), (s("outer"), outer)]);
        }
        "put_geojson" => {
            let b = rec.bins.iter().next().unwrap();
            assert_eq!(b.name, "g");
            let Value::Geo(g) = b.value else {
                panic!("{:?}", b.value)
            };
            assert_eq!((g.flags, g.cells.len()), (0, 0));
            let j: Json = serde_json::from_str(g.json).unwrap();
            assert_eq!(
                j,
                serde_json::json!({"type": "Point", "coordinates": [-122.0, 37.5]})
            );
        }
        "put_multi_bins" => assert_eq!(
            bins(rec),
            vec![
                ("i".into(), ValueSpec::Int(7)),
                ("s".into(), ValueSpec::Str("str".into())),
                ("f".into(), ValueSpec::Float(-0.25))
            ]
        ),
        "put_bin_delete_none" => one_bin(rec, "gone", ValueSpec::Null),
        "put_sendkey_string" => {
            assert_eq!(rec.user_key, Some(UserKey::Str("userkey")));
            assert_eq!(
                rec.digest,
                build::digest(Some("demo"), &Key::Str("userkey".into()))
            );
        }
        "put_sendkey_int" => {
            assert_eq!(rec.user_key, Some(UserKey::Int(123_456_789)));
            assert_eq!(
                rec.digest,
                build::digest(Some("demo"), &Key::Int(123_456_789))
            );
        }
        "put_sendkey_bytes" => {
            assert_eq!(rec.user_key, Some(UserKey::Blob(&[0xde, 0xad])));
            assert_eq!(
                rec.digest,
                build::digest(Some("demo"), &Key::Blob(vec![0xde, 0xad]))
            );
        }
        "remove_sendkey" => {
            assert_eq!(
                rec.digest,
                build::digest(Some("demo"), &Key::Str("userkey".into()))
            );
        }
        "remove_durable_sendkey_int" => {
            assert_eq!(rec.digest, build::digest(Some("demo"), &Key::Int(7)));
        }
        "put_no_set" => {
            assert_eq!(rec.set, None);
            // This vector's key is "k2" (not "k1" as the README implies):
            // RIPEMD-160(0x03 "k2") with no set bytes matches its digest field.
            assert_eq!(rec.digest, build::digest(None, &Key::Str("k2".into())));
            assert_ne!(to_hex(&rec.digest), K1_DIGEST);
        }
        "put_replace" => assert_eq!(rec.info3 & 0x20, 0x20),
        "put_create_only" => assert_eq!(rec.info2 & 0x20, 0x20),
        "put_gen_eq" => {
            assert_eq!(rec.generation, 5);
            assert_eq!(rec.info2 & 0x04, 0x04);
        }
        "put_compressed_large_string" => one_bin(rec, "s", ValueSpec::Str("x".repeat(1000))),
        "put_big_bin_count" => {
            let want: Vec<_> = (0..20)
                .map(|i| (format!("b{i:02}"), ValueSpec::Int(i)))
                .collect();
            assert_eq!(bins(rec), want);
        }
        "put_ttl_300" | "put_digest_only_key" | "put_commit_master" | "put_xdr_flag" => {
            assert_eq!(rec.bins.len(), 1)
        }
        "remove" | "remove_durable" | "remove_xdr_flag" => {}
        other => panic!("vector {other} has no expectation here: add one"),
    }
    if is_delete {
        assert!(rec.bins.is_empty(), "{label}: deletes carry no bins");
    }
    if !label.contains("sendkey") && label != "put_no_set" {
        // Only the sendkey vectors store a key; the k1 digest needs none.
        assert_eq!(rec.user_key, None, "{label}");
        assert_eq!(
            rec.digest,
            build::digest(Some("demo"), &Key::Str("k1".into()))
        );
    }
}

/// The bytes of a parsed value as they sit on the wire.
fn wire_bytes(v: &Value<'_>) -> Vec<u8> {
    match *v {
        Value::Null => vec![],
        Value::Int(i) => i.to_be_bytes().to_vec(),
        Value::Float(f) => f.to_be_bytes().to_vec(),
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Bool(b) => vec![u8::from(b)],
        Value::Blob { bytes, .. } | Value::Hll(bytes) => bytes.to_vec(),
        Value::List { items, .. } | Value::Map { items, .. } => items.raw.to_vec(),
        Value::Geo(g) => {
            let mut out = vec![g.flags];
            out.extend_from_slice(&((g.cells.len() / 8) as u16).to_be_bytes());
            out.extend_from_slice(g.cells);
            out.extend_from_slice(g.json.as_bytes());
            out
        }
    }
}

/// The record agrees with the independent decoding in the `.jsonl`.
fn check_jsonl(label: &str, rec: &Record<'_>, j: &Json) {
    let d = &j["decoded"];
    let h = MsgHeader::read(&rec.message[8..], 8).unwrap();
    let num = |k: &str| d[k].as_u64().unwrap_or_else(|| panic!("{label}: {k}"));
    assert_eq!(num("header_sz"), 22);
    assert_eq!(u64::from(rec.info1), num("info1"), "{label}");
    assert_eq!(u64::from(rec.info2), num("info2"), "{label}");
    assert_eq!(u64::from(rec.info3), num("info3"), "{label}");
    assert_eq!(u64::from(h.info4), num("info4"), "{label}");
    assert_eq!(u64::from(h.result), num("result_code"), "{label}");
    assert_eq!(u64::from(rec.generation), num("generation"), "{label}");
    assert_eq!(u64::from(rec.record_ttl), num("record_ttl"), "{label}");
    assert_eq!(
        u64::from(h.transaction_ttl),
        num("transaction_ttl"),
        "{label}"
    );
    assert_eq!(u64::from(h.n_fields), num("n_fields"), "{label}");
    assert_eq!(rec.bins.len() as u64, num("n_ops"), "{label}");
    assert_eq!(num("trailing_bytes"), 0);

    let mut saw_set = false;
    for f in d["fields"].as_array().unwrap() {
        let ty = f["type"].as_u64().unwrap();
        let fhex = f["hex"].as_str().unwrap();
        match ty {
            0 => assert_eq!(rec.namespace, f["text"].as_str().unwrap(), "{label}"),
            1 => {
                saw_set = true;
                let text = f["text"].as_str().unwrap();
                assert_eq!(rec.set, Some(text).filter(|t| !t.is_empty()), "{label}");
            }
            2 => {
                let key = rec
                    .user_key
                    .unwrap_or_else(|| panic!("{label}: key field but no key"));
                let mut b = vec![key.particle_type()];
                match key {
                    UserKey::Int(i) => b.extend_from_slice(&i.to_be_bytes()),
                    UserKey::Float(x) => b.extend_from_slice(&x.to_be_bytes()),
                    UserKey::Str(s) => b.extend_from_slice(s.as_bytes()),
                    UserKey::Blob(x) => b.extend_from_slice(x),
                }
                assert_eq!(to_hex(&b), fhex, "{label}");
            }
            4 => assert_eq!(to_hex(&rec.digest), fhex, "{label}"),
            other => panic!("{label}: unexpected field type {other}"),
        }
    }
    if !saw_set {
        assert_eq!(rec.set, None, "{label}");
    }

    let ops = d["ops"].as_array().unwrap();
    assert_eq!(ops.len(), rec.bins.len());
    for (op, bin) in ops.iter().zip(rec.bins.iter()) {
        assert_eq!(op["op"].as_u64(), Some(2), "{label}");
        assert_eq!(op["bin"].as_str(), Some(bin.name), "{label}");
        assert_eq!(
            op["ptype"].as_u64(),
            Some(u64::from(bin.value.particle_type())),
            "{label}"
        );
        assert_eq!(op["flags"].as_u64(), Some(0), "{label}");
        assert_eq!(bin.lut, None);
        let raw = wire_bytes(&bin.value);
        assert_eq!(
            op["value_len"].as_u64(),
            Some(raw.len() as u64),
            "{label} {}",
            bin.name
        );
        if let Some(vh) = op["value_hex"].as_str() {
            assert_eq!(to_hex(&raw), vh, "{label} {}", bin.name);
        }
        let v = &op["value"];
        match bin.value {
            Value::Int(i) => assert_eq!(v.as_i64(), Some(i), "{label}"),
            Value::Float(f) => assert_eq!(v.as_f64(), Some(f), "{label}"),
            Value::Str(s) => assert_eq!(v.as_str(), Some(s), "{label}"),
            Value::Bool(b) => assert_eq!(v.as_bool(), Some(b), "{label}"),
            Value::Blob { bytes, .. } => assert_eq!(v.as_str(), Some(to_hex(bytes).as_str())),
            Value::Null => assert_eq!(v.as_str(), Some("")),
            Value::Geo(g) => {
                assert_eq!(v["flags"].as_u64(), Some(u64::from(g.flags)));
                assert_eq!(v["ncells"].as_u64(), Some((g.cells.len() / 8) as u64));
                assert_eq!(v["json"].as_str(), Some(g.json));
            }
            // The jsonl renders collections as Python reprs; value_hex above
            // compared their bytes.
            Value::List { .. } | Value::Map { .. } | Value::Hll(_) => {}
        }
    }
}

fn check_file(stem: &str) -> usize {
    let frames = frames(&format!("{stem}.hex.txt"));
    let decoded = decoded(&format!("{stem}.jsonl"));
    assert!(frames.len() >= 25, "{stem}: only {} vectors", frames.len());
    for (label, frame) in &frames {
        // The frame is exactly one whole frame for the stream cutter too.
        let cut = wire::frame::cut(frame, MAX).unwrap().unwrap();
        assert_eq!(cut.bytes.len(), frame.len(), "{label}");
        let mut scratch = Vec::new();
        let rec = wire::parse(frame, &mut scratch, MAX).unwrap_or_else(|e| panic!("{label}: {e}"));
        check_label(label, &rec);
        let j = decoded
            .get(label)
            .unwrap_or_else(|| panic!("{label} missing from {stem}.jsonl"));
        assert_eq!(
            to_hex(frame),
            j["hex"].as_str().unwrap_or(&to_hex(frame)),
            "{label}"
        );
        assert_eq!(
            j["proto_type"].as_u64(),
            Some(u64::from(frame[1])),
            "{label}"
        );
        assert_eq!(
            rec.message[1], 3,
            "{label}: the record is always the type-3 message"
        );
        check_jsonl(label, &rec, j);
        // The ack echoes the request's generation; for type 3 it is readable
        // without parsing.
        if frame[1] == 3 {
            assert_eq!(wire::header::generation_of(frame), rec.generation);
        }
    }
    frames.len()
}

#[test]
fn python_vectors_decode_as_labelled() {
    assert_eq!(check_file("python-aerospike-19.3.0"), 28);
}

#[test]
fn rust_vectors_decode_as_labelled() {
    assert!(check_file("rust-aerospike-3.0.0") >= 25);
}

#[test]
fn compressed_vector_inflates_to_a_type3_frame() {
    let frames = frames("python-aerospike-19.3.0.hex.txt");
    let (_, frame) = frames
        .iter()
        .find(|(l, _)| l == "put_compressed_large_string")
        .unwrap();
    assert_eq!(frame[1], 4);
    let mut out = Vec::new();
    wire::inflate(frame, MAX, &mut out).unwrap();
    assert_eq!(out[..2], [2, 3]);
    assert_eq!(
        out.len() as u64,
        u64::from_be_bytes(frame[8..16].try_into().unwrap())
    );
    let rec = wire::parse_message(&out).unwrap();
    assert_eq!(rec.message, &out[..]);
    // A cap below the declared inflated size refuses it before inflating.
    let err = wire::inflate(frame, 100, &mut out).unwrap_err();
    assert_eq!(err.offset, 8);
    assert!(
        matches!(err.kind, sluice_codec::ErrorKind::TooLong { .. }),
        "{err}"
    );
}

#[test]
fn rebuilt_vectors_are_byte_identical() {
    // The builder writes what the clients wrote, for every type-3 vector
    // whose fields it can express (rust client: no empty set field).
    for (label, frame) in frames("rust-aerospike-3.0.0.hex.txt") {
        let rec = wire::parse_message(&frame).unwrap();
        let m = build::Message::from_record(&rec).unwrap();
        let mut out = Vec::new();
        m.write_to(&mut out).unwrap();
        // Collections are re-encoded from their elements: the same bytes
        // because the client, like the builder, picks the shortest forms.
        assert_eq!(to_hex(&out), to_hex(&frame), "{label}");
    }
}
