//! Arbitrary bytes parsed, then written in every outbound format: an
//! encoder may refuse a record (an error), never panic; and the lazily
//! parsed record gives the same output and errors.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_codec::encode::{avro, BinPolicy, EncodeError, Encoder};
use sluice_codec::wire;

const MAX: usize = 1 << 20;

/// A small user schema: metadata plus two typed bins.
const SMALL_SCHEMA: &str = r#"{
  "type": "record", "name": "R",
  "fields": [
    {"name": "metadata", "type": {"type": "record", "name": "M", "fields": [
      {"name": "msg", "type": "string"},
      {"name": "namespace", "type": "string"},
      {"name": "digest", "type": "bytes"},
      {"name": "gen", "type": "long"}
    ]}},
    {"name": "i", "type": ["null", "long"], "default": null},
    {"name": "s", "type": ["null", "string"], "default": null}
  ]
}"#;

fn encoders() -> &'static Vec<Encoder> {
    static ENCODERS: OnceLock<Vec<Encoder>> = OnceLock::new();
    ENCODERS.get_or_init(|| {
        let mut e = vec![
            Encoder::json(),
            Encoder::flat_json("metadata"),
            Encoder::message_pack(),
            Encoder::xdr(),
        ];
        e.extend(Encoder::avro(avro::DEFAULT_SCHEMA, true).ok());
        e.extend(Encoder::avro(avro::DEFAULT_SCHEMA, false).ok());
        e.extend(Encoder::avro(SMALL_SCHEMA, true).ok());
        e
    })
}

fuzz_target!(|data: &[u8]| {
    // Parsed in full, and lazily as the session does (the ops left to the
    // encoder; json validates them as it writes them): the same output and
    // the same errors, a malformed op as `EncodeError::Malformed` holding
    // the parser's error.
    let (mut scratch, mut lazy_scratch) = (Vec::new(), Vec::new());
    let full = wire::parse(data, &mut scratch, MAX);
    let lazy = match (&full, wire::parse_lazy(data, &mut lazy_scratch, MAX)) {
        (_, Ok(lazy)) => lazy,
        (Err(a), Err(b)) => {
            assert_eq!(*a, b);
            return;
        }
        (Ok(_), Err(b)) => panic!("the lazy parse refused what the parser took: {b}"),
    };
    let policy = BinPolicy::all();
    let (mut out, mut lazy_out) = (Vec::new(), Vec::new());
    for enc in encoders() {
        out.clear();
        lazy_out.clear();
        let want = match &full {
            Ok(rec) => enc.encode(rec, &policy, 1_700_000_000_000, &mut out),
            Err(e) => Err(EncodeError::Malformed(e.clone())),
        };
        let got = enc.encode_lazy(&lazy, &policy, 1_700_000_000_000, &mut lazy_out);
        assert_eq!(got, want, "{}", enc.name());
        assert_eq!(lazy_out, out, "{}", enc.name());
    }
});
