//! The test PKI: a CA, a server and a client certificate made with the
//! `openssl` CLI, shared by the shards' and the binary's integration tests.

use std::sync::Arc;

/// A temp dir with a CA, a server certificate (127.0.0.1, localhost,
/// sink.test) and a client certificate, made with the `openssl` CLI.
pub struct Pki {
    pub dir: std::path::PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("sluice-shards-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let openssl = |args: Vec<&str>| {
            let out = std::process::Command::new("openssl")
                .args(&args)
                .current_dir(&dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let mut ca = vec![
            "req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        ];
        ca.extend(ec);
        ca.extend(["-subj", "/CN=test CA"]);
        openssl(ca);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:sink.test\n",
        )
        .unwrap();
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        for who in ["server", "client"] {
            let (key, csr, pem, ext) = (
                format!("{who}.key"),
                format!("{who}.csr"),
                format!("{who}.pem"),
                format!("{who}.ext"),
            );
            let subj = format!("/CN={who}");
            let mut req = vec!["req", "-keyout", &key, "-out", &csr, "-subj", &subj];
            req.extend(ec);
            openssl(req);
            openssl(vec![
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
                &ext,
            ]);
        }
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.join(name)
    }

    pub fn server(&self, require_client: bool, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let ca = self.path("ca.pem");
        sluice_shards::tls::server_config(
            &self.path("server.pem"),
            &self.path("server.key"),
            require_client.then_some(ca.as_path()),
            alpn,
        )
        .unwrap()
    }

    pub fn client(&self, with_cert: bool, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let (cert, key) = (self.path("client.pem"), self.path("client.key"));
        sluice_shards::tls::client_config(
            Some(&self.path("ca.pem")),
            with_cert.then_some((cert.as_path(), key.as_path())),
            alpn,
        )
        .unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
