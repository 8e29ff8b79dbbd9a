//! Arbitrary bytes through the stream cutter and the parser: nothing may
//! panic, and whatever parses must be walkable to the end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_codec::build::Message;
use sluice_codec::wire;

const MAX: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let mut rest = data;
    // Cut the input as a stream would be, parsing each whole frame.
    while let Ok(Some(frame)) = wire::frame::cut(rest, MAX) {
        rest = &rest[frame.bytes.len()..];
        if let Ok(rec) = wire::parse(frame.bytes, &mut scratch, MAX) {
            assert_eq!(rec.bins.iter().count(), rec.bins.len());
            // Every validated value converts to its owned form.
            assert!(Message::from_record(&rec).is_ok());
        }
    }
    // The parser on its own, without the cutter's checks in front; the
    // lazy parser then validating agrees with it.
    let full = wire::parse(data, &mut scratch, MAX).map(|r| format!("{r:?}"));
    let mut lazy_scratch = Vec::new();
    let lazy = wire::parse_lazy(data, &mut lazy_scratch, MAX)
        .and_then(|l| l.validate())
        .map(|r| format!("{r:?}"));
    assert_eq!(full, lazy);
    let _ = wire::msgpack::Reader::new(data).skip_values(64);
});
