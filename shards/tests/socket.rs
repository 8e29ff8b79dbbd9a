//! Socket options of accepted XDR connections: `socket-receive-buffer-bytes`
//! is SO_RCVBUF of the socket the shard accepted (read back with getsockopt
//! on the server side of the connection, found among this process's fds).

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test's failure

mod common;

use std::net::SocketAddr;
use std::os::unix::io::{AsRawFd, RawFd};
use std::time::Duration;

use common::*;
use sluice_codec::encode::Encoder;
use sluice_shards::plan::HttpVersion;

/// A file descriptor number of this process, for socket2's `SockRef`.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// SO_RCVBUF of the socket of this process whose local address is `local`
/// and peer is `peer`: the server side of a loopback connection.
fn server_side_rcvbuf(local: SocketAddr, peer: SocketAddr) -> Option<usize> {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(n) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        let fd = Fd(n);
        let s = socket2::SockRef::from(&fd);
        let l = s.local_addr().ok().and_then(|a| a.as_socket());
        let p = s.peer_addr().ok().and_then(|a| a.as_socket());
        if l == Some(local) && p == Some(peer) {
            return s.recv_buffer_size().ok();
        }
    }
    None
}

/// Connects an XDR client, proves the session is served (one record acked),
/// and returns the server side's SO_RCVBUF.
fn accepted_rcvbuf(setting: Option<usize>) -> usize {
    let server = TestServer::start(Proto::H2c, None, always(200));
    let d = destination(
        "d",
        HttpVersion::Http2,
        &[format!("http://{}/", server.addr)],
    );
    let mut p = plan(vec![d], Encoder::json());
    p.service.socket_receive_buffer_bytes = setting;
    let rt = start(p);
    let xdr = rt.local_addrs()[0];
    let mut c = XdrClient::connect(xdr);
    c.send(&record(1));
    assert_eq!(c.acks(1), vec![(0, 1)]);
    let peer = c.stream.local_addr().unwrap();
    let got = server_side_rcvbuf(xdr, peer).expect("the accepted socket is in this process");
    drop(c);
    rt.shutdown(Duration::from_secs(1));
    rt.wait().unwrap();
    got
}

#[test]
fn socket_receive_buffer_bytes_sets_so_rcvbuf_of_accepted_connections() {
    // Linux doubles SO_RCVBUF for its bookkeeping (50,000 is far below
    // net.core.rmem_max, so it is not capped).
    assert_eq!(accepted_rcvbuf(Some(50_000)), 100_000);
    // Without the setting the kernel's default stays (net.ipv4.tcp_rmem's
    // middle value, not 100,000): the figure above came from the setting.
    assert_ne!(accepted_rcvbuf(None), 100_000);
}
