//! PEM files to rustls configurations.
//!
//! This module owns the one place where certificates and keys are read from
//! disk and turned into `rustls` client and server configs, for the config
//! loader (XDR listener TLS, destination TLS), the generator and the sink.
//! It parses PEM with `rustls-pki-types` (rustls-pemfile is unmaintained) and
//! always uses one crypto provider, *ring*, chosen explicitly, so that the
//! process never depends on which provider happens to be installed globally.
//!
//! Every error names the file and what is wrong with it, because these errors
//! are shown to an operator at start-up or reload.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong while loading PEM files or building a TLS config.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: malformed PEM: {why}", path.display())]
    Pem { path: PathBuf, why: String },
    #[error("no certificate found in {}", path.display())]
    NoCertificate { path: PathBuf },
    #[error("no private key in {} (expected a PKCS#8, PKCS#1 or SEC1 PEM block)", path.display())]
    NoKey { path: PathBuf },
    #[error("{}: certificate rejected as a trust anchor: {why}", path.display())]
    BadCa { path: PathBuf, why: String },
    #[error("certificate {} with key {}: {why}", cert.display(), key.display())]
    CertKey {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    #[error("client CA {}: {why}", path.display())]
    ClientVerifier { path: PathBuf, why: String },
    #[error("TLS protocol versions not supported by the crypto provider: {0}")]
    Versions(String),
}

/// The crypto provider every config of this process uses (*ring*).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            why: other.to_string(),
        },
    }
}

/// Every certificate in a PEM file, in file order (leaf first for a chain).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::NoKey {
            path: path.to_owned(),
        }),
        Err(e) => Err(pem_error(path, e)),
    }
}

fn root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// A client config for `https://` destinations (and the generator).
///
/// `ca`: the PEM file of the CAs that sign the servers' certificates. With
/// `None` the root store is empty, so *every* server certificate is rejected:
/// callers that talk to real servers must pass a CA (the config loader
/// requires one for `https://` URLs). `client_auth`: (certificate chain, key)
/// presented when the server asks for one. `alpn`: protocols offered, in
/// order of preference (e.g. `[b"h2"]` or `[b"http/1.1"]`).
pub fn client_config(
    ca: Option<&Path>,
    client_auth: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = match ca {
        Some(path) => root_store(path)?,
        None => RootCertStore::empty(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Versions(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client_auth {
        Some((cert, key)) => {
            let chain = load_certs(cert)?;
            let private = load_key(key)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| TlsError::CertKey {
                    cert: cert.to_owned(),
                    key: key.to_owned(),
                    why: e.to_string(),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A server config for the XDR listener (and the sink).
///
/// `cert`: the certificate chain, leaf first; `key`: its private key.
/// `client_ca`: when given, clients must present a certificate signed by one
/// of these CAs (mutual TLS); otherwise no client certificate is asked for.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Versions(e.to_string()))?;
    let builder = match client_ca {
        Some(path) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(path)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::ClientVerifier {
                path: path.to_owned(),
                why: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = load_certs(cert)?;
    let private = load_key(key)?;
    let mut config = builder
        .with_single_cert(chain, private)
        .map_err(|e| TlsError::CertKey {
            cert: cert.to_owned(),
            key: key.to_owned(),
            why: e.to_string(),
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A temp dir with a CA, a server cert (SAN IP:127.0.0.1, DNS:localhost)
    /// and a client cert, all made with the `openssl` CLI.
    struct Pki {
        dir: PathBuf,
    }

    impl Pki {
        fn new(name: &str) -> Pki {
            let dir =
                std::env::temp_dir().join(format!("sluice-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let run = |args: &[&str]| {
                let out = Command::new("openssl")
                    .args(args)
                    .current_dir(&dir)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sluice test CA",
            ]);
            std::fs::write(
                dir.join("server.ext"),
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
            )
            .unwrap();
            std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
            for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
                let key = format!("{name}.key");
                let csr = format!("{name}.csr");
                let pem = format!("{name}.pem");
                let subj = format!("/CN={name}");
                run(&[
                    "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                    &subj,
                ]);
                run(&[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    ext,
                ]);
            }
            Pki { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.join(name)
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

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
}
