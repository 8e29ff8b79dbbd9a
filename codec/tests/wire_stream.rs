//! Cutting frames out of a stream (many frames per read, one frame split
//! across reads), and the ack's exact bytes.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use proptest::prelude::*;
use sluice_codec::ack;
use sluice_codec::build::{self, BinSpec, Key, Message, ValueSpec};
use sluice_codec::wire::{self, frame::FrameType};
use sluice_codec::ErrorKind;

const MAX: usize = 1 << 20;

fn frame(i: usize) -> Vec<u8> {
    let mut m = Message::write_record(
        "test",
        Some("demo"),
        Some(Key::Int(i as i64)),
        vec![BinSpec::new("s", ValueSpec::Str("v".repeat(i % 300)))],
    );
    m.generation = i as u32;
    let f = m.to_vec().unwrap();
    if i % 5 == 4 {
        let mut z = Vec::new();
        build::compress(&f, &mut z).unwrap();
        z
    } else {
        f
    }
}

/// Cuts every whole frame from the front of `buf`; returns them and the
/// bytes consumed.
fn cut_all(buf: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut at = 0;
    let mut out = Vec::new();
    while let Some(f) = wire::frame::cut(&buf[at..], MAX).unwrap() {
        at += f.bytes.len();
        out.push(f.bytes.to_vec());
    }
    (out, at)
}

#[test]
fn many_frames_in_one_buffer() {
    let frames: Vec<_> = (0..50).map(frame).collect();
    let buf = frames.concat();
    let (got, used) = cut_all(&buf);
    assert_eq!(used, buf.len());
    assert_eq!(got, frames);
    let mut scratch = Vec::new();
    for (i, f) in got.iter().enumerate() {
        let ty = wire::frame::cut(f, MAX).unwrap().unwrap().ty;
        assert_eq!(
            ty,
            if i % 5 == 4 {
                FrameType::Compressed
            } else {
                FrameType::Message
            }
        );
        assert_eq!(
            wire::parse(f, &mut scratch, MAX).unwrap().generation,
            i as u32
        );
    }
}

#[test]
fn one_frame_split_at_every_byte() {
    let f = frame(7);
    let next = frame(8);
    for i in 0..f.len() {
        assert_eq!(
            wire::frame::cut(&f[..i], MAX).unwrap(),
            None,
            "prefix of {i} bytes"
        );
    }
    let mut two = f.clone();
    two.extend_from_slice(&next);
    for extra in 0..=next.len() {
        let got = wire::frame::cut(&two[..f.len() + extra], MAX)
            .unwrap()
            .unwrap();
        assert_eq!(got.bytes, &f[..]);
    }
}

#[test]
fn refuses_non_aerospike_bytes_at_once() {
    let e = wire::frame::cut(b"GET / HTTP/1.1\r\n", MAX).unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::BadVersion(b'G'), 0));
    let e = wire::frame::cut(&[2, 0], MAX).unwrap_err();
    assert_eq!((e.kind, e.offset), (ErrorKind::UnknownFrameType(0), 1));
    assert_eq!(wire::frame::cut(&[], MAX).unwrap(), None);
    assert_eq!(wire::frame::cut(&[2], MAX).unwrap(), None);
    // Info frames are framed (the session answers them), not parsed.
    let info = [2, 1, 0, 0, 0, 0, 0, 5, b'b', b'u', b'i', b'l', b'd'];
    let f = wire::frame::cut(&info, MAX).unwrap().unwrap();
    assert_eq!((f.ty, f.bytes.len()), (FrameType::Info, 13));
}

proptest! {
    #[test]
    fn stream_in_random_chunks(n in 1usize..20, chunks in proptest::collection::vec(1usize..200, 1..100)) {
        let frames: Vec<_> = (0..n).map(frame).collect();
        let stream = frames.concat();
        // A session buffer: append what arrived, cut whole frames, keep the rest.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        let mut sent = 0;
        let mut sizes = chunks.iter().cycle();
        while sent < stream.len() {
            let n = (*sizes.next().unwrap()).min(stream.len() - sent);
            buf.extend_from_slice(&stream[sent..sent + n]);
            sent += n;
            let (frames, used) = cut_all(&buf);
            got.extend(frames);
            buf.drain(..used);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, frames);
    }
}

#[test]
fn ack_bytes_are_exact() {
    let mut out = vec![0xaa];
    ack::write(&mut out, ack::UNAVAILABLE, 0x0102_0304);
    assert_eq!(out.len(), 1 + ack::ACK_LEN);
    let want = [
        0xaa, 2, 3, 0, 0, 0, 0, 0, 0x16, 0x16, 0, 0, 0, 0, 11, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0,
    ];
    assert_eq!(out, want);
    let v = ack::read(&out[1..]).unwrap();
    assert_eq!(
        v,
        ack::AckView {
            result: 11,
            generation: 0x0102_0304
        }
    );
    // An ack is itself one whole frame.
    assert_eq!(
        wire::frame::cut(&out[1..], MAX)
            .unwrap()
            .unwrap()
            .bytes
            .len(),
        30
    );
}

#[test]
fn ack_result_classes() {
    let retry: Vec<u8> = (0..=255).filter(|&r| ack::is_retry(r)).collect();
    let done: Vec<u8> = (0..=255).filter(|&r| ack::is_done(r)).collect();
    assert_eq!(retry, [8, 9, 11, 14, 18, 80]);
    assert_eq!(done, [0, 2]);
    assert!(ack::is_retry(ack::UNAVAILABLE) && ack::is_done(ack::OK));
    assert!(!ack::is_retry(ack::PARAMETER) && !ack::is_done(ack::PARAMETER));
}

#[test]
fn ack_read_rejects_other_frames() {
    let mut a = Vec::new();
    ack::write(&mut a, 0, 9);
    let e = ack::read(&a[..29]).unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::Truncated {
            what: "ack",
            need: 30,
            have: 29
        }
    );
    let mut long = a.clone();
    long.push(0);
    assert_eq!(ack::read(&long).unwrap_err().offset, 30);
    let mut b = a.clone();
    b[1] = 4;
    assert_eq!(
        ack::read(&b).unwrap_err().kind,
        ErrorKind::WrongFrameType {
            expected: 3,
            found: 4
        }
    );
    let mut b = a.clone();
    b[7] = 21;
    assert_eq!(
        ack::read(&b).unwrap_err().kind,
        ErrorKind::BadAck {
            why: "body length is not 22"
        }
    );
    let mut b = a.clone();
    b[8] = 21;
    assert_eq!(
        ack::read(&b).unwrap_err().kind,
        ErrorKind::BadHeaderSize(21)
    );
    let mut b = a.clone();
    b[29] = 1;
    assert_eq!(
        ack::read(&b).unwrap_err().kind,
        ErrorKind::BadAck {
            why: "carries fields or ops"
        }
    );
}
