//! A trivial acking peer (`sluice gen --acker ADDR`): answers every request
//! with the 30-byte ack as fast as it can, in order. It is what the
//! generator's own throughput is measured against, and, with its fault
//! flags (retry every Nth, drop the connection after N), a fake connector
//! for tests.

use super::GenArgs;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use std::process::ExitCode;

/// Faults the acker injects.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Answer every Nth request (over the connection) with result 11.
    pub retry_every: u64,
    /// Close the connection after reading N requests on it; the ones not yet acked are lost.
    pub drop_every: u64,
}

/// The ack for a request: a 22-byte header echoing the generation.
pub fn ack(out: &mut Vec<u8>, result: u8, generation: u32) {
    out.extend_from_slice(&[2, 3, 0, 0, 0, 0, 0, 22, 22, 0, 0, 0, 0, result]);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(&[0; 12]);
}

/// Serves one connection until the peer closes it (or a fault drops it).
pub async fn serve<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin>(
    mut s: S,
    faults: Faults,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    let mut out = Vec::with_capacity(64 * 1024);
    let mut seen = 0u64;
    loop {
        let n = s.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut at = 0;
        out.clear();
        while filled - at >= 8 {
            let h = &buf[at..at + 8];
            let len = u64::from_be_bytes([0, 0, h[2], h[3], h[4], h[5], h[6], h[7]]) as usize;
            if h[0] != 2 || len > buf.len() - 8 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not an Aerospike frame",
                ));
            }
            if filled - at < 8 + len {
                break;
            }
            let gen = if h[1] == 3 && len >= 10 {
                u32::from_be_bytes([buf[at + 14], buf[at + 15], buf[at + 16], buf[at + 17]])
            } else {
                0
            };
            at += 8 + len;
            seen += 1;
            if faults.drop_every > 0 && seen >= faults.drop_every {
                s.write_all(&out).await?;
                return Ok(());
            }
            let result = if faults.retry_every > 0 && seen.is_multiple_of(faults.retry_every) {
                11
            } else {
                0
            };
            ack(&mut out, result, gen);
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        s.write_all(&out).await?;
    }
}

/// `sluice gen --acker ADDR`: listens (SO_REUSEPORT, one executor per --threads) until killed.
pub fn run(addr: &str, args: &GenArgs) -> ExitCode {
    let faults = Faults {
        retry_every: args.acker_retry_every,
        drop_every: args.acker_drop_every,
    };
    let bound = crate::net::serve_on(addr, args.threads, &args.cpus, "acker", move |l| {
        accept_loop(l, faults)
    });
    match bound {
        Ok(a) => eprintln!("listening on {a}"),
        Err(e) => {
            eprintln!("sluice gen --acker: cannot listen on {addr}: {e}");
            return ExitCode::from(2);
        }
    }
    // The executors serve until the process is killed.
    loop {
        std::thread::park();
    }
}

async fn accept_loop(l: glommio::net::TcpListener, faults: Faults) {
    loop {
        match l.accept().await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                glommio::spawn_local(async move {
                    let _ = serve(s, faults).await;
                })
                .detach();
            }
            Err(e) => {
                eprintln!("sluice gen --acker: accept: {e}");
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}
