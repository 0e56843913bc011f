//! Turns the fuzzer's bytes into numbers and choices.
//!
//! Reads past the end return zeros, so a short input is a short scenario,
//! never a decoding failure: the fuzzer spends its time on the code under
//! test, not on a format.

/// A cursor over the fuzzer's bytes.
#[derive(Debug)]
pub struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes }
    }

    /// No bytes left: the scenario is over.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&first, rest)) => {
                self.bytes = rest;
                first
            }
            None => 0,
        }
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A value in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.u64() % bound
    }

    /// One of `choices` (not empty).
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.u8()) % choices.len()]
    }

    /// A number that is usually small but sometimes an edge: zero, one, the
    /// type's maximum, or any 64-bit value. Edges are where overflow hides.
    pub fn edgy_u64(&mut self) -> u64 {
        match self.u8() % 8 {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => self.u64(),
            4 => u64::from(u32::MAX) + u64::from(self.u8()),
            _ => u64::from(self.u16()),
        }
    }

    /// As [`edgy_u64`](Self::edgy_u64), for `u32`.
    pub fn edgy_u32(&mut self) -> u32 {
        match self.u8() % 6 {
            0 => 0,
            1 => 1,
            2 => u32::MAX,
            3 => self.u32(),
            _ => u32::from(self.u16()),
        }
    }

    /// Up to `most` bytes, length first.
    pub fn bytes(&mut self, most: usize) -> &'a [u8] {
        let wanted = usize::from(self.u16()) % (most + 1);
        let taken = wanted.min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(taken);
        self.bytes = rest;
        head
    }
}
