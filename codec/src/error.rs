//! Every way a frame or record can be malformed, with the offset where it was found.

/// A malformed input: what is wrong and where (byte offset from the start of
/// the frame being parsed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at offset {offset}")]
pub struct Error {
    pub kind: ErrorKind,
    pub offset: usize,
}

/// What is wrong with an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("input ends early: {what} needs {need} bytes, {have} left")]
    Truncated { what: &'static str, need: usize, have: usize },
}
