//! sluice-perf: the bundled XDR generator (`sluice gen`) and HTTP sink
//! (`sluice sink`), with the latency histograms both report.
//!
//! - [`gen`] acts like XDR: pipelined change notifications, acks read in
//!   order, XDR's resend rules, open-loop rate with coordinated-omission
//!   correction.
//! - [`sink`] acts like an HTTP destination: HTTP/1.1, h2c and TLS with
//!   ALPN, decodes every format of the project, counts exactly, injects faults.
//! - [`hist`] is the latency histogram and its outputs; [`net`] the stream
//!   type and small helpers both share.

pub mod gen;
pub mod hist;
pub mod net;
pub mod sink;
