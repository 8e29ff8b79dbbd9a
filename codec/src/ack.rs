//! The ack (being written).
