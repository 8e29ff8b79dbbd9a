//! Round trip: the generator's frames, parsed and encoded by sluice-codec in
//! every format (one record and batches), read back by the sink.

use super::*;
use crate::gen::shape::{self, BinType, Kind, ShapeSpec, Templates};
use sluice_codec::encode::{BinPolicy, Encoder, TextBatch};

/// A frame with the key, digest, generation and kind it was made of.
type Sent = (Vec<u8>, u64, [u8; 20], u32, Kind);

fn frames() -> Vec<Sent> {
    let t = Templates::new(&ShapeSpec {
        standard: true,
        bins: 0,
        bin_type: BinType::Int,
        value_size: 0,
        namespace: "test".into(),
        set: "demo".into(),
        ts_bin: "sluice_ts".into(),
    });
    [
        (7u64, Kind::Write),
        (9, Kind::Delete),
        (7, Kind::Write),
        (11, Kind::DurableDelete),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (key, kind))| {
        let mut f = Vec::new();
        let d = t.digest(key);
        t.get(kind).render(
            &mut f,
            key,
            &d,
            10 + i as u32,
            1_700_000_000_000 + i as u64,
            1_700_000_000_000_000 + i as u64,
        );
        (f, key, d, 10 + i as u32, kind)
    })
    .collect()
}

fn check(recs: &[Rec], want: &[Sent], with_meta: bool) {
    assert_eq!(recs.len(), want.len());
    for (i, (r, (_, key, d, gen, kind))) in recs.iter().zip(want).enumerate() {
        assert_eq!(&r.digest, d, "record {i}");
        let deleted = *kind != Kind::Write;
        assert_eq!(r.msg, if deleted { "delete" } else { "write" });
        if with_meta {
            assert_eq!(
                r.key,
                Value::String(String::from_utf8(shape::key_bytes(*key).to_vec()).unwrap())
            );
        }
        if !deleted {
            assert_eq!(r.gen, u64::from(*gen));
            assert_eq!(r.lut, 1_700_000_000_000 + i as u64);
            assert_eq!(r.ts("sluice_ts"), Some(1_700_000_000_000_000 + i as u64));
            assert_eq!(r.bins["s16"], "abcdefghijklmnop");
            assert_eq!(r.bins["i3"], -42);
        }
    }
}

fn decoder(format: Format) -> Decoder {
    let avro = apache_avro::Schema::parse_str(sluice_codec::encode::avro::DEFAULT_SCHEMA).unwrap();
    Decoder {
        format,
        metadata_key: "metadata".into(),
        avro: Some(avro),
    }
}

fn encode_all(enc: &Encoder, batch: bool) -> (Vec<u8>, &'static str, Vec<Sent>) {
    let fr = frames();
    // Without a batch, one body holds only the first record.
    let used = if batch { fr.clone() } else { fr[..1].to_vec() };
    let mut out = Vec::new();
    let start = batch.then(|| enc.batch_begin(&mut out));
    for (i, (f, ..)) in used.iter().enumerate() {
        if batch && i > 0 {
            enc.batch_separator(&mut out);
        }
        let rec = sluice_codec::wire::parse_message(f).unwrap();
        enc.encode(&rec, &BinPolicy::all(), 0, &mut out).unwrap();
    }
    if let Some(s) = start {
        enc.batch_end(&mut out, s, used.len() as u32);
    }
    let ct = if batch {
        enc.batch_content_type()
    } else {
        enc.content_type()
    };
    (out, ct, used)
}

#[test]
fn every_format_single_and_batch_reads_back() {
    let encoders = [
        Encoder::json(),
        Encoder::json().with_text_batch(TextBatch::JsonArray),
        Encoder::flat_json("metadata"),
        Encoder::message_pack(),
        Encoder::avro(sluice_codec::encode::avro::DEFAULT_SCHEMA, true).unwrap(),
        Encoder::xdr(),
    ];
    for enc in &encoders {
        for batch in [false, true] {
            let (body, ct, want) = encode_all(enc, batch);
            let recs = decoder(Format::Auto)
                .decode(Some(ct), &body)
                .unwrap_or_else(|e| panic!("{} batch={batch}: {e}", enc.name()));
            // json's key array carries the user key; every format does here since the frames store it.
            check(&recs, &want, true);
        }
    }
}

#[test]
fn broken_bodies_are_errors_not_records() {
    let d = decoder(Format::Auto);
    assert!(matches!(
        d.decode(Some("application/json"), b"{\"msg\":"),
        Err(DecodeError::Json(_))
    ));
    assert!(matches!(
        d.decode(Some("application/json"), b"{\"msg\":\"write\"}"),
        Err(DecodeError::Shape { index: 0, .. })
    ));
    assert!(matches!(
        d.decode(Some("application/x-msgpack"), &[0x93, 1]),
        Err(DecodeError::Msgpack(_))
    ));
    assert!(matches!(
        d.decode(
            Some("application/octet-stream"),
            &[2, 3, 0, 0, 0, 0, 0, 50, 22]
        ),
        Err(DecodeError::Xdr(_))
    ));
    assert!(matches!(
        d.decode(Some("application/avro"), &[0xff]),
        Err(DecodeError::Avro(_))
    ));
    let (body, _, _) = encode_all(&Encoder::xdr(), true);
    // A batch cut in the middle of its last frame is refused as a whole.
    assert!(d
        .decode(Some("application/octet-stream"), &body[..body.len() - 3])
        .is_err());
}

