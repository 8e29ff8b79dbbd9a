//! The records `sluice gen` sends: one frame template per record kind
//! (write, delete, durable delete), built once, then copied and patched in
//! place per record (user key, digest, generation, LUT, the timestamp bin),
//! so that sending costs a memcpy and a few stores, not a frame build.

use ripemd::{Digest, Ripemd160};

const INFO1_XDR: u8 = 0x10;
const INFO2_WRITE: u8 = 0x01;
const INFO2_DELETE: u8 = 0x02;
const INFO2_DURABLE: u8 = 0x10;
const TTL_30_DAYS: u32 = 30 * 24 * 3600;
/// Particle type of a string user key (XDR-PROTOCOL.md §3).
const KEY_STRING: u8 = 3;

/// The bin types `--bin-type` can choose for a custom shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BinType {
    Int,
    Float,
    Str,
    Blob,
    Bool,
}

/// What a record looks like.
#[derive(Clone, Debug)]
pub struct ShapeSpec {
    /// The standard record of BENCHMARKS.md; `bins`, `bin_type`, `value_size` are ignored.
    pub standard: bool,
    pub bins: usize,
    pub bin_type: BinType,
    pub value_size: usize,
    pub namespace: String,
    pub set: String,
    /// The bin that carries the send time (Unix µs); empty: none.
    pub ts_bin: String,
}

/// The kind of change a record notifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Write,
    Delete,
    DurableDelete,
}

/// Length of every user key: "k" and 11 decimal digits, as the standard record's 12-byte key.
pub const KEY_LEN: usize = 12;
/// Keys are `k00000000000` … `k99999999999`.
pub const MAX_KEY_SPACE: u64 = 100_000_000_000;

/// One frame with the byte offsets of what changes per record.
#[derive(Clone, Debug)]
pub struct Template {
    frame: Vec<u8>,
    key_off: usize,
    digest_off: usize,
    gen_off: usize,
    lut_off: usize,
    ts_off: Option<usize>,
}

/// The three templates of a shape.
#[derive(Clone, Debug)]
pub struct Templates {
    pub write: Template,
    pub delete: Template,
    pub durable_delete: Template,
    set: String,
}

impl Templates {
    pub fn new(spec: &ShapeSpec) -> Self {
        let bins = if spec.standard {
            standard_bins()
        } else {
            custom_bins(spec)
        };
        let ts = (!spec.ts_bin.is_empty()).then_some(spec.ts_bin.as_str());
        Templates {
            write: Template::build(spec, INFO2_WRITE, &bins, ts),
            delete: Template::build(spec, INFO2_WRITE | INFO2_DELETE, &[], None),
            durable_delete: Template::build(
                spec,
                INFO2_WRITE | INFO2_DELETE | INFO2_DURABLE,
                &[],
                None,
            ),
            set: spec.set.clone(),
        }
    }

    pub fn get(&self, kind: Kind) -> &Template {
        match kind {
            Kind::Write => &self.write,
            Kind::Delete => &self.delete,
            Kind::DurableDelete => &self.durable_delete,
        }
    }

    /// RIPEMD-160 over set, key particle type and key bytes (XDR-PROTOCOL.md §3).
    pub fn digest(&self, key: u64) -> [u8; 20] {
        digest(&self.set, &key_bytes(key))
    }
}

/// The user key of key number `key`.
pub fn key_bytes(key: u64) -> [u8; KEY_LEN] {
    let mut k = [b'0'; KEY_LEN];
    k[0] = b'k';
    let mut n = key;
    for slot in k[1..].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    k
}

/// The digest Aerospike computes for a string key in `set`.
pub fn digest(set: &str, key: &[u8]) -> [u8; 20] {
    let mut h = Ripemd160::new();
    h.update(set.as_bytes());
    h.update([KEY_STRING]);
    h.update(key);
    h.finalize().into()
}

/// A bin value as wire bytes.
struct BinSpec {
    name: String,
    ptype: u8,
    value: Vec<u8>,
}

