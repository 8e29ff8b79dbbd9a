//! Ops: one bin each (XDR-PROTOCOL.md §4).

use crate::record::Bin;

/// Iterates over an ops region the parser has already validated.
#[derive(Debug, Clone)]
pub struct BinIter<'a> {
    ops: &'a [u8],
    left: u16,
}

impl<'a> BinIter<'a> {
    pub(crate) fn new(ops: &'a [u8], count: u16) -> Self {
        BinIter { ops, left: count }
    }
}

impl<'a> Iterator for BinIter<'a> {
    type Item = Bin<'a>;
    fn next(&mut self) -> Option<Bin<'a>> {
        let _ = (self.ops, self.left);
        None
    }
}