/// The counting scan and the full decoder on one body: the same verdict,
/// and on success the same digests, kinds and timestamps.
fn same_verdict(d: &Decoder, ct: &str, body: &[u8]) -> Result<Vec<Brief>, String> {
    let full = d.decode(Some(ct), body).map(|recs| {
        recs.iter()
            .map(|r| r.brief("sluice_ts"))
            .collect::<Vec<_>>()
    });
    let mut out = vec![];
    let fast = d.brief(Some(ct), body, "sluice_ts", &mut out).map(|()| out);
    match (&full, &fast) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", String::from_utf8_lossy(body)),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "full {full:?} vs scan {fast:?} on {}",
            String::from_utf8_lossy(body)
        ),
    }
    fast.map_err(|e| e.to_string())
}

#[test]
fn the_scan_reads_what_the_encoders_write_as_the_full_decoder_does() {
    let encoders = [
        Encoder::json(),
        Encoder::json().with_text_batch(TextBatch::JsonArray),
        Encoder::flat_json("metadata"),
        Encoder::flat_json("metadata").with_text_batch(TextBatch::JsonArray),
    ];
    for enc in &encoders {
        for batch in [false, true] {
            let (body, ct, want) = encode_all(enc, batch);
            let briefs = same_verdict(&decoder(Format::Auto), ct, &body)
                .unwrap_or_else(|e| panic!("{} batch={batch}: {e}", enc.name()));
            assert_eq!(briefs.len(), want.len());
            for (i, (b, (_, _, d, _, kind))) in briefs.iter().zip(&want).enumerate() {
                assert_eq!(&b.digest, d, "{} record {i}", enc.name());
                assert_eq!(b.delete, *kind != Kind::Write, "{} record {i}", enc.name());
                let ts = (*kind == Kind::Write).then_some(1_700_000_000_000_000 + i as u64);
                assert_eq!(b.ts, ts, "{} record {i}", enc.name());
            }
        }
    }
}

