//! Loading PEM files into rustls configs (`sluice_shards::tls`): what loads,
//! the errors that name the file and the problem, and a handshake between the
//! client and server configs over in-memory buffers (mutual TLS, ALPN, SANs).

#![allow(clippy::unwrap_used)] // tests: a failure is the test's failure

mod common;

use std::sync::Arc;

use common::Pki;
use rustls_pki_types::PrivateKeyDer;
use sluice_shards::tls::{client_config, load_certs, load_key, server_config};

/// Drives a handshake between the two configs over in-memory buffers.
fn handshake(
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    name: &str,
) -> Result<(Option<Vec<u8>>, bool), rustls::Error> {
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let mut c = rustls::ClientConnection::new(client, server_name)?;
    let mut s = rustls::ServerConnection::new(server)?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
            s.process_new_packets()?;
        }
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            let client_cert = s.peer_certificates().is_some_and(|p| !p.is_empty());
            return Ok((c.alpn_protocol().map(|p| p.to_vec()), client_cert));
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn loads_certs_and_keys() {
    let pki = Pki::new("load");
    let certs = load_certs(&pki.path("server.pem")).unwrap();
    assert_eq!(certs.len(), 1);
    let key = load_key(&pki.path("server.key")).unwrap();
    assert!(matches!(key, PrivateKeyDer::Pkcs8(_)));
    // A chain file: two certificates, file order kept.
    let chain = [
        std::fs::read(pki.path("server.pem")).unwrap(),
        std::fs::read(pki.path("ca.pem")).unwrap(),
    ]
    .concat();
    std::fs::write(pki.path("chain.pem"), chain).unwrap();
    let loaded = load_certs(&pki.path("chain.pem")).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0], certs[0]);
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let pki = Pki::new("errors");
    let missing = pki.path("nope.pem");
    let e = load_certs(&missing).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("cannot read {}", missing.display())),
        "{e}"
    );
    // A key file holds no certificate, and a certificate file no key.
    let key_file = pki.path("server.key");
    let e = load_certs(&key_file).unwrap_err().to_string();
    assert_eq!(e, format!("no certificate found in {}", key_file.display()));
    let cert_file = pki.path("server.pem");
    let e = load_key(&cert_file).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("no private key in {}", cert_file.display())),
        "{e}"
    );
    // Mismatched certificate and key.
    let e = server_config(&cert_file, &pki.path("client.key"), None, &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.pem") && e.contains("client.key"), "{e}");
    let garbage = pki.path("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let e = load_certs(&garbage).unwrap_err().to_string();
    assert!(
        e.contains("garbage.pem") && e.contains("malformed PEM"),
        "{e}"
    );
}

#[test]
fn client_and_server_handshake_with_alpn_and_client_auth() {
    let pki = Pki::new("hs");
    let ca = pki.path("ca.pem");
    let server = server_config(
        &pki.path("server.pem"),
        &pki.path("server.key"),
        Some(&ca),
        &[b"h2", b"http/1.1"],
    )
    .unwrap();
    let client = client_config(
        Some(&ca),
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
        &[b"h2"],
    )
    .unwrap();
    let (alpn, client_cert) = handshake(client.clone(), server.clone(), "127.0.0.1").unwrap();
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert!(client_cert);
    let (_, _) = handshake(client, server.clone(), "localhost").unwrap();

    // Without a client certificate, a server that requires one refuses.
    let anon = client_config(Some(&ca), None, &[b"h2"]).unwrap();
    assert!(handshake(anon, server, "localhost").is_err());

    // Without a CA, no server certificate is trusted.
    let open_server =
        server_config(&pki.path("server.pem"), &pki.path("server.key"), None, &[]).unwrap();
    let no_roots = client_config(None, None, &[]).unwrap();
    assert!(handshake(no_roots, open_server.clone(), "localhost").is_err());
    // A name outside the SANs is refused.
    let client = client_config(Some(&ca), None, &[]).unwrap();
    assert!(handshake(client.clone(), open_server.clone(), "example.com").is_err());
    let (alpn, client_cert) = handshake(client, open_server, "localhost").unwrap();
    assert_eq!(alpn, None);
    assert!(!client_cert);
}
