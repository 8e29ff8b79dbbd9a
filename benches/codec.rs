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
use sluice_codec::build::Message;
use sluice_codec::encode::{BinPolicy, Encoder};
use sluice_codec::wire;

const RECEIVED_MS: u64 = 1_700_000_000_000;

/// The standard record of BENCHMARKS.md (`build::Message::standard`).
fn standard_frame() -> Vec<u8> {
    Message::standard()
        .to_vec()
        .expect("the standard record builds")
}

/// Parse alone validates the whole message; parse + a format takes the
/// session's path: the ops left to the encoder, which validates them
/// (`json` as it writes them).
fn parse_and_encode(frame: &[u8], enc: Option<&Encoder>, policy: &BinPolicy, out: &mut Vec<u8>) {
    let Some(enc) = enc else {
        let rec = wire::parse_message(frame).expect("the standard record parses");
        black_box(&rec);
        return;
    };
    let rec = wire::parse_message_lazy(frame).expect("the standard record parses");
    out.clear();
    enc.encode_lazy(&rec, policy, RECEIVED_MS, out)
        .expect("the standard record encodes");
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
    for enc in Encoder::each_format() {
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
    let enc = Encoder::each_format()
        .into_iter()
        .find(|e| e.name() == format);
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
