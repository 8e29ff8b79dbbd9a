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
