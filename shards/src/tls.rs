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
