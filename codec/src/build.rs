//! The frame builder (being written).
