//! The XDR side of the integration tests: a blocking client that sends
//! frames and reads the 30-byte acks in the order they arrive. Shared by
//! `shards/tests` and the root package's `tests/` (included by path).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// An XDR client: sends frames, reads acks in order.
pub struct XdrClient {
    pub stream: TcpStream,
}

impl XdrClient {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        XdrClient { stream }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads `n` acks: (result, generation) in the order they arrived.
    pub fn acks(&mut self, n: usize) -> Vec<(u8, u32)> {
        let mut buf = vec![0u8; n * sluice_codec::ack::ACK_LEN];
        self.stream.read_exact(&mut buf).unwrap();
        buf.chunks(sluice_codec::ack::ACK_LEN)
            .map(|c| {
                let a = sluice_codec::ack::read(c).unwrap();
                (a.result, a.generation)
            })
            .collect()
    }

    /// True when the peer closed the connection (EOF) within the timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0) | Err(_))
    }
}
