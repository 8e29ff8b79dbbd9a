//! A schema and a frame, both arbitrary: the input is the schema text, a 0
//! byte, then the frame. Whatever schema `Encoder::avro` accepts is compiled
//! into a plan; encoding the frame's record (when it parses) and the
//! standard record with that plan may fail with an error, never panic, and
//! whatever it writes must read back with apache-avro's reader.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sluice_codec::build::Message;
use sluice_codec::encode::{BinPolicy, Encoder};
use sluice_codec::wire;

const MAX: usize = 1 << 20;

fn standard() -> &'static [u8] {
    static FRAME: OnceLock<Vec<u8>> = OnceLock::new();
    FRAME.get_or_init(|| Message::standard().to_vec().unwrap_or_default())
}

fn check(enc: &Encoder, schema: &apache_avro::Schema, frame: &[u8]) {
    let mut scratch = Vec::new();
    let Ok(rec) = wire::parse(frame, &mut scratch, MAX) else {
        return;
    };
    let mut out = Vec::new();
    if enc
        .encode(&rec, &BinPolicy::all(), 1_700_000_000_000, &mut out)
        .is_ok()
    {
        let mut r = &out[..];
        let read = apache_avro::reader::datum::GenericDatumReader::builder(schema)
            .build()
            .and_then(|reader| reader.read_value(&mut r));
        assert!(read.is_ok(), "written datum does not read back: {read:?}");
        assert!(r.is_empty(), "{} bytes after the datum", r.len());
    }
}

fuzz_target!(|data: &[u8]| {
    let (text, frame) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    for stringify in [true, false] {
        let Ok(enc) = Encoder::avro(text, stringify) else {
            return;
        };
        let Ok(schema) = apache_avro::Schema::parse_str(text) else {
            return;
        };
        check(&enc, &schema, frame);
        check(&enc, &schema, standard());
    }
});