fn bin(name: &str, ptype: u8, value: Vec<u8>) -> BinSpec {
    BinSpec {
        name: name.to_string(),
        ptype,
        value,
    }
}

fn text(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| b'a' + ((i as u8).wrapping_add(seed)) % 26)
        .collect()
}

/// 4 integers, a float, a bool, a 16- and a 64-byte string, a list of 5
/// integers, a map of 3 string → integer (BENCHMARKS.md).
fn standard_bins() -> Vec<BinSpec> {
    let mut list = vec![0x95];
    list.extend([1u8, 2, 3, 4, 5]);
    let mut map = vec![0x83];
    for (k, v) in [(b"a", 1u8), (b"b", 2), (b"c", 3)] {
        map.extend([0xa2, KEY_STRING, k[0], v]);
    }
    vec![
        bin("i1", 1, 1i64.to_be_bytes().to_vec()),
        bin("i2", 1, 1_000i64.to_be_bytes().to_vec()),
        bin("i3", 1, (-42i64).to_be_bytes().to_vec()),
        bin("i4", 1, 1_700_000_000i64.to_be_bytes().to_vec()),
        bin("f", 2, 3.25f64.to_be_bytes().to_vec()),
        bin("b", 17, vec![1]),
        bin("s16", 3, text(16, 0)),
        bin("s64", 3, text(64, 7)),
        bin("l", 20, list),
        bin("m", 19, map),
    ]
}

fn custom_bins(spec: &ShapeSpec) -> Vec<BinSpec> {
    (0..spec.bins)
        .map(|i| {
            let name = format!("b{i}");
            match spec.bin_type {
                BinType::Int => bin(&name, 1, (i as i64).to_be_bytes().to_vec()),
                BinType::Float => bin(&name, 2, (i as f64 + 0.5).to_be_bytes().to_vec()),
                BinType::Bool => bin(&name, 17, vec![(i % 2) as u8]),
                BinType::Str => bin(&name, 3, text(spec.value_size, i as u8)),
                BinType::Blob => bin(
                    &name,
                    4,
                    (0..spec.value_size).map(|j| (j + i) as u8).collect(),
                ),
            }
        })
        .collect()
}

fn put_field(out: &mut Vec<u8>, ty: u8, data: &[u8]) -> usize {
    out.extend_from_slice(&(data.len() as u32 + 1).to_be_bytes());
    out.push(ty);
    let at = out.len();
    out.extend_from_slice(data);
    at
}

/// Appends a WRITE op; returns the offset of its value.
fn put_op(out: &mut Vec<u8>, name: &str, ptype: u8, value: &[u8]) -> usize {
    out.extend_from_slice(&((4 + name.len() + value.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[2, ptype, 0, name.len() as u8]);
    out.extend_from_slice(name.as_bytes());
    let at = out.len();
    out.extend_from_slice(value);
    at
}

impl Template {
    fn build(spec: &ShapeSpec, info2: u8, bins: &[BinSpec], ts: Option<&str>) -> Self {
        let mut f = vec![2, 3, 0, 0, 0, 0, 0, 0];
        let nfields: u16 = 5;
        let nops = (bins.len() + usize::from(ts.is_some())) as u16;
        f.extend_from_slice(&[22, INFO1_XDR, info2, 0, 0, 0]);
        let gen_off = f.len();
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&TTL_30_DAYS.to_be_bytes());
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&nfields.to_be_bytes());
        f.extend_from_slice(&nops.to_be_bytes());
        put_field(&mut f, 0, spec.namespace.as_bytes());
        put_field(&mut f, 1, spec.set.as_bytes());
        let mut key_field = vec![KEY_STRING];
        key_field.extend_from_slice(&key_bytes(0));
        let key_off = put_field(&mut f, 2, &key_field) + 1;
        let digest_off = put_field(&mut f, 4, &[0; 20]);
        let lut_off = put_field(&mut f, 14, &[0; 8]);
        for b in bins {
            put_op(&mut f, &b.name, b.ptype, &b.value);
        }
        let ts_off = ts.map(|name| put_op(&mut f, name, 1, &[0; 8]));
        let body = (f.len() - 8) as u64;
        f[2..8].copy_from_slice(&body.to_be_bytes()[2..]);
        Template {
            frame: f,
            key_off,
            digest_off,
            gen_off,
            lut_off,
            ts_off,
        }
    }

    /// Length of every frame made from this template.
    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Appends the frame of one record to `out`.
    pub fn render(
        &self,
        out: &mut Vec<u8>,
        key: u64,
        digest: &[u8; 20],
        gen: u32,
        lut_ms: u64,
        ts_us: u64,
    ) {
        let at = out.len();
        out.extend_from_slice(&self.frame);
        let f = &mut out[at..];
        f[self.key_off..self.key_off + KEY_LEN].copy_from_slice(&key_bytes(key));
        f[self.digest_off..self.digest_off + 20].copy_from_slice(digest);
        f[self.gen_off..self.gen_off + 4].copy_from_slice(&gen.to_be_bytes());
        f[self.lut_off..self.lut_off + 8].copy_from_slice(&lut_ms.to_be_bytes());
        if let Some(o) = self.ts_off {
            f[o..o + 8].copy_from_slice(&ts_us.to_be_bytes());
        }
    }
}

