//! Outbound formats (being written).

/// An outbound format, configured (placeholder until the encoders land).
#[derive(Debug, Clone)]
pub enum Encoder {
    Json,
}

/// Which bins go out and under what names (placeholder).
#[derive(Debug, Clone, Default)]
pub struct BinPolicy {}
