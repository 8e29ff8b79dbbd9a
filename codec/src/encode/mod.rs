//! Outbound formats (being written).