/// Type-3 frame → type-4 (compressed) frame: u64 inflated size, then zlib.
pub fn compress(frame: &[u8], out: &mut Vec<u8>) {
    use std::io::Write as _;
    let at = out.len();
    out.extend_from_slice(&[2, 4, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&(frame.len() as u64).to_be_bytes());
    let mut z = flate2::write::ZlibEncoder::new(&mut *out, flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(frame);
    let _ = z.finish();
    let body = (out.len() - at - 8) as u64;
    out[at + 2..at + 8].copy_from_slice(&body.to_be_bytes()[2..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ShapeSpec {
        ShapeSpec {
            standard: true,
            bins: 0,
            bin_type: BinType::Int,
            value_size: 0,
            namespace: "test".into(),
            set: "demo".into(),
            ts_bin: "sluice_ts".into(),
        }
    }

    #[test]
    fn digest_matches_the_official_client_vector() {
        // vectors/README.md: set "demo", key "k1" → b747f585…
        let d = digest("demo", b"k1");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b747f5854d0b33259928d0cfab7fad81d6abfbf6");
    }

    #[test]
    fn keys_are_twelve_bytes_zero_padded() {
        assert_eq!(&key_bytes(0), b"k00000000000");
        assert_eq!(&key_bytes(1234), b"k00000001234");
        assert_eq!(&key_bytes(MAX_KEY_SPACE - 1), b"k99999999999");
    }

    #[test]
    fn standard_record_is_about_300_bytes_and_patched_in_place() {
        let t = Templates::new(&spec());
        let len = t.write.len();
        // BENCHMARKS.md says "about 300": 342 bytes of record plus the 25-byte timestamp bin.
        assert_eq!(len, 367, "standard record is {len} bytes");
        let mut out = Vec::new();
        let d = t.digest(77);
        t.write.render(&mut out, 77, &d, 999, 1_700_000_000_123, 42);
        assert_eq!(out.len(), len);
        assert_eq!(
            u64::from_be_bytes(out[0..8].try_into().unwrap()) & 0xffff_ffff_ffff,
            (len - 8) as u64
        );
        assert_eq!(out[9], INFO1_XDR);
        assert_eq!(u32::from_be_bytes(out[14..18].try_into().unwrap()), 999);
        let hay = &out[..];
        let find = |needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
        assert!(find(b"k00000000077").is_some());
        assert!(find(&d).is_some());
        assert!(find(&1_700_000_000_123u64.to_be_bytes()).is_some());
        // the ts bin is the last op: its 8 value bytes end the frame
        assert_eq!(&out[len - 8..], &42u64.to_be_bytes());
        // deletes carry no ops
        assert_eq!(&t.delete.frame[28..30], &[0, 0]);
        assert_eq!(t.durable_delete.frame[10], 0x13);
    }
}