#[test]
fn the_scan_refuses_and_accepts_what_the_full_decoder_does() {
    const D: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQE=";
    let rec = |extra: &str| {
        format!(r#"{{"msg":"write","key":["test","demo","{D}","k"],"gen":1,"lut":5{extra}}}"#)
    };
    let flat = |extra: &str| {
        format!(r#"{{"metadata":{{"digest":"{D}","msg":"delete","gen":2,"lut":6}}{extra}}}"#)
    };
    let ok: Vec<String> = vec![
        rec(""),
        rec(r#","bins":[{"name":"sluice_ts","value":77}]"#),
        // The last of two bins of one name counts, as in a map.
        rec(r#","bins":[{"name":"sluice_ts","value":1},{"value":2,"name":"sluice_ts"}]"#),
        rec(r#","bins":[{"name":"sluice_ts","value":1.5}]"#),
        rec(r#","bins":[{"name":"sluice_ts","value":-3}]"#),
        rec(r#","bins":"not a list""#),
        rec(r#","msg":"delete""#),
        rec(r#","metadata":[1]"#),
        format!("[{},{}]", rec(""), flat("")),
        format!("{}\n\n  \n{}\n", rec(""), flat(r#","sluice_ts":9"#)),
        flat(r#","sluice_ts":9,"key":3,"bins":{"a":1},"msg":[]"#),
        r#"{"m\u0073g":"write","key":["t","d","AQEBAQEBAQEBAQEBAQEBAQEBAQE=",null],"gen":0,"lut":0}"#
            .into(),
        "[]".into(),
        "  [ ]  ".into(),
    ];
    for body in &ok {
        same_verdict(&decoder(Format::Auto), "application/json", body.as_bytes())
            .unwrap_or_else(|e| panic!("{body}: {e}"));
    }
    let two_ts = same_verdict(&decoder(Format::Auto), "application/json", ok[2].as_bytes());
    assert_eq!(two_ts.unwrap()[0].ts, Some(2));
    let bad: Vec<String> = vec![
        String::new(),
        "\n \n".into(),
        "{".into(),
        rec("").replace(r#""msg":"write","#, ""),
        rec("").replace(r#""gen":1"#, r#""gen":-1"#),
        rec("").replace(r#""lut":5"#, r#""lut":"5""#),
        rec("").replace(r#","k"]"#, "]"),
        rec("").replace(D, "AQEB"),
        rec("").replace(D, "not base64!"),
        rec(r#","bins":[{"value":1}]"#),
        rec(r#","bins":[7]"#),
        flat("").replace(r#""gen":2,"#, ""),
        flat("").replace(D, "AQEB"),
        format!("[{}, 3]", rec("")),
        format!("[{}] x", rec("")),
        format!("{} {}", rec(""), rec("")),
        format!("{}\n{{", rec("")),
        "[1,2".into(),
        "\"just a string\"".into(),
    ];
    for body in &bad {
        assert!(
            same_verdict(&decoder(Format::Auto), "application/json", body.as_bytes()).is_err(),
            "accepted: {body}"
        );
    }
    // Not UTF-8.
    assert!(same_verdict(
        &decoder(Format::Auto),
        "application/json",
        b"{\"msg\":\"\xff\"}"
    )
    .is_err());
}

#[test]
fn the_other_formats_brief_through_the_full_decoder() {
    for enc in [
        Encoder::message_pack(),
        Encoder::avro(sluice_codec::encode::avro::DEFAULT_SCHEMA, true).unwrap(),
        Encoder::xdr(),
    ] {
        let (body, ct, want) = encode_all(&enc, true);
        let briefs = same_verdict(&decoder(Format::Auto), ct, &body).unwrap();
        assert_eq!(briefs.len(), want.len(), "{}", enc.name());
        assert_eq!(briefs[0].digest, want[0].2);
    }
}

#[test]
fn the_scan_reads_escapes_and_nesting_as_serde_json_does() {
    let d = decoder(Format::Auto);
    let rec = |value: &str| {
        format!(
            r#"{{"m\u0073g":"write","key":["t","d","AQEBAQEBAQEBAQEBAQEBAQEBAQE=",null],"gen":0,"lut":0,"bins":[{{"name":"x","value":{value}}},{{"name":"sluice_\u0074s","value":3}}]}}"#
        )
    };
    // An escaped key, a surrogate pair, every short escape: read.
    let ok = rec(r#""\ud83d\ude00 \" \\ \/ \b \f \n \r \t \u00e9""#);
    let b = same_verdict(&d, "application/json", ok.as_bytes()).unwrap();
    assert_eq!(b[0].ts, Some(3));
    // A lone surrogate, even in a value the counts skip: refused, as the
    // full decoder (a Value holds only valid strings) refuses it.
    for bad in [
        r#""\ud800""#,
        r#""\udc00 x""#,
        r#""\ud800\u0041""#,
        r#""\x""#,
        r#""\u12""#,
    ] {
        assert!(
            same_verdict(&d, "application/json", rec(bad).as_bytes()).is_err(),
            "{bad}"
        );
    }
    // Nesting: serde_json's limit, in a value the counts skip.
    let nested = |n: usize| rec(&format!("{}{}", "[".repeat(n), "]".repeat(n)));
    assert!(same_verdict(&d, "application/json", nested(120).as_bytes()).is_ok());
    assert!(same_verdict(&d, "application/json", nested(130).as_bytes()).is_err());
    // Numbers serde_json refuses (out of f64's range) or reads as floats.
    assert!(same_verdict(&d, "application/json", rec("1e400").as_bytes()).is_err());
    for v in ["1e-400", "-0", "18446744073709551616", "0.5", "-12"] {
        same_verdict(&d, "application/json", rec(v).as_bytes()).unwrap();
    }
}

/// Deterministic mutations of a record (bytes replaced, inserted, removed
/// from a JSON-ish alphabet) and short random texts: the scan calls a body
/// broken JSON exactly when serde_json does.
#[test]
fn the_scan_agrees_with_serde_json_on_mutated_bodies() {
    let (body, _, _) = encode_all(&Encoder::json(), false);
    let names = crate::sink::scan::Names {
        metadata_key: "metadata",
        ts_bin: "sluice_ts",
    };
    let alphabet = b"{}[]\",:\\u0123456789abcdefABCDEF-+.eE tnrfl\xc3\xa9";
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut checked = 0;
    for i in 0..20_000 {
        let mut b = if i % 2 == 0 {
            body.clone()
        } else {
            let prefixes: [&[u8]; 4] = [b"[1,", b"{\"a\":", b"[\"", b"["];
            let mut v = prefixes[(rnd() % 4) as usize].to_vec();
            for _ in 0..rnd() % 14 {
                v.push(alphabet[(rnd() % alphabet.len() as u64) as usize]);
            }
            v.push(b']');
            v
        };
        for _ in 0..if i % 2 == 0 { 1 + rnd() % 3 } else { 0 } {
            let at = (rnd() % b.len() as u64) as usize;
            let c = alphabet[(rnd() % alphabet.len() as u64) as usize];
            match rnd() % 3 {
                0 => b[at] = c,
                1 => b.insert(at, c),
                _ => {
                    b.remove(at);
                }
            }
        }
        if b.contains(&b'\n') || b.trim_ascii().is_empty() {
            continue; // NDJSON splits lines; serde_json reads one value
        }
        let serde_ok = serde_json::from_slice::<Value>(&b).is_ok();
        let scan = crate::sink::scan::json(names, &b, &mut vec![]);
        let scan_ok = !matches!(scan, Err(crate::sink::scan::ScanError::Json(_)));
        assert_eq!(
            serde_ok,
            scan_ok,
            "{scan:?} on {}",
            String::from_utf8_lossy(&b)
        );
        checked += 1;
    }
    assert!(checked > 15_000, "{checked}");
}
