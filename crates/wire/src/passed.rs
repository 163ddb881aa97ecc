//! What a relay's fast lane moved: the counts [`Protocol::pass_frames`]
//! keeps for its caller's metrics.
//!
//! [`Protocol::pass_frames`]: crate::Protocol::pass_frames

use crate::OpCode;

/// Data frames moved by [`Protocol::pass_frames`] and their payload bytes,
/// by opcode. Each pass adds to it, so one value can sum several passes.
/// The lane counts a run of frames in registers and adds the run once,
/// rather than calling back per frame: at 20 B a frame, a call per frame
/// cost a fifth of the lane's instructions.
///
/// [`Protocol::pass_frames`]: crate::Protocol::pass_frames
///
/// ```
/// use frameway_wire::{OpCode, Passed};
///
/// let passed = Passed::default();
/// assert!(passed.is_empty());
/// assert_eq!((passed.frames(OpCode::Text), passed.bytes(OpCode::Text)), (0, 0));
/// assert_eq!(passed.iter().count(), 0);
/// ```
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Passed {
    /// Frames and payload bytes: text, binary, continuation.
    counts: [(u64, u64); 3],
}

// Inlined across crates: a relay reads these after every pass, and in
// request-and-response traffic a pass is one frame or none.
impl Passed {
    /// Frames of `opcode` passed; none for a control opcode, which the lane
    /// leaves to its caller.
    #[inline]
    pub fn frames(&self, opcode: OpCode) -> u64 {
        Self::slot(opcode).map_or(0, |i| self.counts[i].0)
    }

    /// Payload bytes of the frames of `opcode` passed.
    #[inline]
    pub fn bytes(&self, opcode: OpCode) -> u64 {
        Self::slot(opcode).map_or(0, |i| self.counts[i].1)
    }

    /// Each opcode with frames passed: (opcode, frames, payload bytes), in
    /// the order text, binary, continuation.
    #[inline]
    pub fn iter(&self) -> impl Iterator<Item = (OpCode, u64, u64)> + '_ {
        [OpCode::Text, OpCode::Binary, OpCode::Continuation]
            .into_iter()
            .zip(&self.counts)
            .filter(|(_, &(frames, _))| frames > 0)
            .map(|(opcode, &(frames, bytes))| (opcode, frames, bytes))
    }

    /// Whether no frame was passed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.counts.iter().all(|&(frames, _)| frames == 0)
    }

    #[inline]
    pub(crate) fn add(&mut self, opcode: OpCode, frames: u64, bytes: u64) {
        if let Some(i) = Self::slot(opcode) {
            self.counts[i].0 += frames;
            self.counts[i].1 += bytes;
        }
    }

    #[inline]
    fn slot(opcode: OpCode) -> Option<usize> {
        match opcode {
            OpCode::Text => Some(0),
            OpCode::Binary => Some(1),
            OpCode::Continuation => Some(2),
            OpCode::Close | OpCode::Ping | OpCode::Pong => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_add_up_by_opcode_and_control_frames_are_not_counted() {
        let mut passed = Passed::default();
        passed.add(OpCode::Text, 2, 5);
        passed.add(OpCode::Binary, 1, 7);
        passed.add(OpCode::Text, 1, 3);
        passed.add(OpCode::Ping, 1, 1);
        assert!(!passed.is_empty());
        assert_eq!(
            (passed.frames(OpCode::Text), passed.bytes(OpCode::Text)),
            (3, 8)
        );
        assert_eq!(
            (passed.frames(OpCode::Binary), passed.bytes(OpCode::Binary)),
            (1, 7)
        );
        assert_eq!(passed.frames(OpCode::Continuation), 0);
        assert_eq!(passed.frames(OpCode::Ping), 0);
        let all: Vec<_> = passed.iter().collect();
        assert_eq!(all, [(OpCode::Text, 3, 8), (OpCode::Binary, 1, 7)]);
    }
}
