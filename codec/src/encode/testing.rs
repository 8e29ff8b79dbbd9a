//! Records for the encoders' unit tests, built directly (no frame needed).

use crate::record::{Action, Bin, Bins, Record};

use super::{BinPolicy, EncodeError, Encoder};

/// The standard test record: namespace `test`, set `demo`, a write with a
/// LUT, generation 3, TTL 100 s, no user key, no bins of its own.
pub(crate) fn record() -> Record<'static> {
    Record {
        message: b"\x02\x03\x00\x00\x00\x00\x00\x00",
        info1: 0x10,
        info2: 0x01,
        info3: 0,
        action: Action::Write,
        generation: 3,
        record_ttl: 100,
        namespace: "test",
        set: Some("demo"),
        user_key: None,
        digest: [7; 20],
        lut: Some(1_698_586_936_461),
        bins: Bins { ops: &[], count: 0 },
    }
}

/// Encodes `rec` with `bins` standing in for its ops.
pub(crate) fn encode(
    enc: &Encoder,
    rec: &Record<'_>,
    bins: &[Bin<'_>],
    policy: &BinPolicy,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    enc.encode_bins(
        rec,
        bins.iter().copied(),
        policy,
        1_700_000_000_123,
        &mut out,
    )?;
    Ok(out)
}
