//! The 8-byte proto header and the 22-byte message header (XDR-PROTOCOL.md §1–§2).

/// info1: the write comes from XDR.
pub const INFO1_XDR: u8 = 0x10;
