//! [`Conn`] fed bytes by hand: frames, HPACK (RFC 7541 Appendix C blocks),
//! flow control, and every protocol error it closes the connection for.

use super::*;

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame_head(&mut v, payload.len(), ty, flags, stream);
    v.extend_from_slice(payload);
    v
}

/// The frames in `out`: type, flags, stream, payload.
fn parse(out: &[u8]) -> Vec<Frame> {
    let mut v = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let len = (usize::from(out[at]) << 16)
            | (usize::from(out[at + 1]) << 8)
            | usize::from(out[at + 2]);
        v.push((
            out[at + 3],
            out[at + 4],
            u32_at(out, at + 5),
            out[at + 9..at + 9 + len].to_vec(),
        ));
        at += 9 + len;
    }
    assert_eq!(at, out.len(), "a partial frame in the output");
    v
}

/// The client's preface and an empty SETTINGS.
fn hello() -> Vec<u8> {
    let mut v = PREFACE.to_vec();
    v.extend(frame(SETTINGS, 0, 0, &[]));
    v
}

/// POST / with Content-Type application/json: :method POST (3), :scheme
/// http (6), :path / (4), content-type literal without indexing (name 31).
fn post_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86, 0x84, 0x0f, 0x10, 16];
    b.extend_from_slice(b"application/json");
    b
}

/// A frame: type, flags, stream, payload.
type Frame = (u8, u8, u32, Vec<u8>);

type Seen = Vec<(u32, Option<String>, Vec<u8>)>;

/// Feeds `input` in pieces of `step` bytes; every request answered with `reply`.
fn run(input: &[u8], step: usize, reply: Reply) -> (Result<(), ConnError>, Seen, Vec<Frame>) {
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.start(&mut out);
    let start_len = out.len();
    let mut seen = Vec::new();
    let mut buf = Vec::new();
    let mut res = Ok(());
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        match c.process(&buf, &mut out, &mut |id, ct, body| {
            seen.push((id, ct.map(str::to_string), body.to_vec()));
            reply
        }) {
            Ok((used, drop)) => {
                buf.drain(..used);
                if drop {
                    break;
                }
            }
            Err(e) => {
                c.goaway(&e, &mut out);
                res = Err(e);
                break;
            }
        }
    }
    (res, seen, parse(&out[start_len..]))
}

#[test]
fn start_sends_settings_and_raises_the_connection_window() {
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.start(&mut out);
    let f = parse(&out);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].0, f[0].1, f[0].2), (SETTINGS, 0, 0));
    let s: Vec<(u16, u32)> = f[0]
        .3
        .chunks(6)
        .map(|s| (u16::from_be_bytes([s[0], s[1]]), u32_at(s, 2)))
        .collect();
    assert_eq!(s, vec![(2, 0), (3, 1024), (4, 1 << 20)]);
    assert_eq!((f[1].0, f[1].2), (WINDOW_UPDATE, 0));
    assert_eq!(u32_at(&f[1].3, 0), (1 << 24) - 65_535);
}

#[test]
fn a_post_split_at_every_byte_is_answered_once_with_its_body() {
    let mut input = hello();
    input.extend(frame(HEADERS, END_HEADERS, 1, &post_block()));
    input.extend(frame(DATA, 0, 1, b"{\"a\":"));
    input.extend(frame(DATA, END_STREAM, 1, b"1}"));
    for step in [1, 7, input.len()] {
        let (r, seen, out) = run(&input, step, Reply::Now(200));
        assert_eq!(r, Ok(()));
        assert_eq!(
            seen,
            vec![(1, Some("application/json".into()), b"{\"a\":1}".to_vec())]
        );
        assert_eq!(
            out,
            vec![
                (SETTINGS, ACK, 0, vec![]),
                (HEADERS, END_STREAM | END_HEADERS, 1, vec![0x88])
            ]
        );
    }
}

