//! sluice-perf: the bundled XDR generator (`sluice gen`) and HTTP sink
//! (`sluice sink`), with the latency histograms both report.

pub mod gen;
pub mod sink;
