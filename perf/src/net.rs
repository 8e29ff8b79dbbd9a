//! The byte streams gen and sink run over: plain TCP or rustls (client side
//! for gen, server side for sink) on a glommio socket, as one type so the
//! protocol code is written once.

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A connection, with or without TLS.
pub enum Io {
    Plain(TcpStream),
    Client(Box<futures_rustls::client::TlsStream<TcpStream>>),
    Server(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Client(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Io::Server(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Client(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Io::Server(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Client(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Io::Server(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_close(cx),
            Io::Client(s) => Pin::new(s.as_mut()).poll_close(cx),
            Io::Server(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// Microseconds since the Unix epoch.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Starts `threads` executors that each bind `listen` (SO_REUSEPORT: the
/// kernel spreads connections over them) and run `serve` on their listener.
/// The first binds the address as given (port 0: any free port); the others
/// bind the address it got. Returns that address once all are listening.
pub fn serve_on<F, Fut>(
    listen: &str,
    threads: usize,
    cpus: &[usize],
    name: &str,
    serve: F,
) -> io::Result<std::net::SocketAddr>
where
    F: Fn(glommio::net::TcpListener) -> Fut + Send + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (tx, rx) = crossbeam_channel::bounded::<io::Result<std::net::SocketAddr>>(1);
    let mut addr: Option<std::net::SocketAddr> = None;
    for i in 0..threads.max(1) {
        let tx = tx.clone();
        let serve = serve.clone();
        let at = addr.map_or_else(|| listen.to_string(), |a| a.to_string());
        sluice_shards::rt::executor_builder(cpus.get(i).copied(), &format!("{name}-{i}"))
            .spawn(move || async move {
                match glommio::net::TcpListener::bind(at.as_str()) {
                    Ok(l) => {
                        let _ = tx.send(l.local_addr().map_err(Into::into));
                        serve(l).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into()));
                    }
                }
            })
            .map_err(|e| io::Error::other(format!("cannot start executor {i}: {e}")))?;
        let got = rx
            .recv()
            .map_err(|_| io::Error::other("executor ended before listening"))??;
        addr.get_or_insert(got);
    }
    addr.ok_or_else(|| io::Error::other("no executor"))
}

/// Deterministic 64-bit mixing (splitmix64): record number → key, kind, faults.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform fraction in [0, 1) from a mixed value.
pub fn unit(z: u64) -> f64 {
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Parses "10s", "500ms", "2m", "1h" or plain seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (e.g. 10s, 500ms, 2m)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!(
            "`{s}` is not a duration: it must be zero or positive"
        ));
    }
    Ok(std::time::Duration::from_secs_f64(v * mul))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_refuse_negatives() {
        assert_eq!(parse_duration("10s").unwrap().as_millis(), 10_000);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert_eq!(parse_duration("3").unwrap().as_secs(), 3);
        assert!(parse_duration("-1s").unwrap_err().contains("positive"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn unit_stays_in_range_and_mix_spreads() {
        let a: Vec<f64> = (0..1000).map(|i| unit(mix(i))).collect();
        assert!(a.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }
}