#[test]
fn rfc7541_c4_huffman_requests_share_the_dynamic_table() {
    // RFC 7541 C.4.1 – C.4.3: three GETs, Huffman strings, the later ones
    // referring to the dynamic table the earlier ones filled.
    let c41 = [
        0x82, 0x86, 0x84, 0x41, 0x8c, 0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90,
        0xf4, 0xff,
    ];
    let c42 = [
        0x82, 0x86, 0x84, 0xbe, 0x58, 0x86, 0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf,
    ];
    let c43 = [
        0x82, 0x87, 0x85, 0xbf, 0x40, 0x88, 0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xa9, 0x7d, 0x7f, 0x89,
        0x25, 0xa8, 0x49, 0xe9, 0x5b, 0xb8, 0xe8, 0xb4, 0xbf,
    ];
    let mut input = hello();
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &c41));
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &c42));
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 5, &c43));
    let (r, seen, out) = run(&input, input.len(), Reply::Now(204));
    assert_eq!(r, Ok(()));
    assert_eq!(seen.iter().map(|s| s.0).collect::<Vec<_>>(), vec![1, 3, 5]);
    assert!(seen.iter().all(|s| s.1.is_none() && s.2.is_empty()));
    assert_eq!(
        &out[1..],
        &[
            (HEADERS, 5, 1, vec![0x89]),
            (HEADERS, 5, 3, vec![0x89]),
            (HEADERS, 5, 5, vec![0x89])
        ]
    );
    // C.4.3 leaves 3 entries in the dynamic table (62..=64): 65 (0xc1) is past its end.
    let mut bad = hello();
    bad.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x82, 0xc1]));
    let (r, _, out) = run(&bad, bad.len(), Reply::Now(200));
    assert_eq!(r.map_err(|e| e.code), Err(COMPRESSION_ERROR));
    assert_eq!(
        out.last().map(|f| (f.0, u32_at(&f.3, 4))),
        Some((GOAWAY, COMPRESSION_ERROR))
    );
}

#[test]
fn padding_priority_and_continuation() {
    let block = post_block();
    let mut h = vec![3u8]; // pad length
    h.extend_from_slice(&[0, 0, 0, 0, 16]); // priority: dependency 0, weight 16
    h.extend_from_slice(&block[..2]);
    h.extend_from_slice(&[0, 0, 0]);
    let mut input = hello();
    input.extend(frame(HEADERS, PADDED | PRIORITY_FLAG, 1, &h));
    input.extend(frame(CONTINUATION, 0, 1, &block[2..5]));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, &block[5..]));
    input.extend(frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 1]));
    input.extend(frame(0xfa, 0, 0, b"unknown frame types are ignored"));
    input.extend(frame(DATA, PADDED | END_STREAM, 1, &[2, b'{', b'}', 0, 0]));
    let (r, seen, out) = run(&input, 5, Reply::Now(503));
    assert_eq!(r, Ok(()));
    assert_eq!(
        seen,
        vec![(1, Some("application/json".into()), b"{}".to_vec())]
    );
    // 503 is not in the static table: a literal, its name indexed.
    assert_eq!(
        out[1],
        (
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            vec![0x08, 3, b'5', b'0', b'3']
        )
    );
}

#[test]
fn ping_is_acked_and_a_waiting_stream_reset_gets_no_answer() {
    let mut input = hello();
    input.extend(frame(PING, 0, 0, b"12345678"));
    input.extend(frame(PING, ACK, 0, b"87654321"));
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &post_block()));
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &post_block()));
    input.extend(frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]));
    let mut c = Conn::new();
    let mut out = Vec::new();
    let (used, drop) = c
        .process(&input, &mut out, &mut |_, _, _| Reply::Wait)
        .expect("valid input");
    assert_eq!((used, drop), (input.len(), false));
    c.answer_later(1, 200, &mut out);
    c.answer_later(3, 200, &mut out);
    c.answer_later(3, 200, &mut out);
    assert_eq!(
        parse(&out),
        vec![
            (SETTINGS, ACK, 0, vec![]),
            (PING, ACK, 0, b"12345678".to_vec()),
            (HEADERS, 5, 3, vec![0x88])
        ]
    );
}

#[test]
fn body_flow_control_is_replenished() {
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.start(&mut out);
    out.clear();
    let mut input = hello();
    input.extend(frame(HEADERS, END_HEADERS, 1, &post_block()));
    let chunk = vec![b' '; MAX_FRAME];
    // 40 full frames: 640 KiB, past half the stream's 1 MiB window.
    for _ in 0..40 {
        input.extend(frame(DATA, 0, 1, &chunk));
    }
    input.extend(frame(DATA, END_STREAM, 1, b"{}"));
    let mut got = 0;
    let (used, _) = c
        .process(&input, &mut out, &mut |_, _, body| {
            got = body.len();
            Reply::Now(200)
        })
        .expect("valid input");
    assert_eq!(used, input.len());
    assert_eq!(got, 40 * MAX_FRAME + 2);
    let updates: Vec<u32> = parse(&out)
        .iter()
        .filter(|f| f.0 == WINDOW_UPDATE)
        .map(|f| f.2)
        .collect();
    assert_eq!(
        updates,
        vec![1],
        "the stream's window raised once, the connection's not yet"
    );
    assert_eq!(c.held, 0);
}

