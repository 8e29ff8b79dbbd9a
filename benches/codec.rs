//! Codec benchmarks (BENCHMARKS.md figure 1): the standard record, parsed
//! alone, and parsed + encoded in each outbound format, on one core.
//!
//! Criterion reports time per record (records/s = 1 / time) and bytes/s of
//! wire input. For a figure that does not move with machine noise, count
//! instructions: with `CODEC_ITERS=N` set, this binary skips criterion and
//! runs parse + JSON N times, so that
//!
//! ```text
//! CODEC_ITERS=0      valgrind --tool=callgrind --callgrind-out-file=/dev/null <bench binary>
//! CODEC_ITERS=100000 valgrind --tool=callgrind --callgrind-out-file=/dev/null <bench binary>
//! ```
//!
//! gives instructions per record as (I refs of the second − first) / N.
//! `CODEC_FORMAT` picks the format of that loop (default `json`; `parse`
//! for parse alone).

use std::hint::black_box;

use criterion::{criterion_group, Criterion, Throughput};
use sluice_codec::build::{BinSpec, Elem, Key, Message, ValueSpec};
use sluice_codec::encode::{avro, BinPolicy, Encoder};
use sluice_codec::record::{ListOrder, MapOrder};
use sluice_codec::wire;

const RECEIVED_MS: u64 = 1_700_000_000_000;

/// The standard record of BENCHMARKS.md: namespace `test`, set `demo`, a
/// 12-byte string key, XDR bit, LUT, TTL 30 days, 10 bins (4 integers, a
/// float, a bool, 16- and 64-byte strings, a list of 5 integers, a map of 3
/// string → integer).
fn standard_frame() -> Vec<u8> {
    let bin = |name: &str, value| BinSpec {
        name: name.to_string(),
        lut: None,
        value,
    };
    let msg = Message {
        info1: 0x10,
        info2: 0x01,
        info3: 0,
        generation: 517,
        record_ttl: 30 * 24 * 3600,
        transaction_ttl: 1000,
        namespace: "test".to_string(),
        set: Some("demo".to_string()),
        user_key: Some(Key::Str("user-0000042".to_string())),
        digest: None,
        lut: Some(1_698_586_936_461),
        extra_fields: Vec::new(),
        bins: vec![
            bin("id", ValueSpec::Int(42)),
            bin("count", ValueSpec::Int(-17)),
            bin("ts", ValueSpec::Int(1_698_586_936)),
            bin("big", ValueSpec::Int(i64::MAX / 3)),
            bin("score", ValueSpec::Float(3.25)),
            bin("active", ValueSpec::Bool(true)),
            bin("name", ValueSpec::Str("sixteen-bytes-xx".to_string())),
            bin("desc", ValueSpec::Str("d".repeat(64))),
            bin(
                "nums",
                ValueSpec::List {
                    order: ListOrder::Unordered,
                    persist_index: false,
                    items: (1..=5).map(|i| Elem::Int(i * 1000)).collect(),
                },
            ),
            bin(
                "attrs",
                ValueSpec::Map {
                    order: MapOrder::Unordered,
                    persist_index: false,
                    entries: ["a", "bb", "ccc"]
                        .iter()
                        .zip(1..)
                        .map(|(k, v)| (Elem::Str((*k).to_string()), Elem::Int(v)))
                        .collect(),
                },
            ),
        ],
    };
    msg.to_vec().expect("the standard record builds")
}

fn encoders() -> Vec<Encoder> {
    vec![
        Encoder::json(),
        Encoder::flat_json("metadata"),
        Encoder::message_pack(),
        Encoder::avro(avro::DEFAULT_SCHEMA, true).expect("the default schema parses"),
        Encoder::xdr(),
    ]
}

fn parse_and_encode(frame: &[u8], enc: Option<&Encoder>, policy: &BinPolicy, out: &mut Vec<u8>) {
    let rec = wire::parse_message(frame).expect("the standard record parses");
    if let Some(enc) = enc {
        out.clear();
        enc.encode(&rec, policy, RECEIVED_MS, out)
            .expect("the standard record encodes");
    }
    black_box(&rec);
}

fn bench_codec(c: &mut Criterion) {
    let frame = standard_frame();
    let policy = BinPolicy::all();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("parse", |b| {
        b.iter(|| parse_and_encode(black_box(&frame), None, &policy, &mut Vec::new()))
    });
    let mut out = Vec::with_capacity(4096);
    for enc in encoders() {
        g.bench_function(format!("parse+{}", enc.name()), |b| {
            b.iter(|| parse_and_encode(black_box(&frame), Some(&enc), &policy, &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_codec);

/// The instruction-count loop (see the module doc).
fn count_loop(iters: u64) {
    let frame = standard_frame();
    let format = std::env::var("CODEC_FORMAT").unwrap_or_else(|_| "json".to_string());
    let enc = encoders().into_iter().find(|e| e.name() == format);
    let policy = BinPolicy::all();
    let mut out = Vec::with_capacity(4096);
    for _ in 0..iters {
        parse_and_encode(black_box(&frame), enc.as_ref(), &policy, &mut out);
    }
    eprintln!(
        "{iters} x parse{}: frame {} bytes, output {} bytes",
        enc.as_ref()
            .map(|e| format!(" + {}", e.name()))
            .unwrap_or_default(),
        frame.len(),
        out.len()
    );
}

fn main() {
    if let Some(iters) = std::env::var("CODEC_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        count_loop(iters);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
