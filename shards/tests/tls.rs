//! TLS on both sides of the data plane: h2 (ALPN) and HTTP/1.1 over TLS to
//! destinations, mutual TLS, a server name override, and TLS on the XDR
//! listener.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use common::*;
use sluice_codec::encode::Encoder;
use sluice_shards::plan::HttpVersion;

fn https(s: &TestServer) -> String {
    format!("https://{}/in", s.addr)
}

fn deliver(rt: &sluice_shards::Runtime, n: u32) -> Vec<(u8, u32)> {
    let mut c = XdrClient::connect(rt.local_addrs()[0]);
    let bytes: Vec<u8> = (1..=n).flat_map(record).collect();
    c.send(&bytes);
    c.acks(n as usize)
}

#[test]
fn h2_over_tls_with_alpn_and_mutual_tls() {
    let pki = Pki::new("h2");
    let server = TestServer::start(Proto::H2c, Some(pki.server(true, &[b"h2"])), always(200));
    let mut d = destination("tls", HttpVersion::Http2, &[https(&server)]);
    d.tls = Some(pki.client(true, &[b"h2"]));
    let rt = start(plan(vec![d], Encoder::json()));
    assert_eq!(deliver(&rt, 5), (1..=5).map(|g| (0, g)).collect::<Vec<_>>());
    assert_eq!(server.count(), 5);
    assert_eq!(server.received.lock().unwrap()[0].path, "/in");
}

#[test]
fn mutual_tls_without_a_client_certificate_answers_11() {
    let pki = Pki::new("mtls-missing");
    let server = TestServer::start(Proto::H2c, Some(pki.server(true, &[b"h2"])), always(200));
    let mut d = destination("tls", HttpVersion::Http2, &[https(&server)]);
    d.tls = Some(pki.client(false, &[b"h2"]));
    let rt = start(plan(vec![d], Encoder::json()));
    assert_eq!(deliver(&rt, 2), vec![(11, 1), (11, 2)]);
    assert_eq!(server.count(), 0);
}

#[test]
fn http1_over_tls_with_a_server_name_override() {
    let pki = Pki::new("h1");
    let server = TestServer::start(
        Proto::Http1,
        Some(pki.server(false, &[b"http/1.1"])),
        always(200),
    );
    let mut d = destination("tls1", HttpVersion::Http1, &[https(&server)]);
    d.tls = Some(pki.client(false, &[b"http/1.1"]));
    d.tls_server_name = Some("sink.test".into());
    let rt = start(plan(vec![d], Encoder::json()));
    assert_eq!(deliver(&rt, 3), vec![(0, 1), (0, 2), (0, 3)]);
    // A name the certificate does not hold fails the handshake: 11.
    let mut d = destination("tls1", HttpVersion::Http1, &[https(&server)]);
    d.tls = Some(pki.client(false, &[b"http/1.1"]));
    d.tls_server_name = Some("other.test".into());
    let rt = start(plan(vec![d], Encoder::json()));
    assert_eq!(deliver(&rt, 1), vec![(11, 1)]);
}

#[test]
fn tls_on_the_xdr_listener_requiring_client_certificates() {
    let pki = Pki::new("xdr");
    let server = TestServer::start(Proto::H2c, None, always(200));
    let mut p = plan(
        vec![destination(
            "d",
            HttpVersion::Http2,
            &[format!("http://{}/", server.addr)],
        )],
        Encoder::json(),
    );
    p.service.listeners[0].tls = Some(pki.server(true, &[]));
    let rt = start(p);
    let addr = rt.local_addrs()[0];

    let connect = |with_cert: bool| {
        let tcp = std::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(pki.client(with_cert, &[]), name).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    };
    let mut tls = connect(true);
    let bytes: Vec<u8> = (1..=3).flat_map(record).collect();
    tls.write_all(&bytes).unwrap();
    let mut acks = vec![0u8; 3 * sluice_codec::ack::ACK_LEN];
    tls.read_exact(&mut acks).unwrap();
    let got: Vec<(u8, u32)> = acks
        .chunks(sluice_codec::ack::ACK_LEN)
        .map(|c| {
            let a = sluice_codec::ack::read(c).unwrap();
            (a.result, a.generation)
        })
        .collect();
    assert_eq!(got, vec![(0, 1), (0, 2), (0, 3)]);

    // Without a client certificate the handshake is refused: no ack comes.
    let mut anon = connect(false);
    let sent = anon.write_all(&record(9)).and_then(|()| {
        let mut b = [0u8; 1];
        anon.read(&mut b)
    });
    assert!(matches!(sent, Err(_) | Ok(0)), "{sent:?}");
    assert_eq!(rt.stats()[0].records_received.load(Relaxed), 3);
}