/// Each input closes the connection with this code.
#[test]
fn protocol_errors_close_with_goaway() {
    let cases: Vec<(Vec<u8>, u32)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), PROTOCOL_ERROR),
        (
            [PREFACE.to_vec(), frame(PING, 0, 0, b"12345678")].concat(),
            PROTOCOL_ERROR,
        ),
        (
            [hello(), frame(0, 0, 1, &vec![0; MAX_FRAME + 1])].concat(),
            FRAME_SIZE_ERROR,
        ),
        (
            [hello(), frame(SETTINGS, 0, 0, &[0, 4, 0])].concat(),
            FRAME_SIZE_ERROR,
        ),
        (
            [hello(), frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 1])].concat(),
            PROTOCOL_ERROR,
        ),
        (
            [hello(), frame(PING, 0, 0, b"1234")].concat(),
            FRAME_SIZE_ERROR,
        ),
        ([hello(), frame(DATA, 0, 1, b"x")].concat(), PROTOCOL_ERROR),
        (
            [hello(), frame(HEADERS, END_HEADERS, 2, &post_block())].concat(),
            PROTOCOL_ERROR,
        ),
        (
            [
                hello(),
                frame(HEADERS, 0, 1, &post_block()),
                frame(PING, 0, 0, b"12345678"),
            ]
            .concat(),
            PROTOCOL_ERROR,
        ),
        (
            [hello(), frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82])].concat(),
            PROTOCOL_ERROR,
        ),
        (
            [hello(), frame(WINDOW_UPDATE, 0, 0, &[0, 0, 0, 0])].concat(),
            PROTOCOL_ERROR,
        ),
        (
            [hello(), frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2])].concat(),
            PROTOCOL_ERROR,
        ),
    ];
    for (input, code) in cases {
        let (r, _, out) = run(&input, input.len(), Reply::Now(200));
        let e = r.expect_err("a protocol error");
        assert_eq!(e.code, code, "{e}");
        let last = out.last().expect("a GOAWAY");
        assert_eq!((last.0, u32_at(&last.3, 4)), (GOAWAY, code), "{e}");
        assert_eq!(&last.3[8..], e.why.as_bytes());
    }
}

#[test]
fn a_drop_stops_processing() {
    let mut input = hello();
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &post_block()));
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &post_block()));
    let (r, seen, out) = run(&input, input.len(), Reply::Drop);
    assert_eq!(r, Ok(()));
    assert_eq!(seen.len(), 1);
    assert_eq!(out, vec![(SETTINGS, ACK, 0, vec![])]);
}

#[test]
fn bodies_held_past_the_cap_close_the_connection() {
    let mut c = Conn::new();
    let mut out = Vec::new();
    c.start(&mut out);
    let mut input = hello();
    input.extend(frame(HEADERS, END_HEADERS, 1, &post_block()));
    let (used, _) = c
        .process(&input, &mut out, &mut |_, _, _| Reply::Now(200))
        .expect("valid input");
    assert_eq!(used, input.len());
    // One stream's body, never ended: its window is raised as it comes, the
    // connection's too, until the cap on what one connection holds.
    let data = frame(DATA, 0, 1, &vec![b' '; MAX_FRAME]);
    let mut frames = 0;
    let e = loop {
        match c.process(&data, &mut out, &mut |_, _, _| Reply::Now(200)) {
            Ok((n, false)) => assert_eq!(n, data.len()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
        frames += 1;
    };
    assert_eq!(frames, BODY_CAP / MAX_FRAME);
    assert_eq!(e.code, ENHANCE_YOUR_CALM, "{e}");
}

#[test]
fn hpack_blocks_fluke_would_panic_on_are_refused() {
    // A size update cut short (5-bit prefix full, no continuation byte), at
    // the end of a block; a size update after a field; a string past the end.
    for block in [
        &[0x3f][..],
        &[0x82, 0x3f, 0x01],
        &[0x82, 0x20],
        &[0x0f, 0x10, 5, b'a'],
    ] {
        let mut input = hello();
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, block));
        let (r, seen, _) = run(&input, input.len(), Reply::Now(200));
        assert_eq!(r.map_err(|e| e.code), Err(COMPRESSION_ERROR), "{block:?}");
        assert!(seen.is_empty());
    }
    // A size update at the start, within the table's size, is fine.
    let mut input = hello();
    input.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &[0x3f, 0x01, 0x82],
    ));
    let (r, seen, _) = run(&input, input.len(), Reply::Now(200));
    assert_eq!(r, Ok(()));
    assert_eq!(seen.len(), 1);
    // The RFC 7541 C.4 blocks walk cleanly (checked end to end above); so do
    // integers at their longest.
    assert_eq!(hpack_int(&[0x1f, 0x9a, 0x0a], 5), Ok((1337, 3)));
    assert!(hpack_int(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0xff], 5).is_err());
}
