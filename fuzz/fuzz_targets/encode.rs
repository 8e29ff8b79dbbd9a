//! Arbitrary bytes parsed, then written in every outbound format: an
//! encoder may refuse a record (an error), never panic.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_codec::encode::{avro, BinPolicy, Encoder};
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
    let mut scratch = Vec::new();
    let Ok(rec) = wire::parse(data, &mut scratch, MAX) else {
        return;
    };
    let policy = BinPolicy::all();
    let mut out = Vec::new();
    for enc in encoders() {
        out.clear();
        let _ = enc.encode(&rec, &policy, 1_700_000_000_000, &mut out);
    }
});
