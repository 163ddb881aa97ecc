//! Spare buffers kept per thread.
//!
//! A connection holds a read or send buffer only while data flows through
//! it, so that ten thousand idle connections hold none. Allocating a fresh
//! buffer for every message would cost a `malloc` and a `free` each time
//! (a tenth of the user-space work of echoing a small message); instead a
//! connection borrows a buffer from its thread's spares when data comes and
//! gives it back when it goes idle. The spares are bounded in number and
//! size, so a thread never keeps more than a few megabytes.
//!
//! ```
//! let mut buf = frameway_wire::spare::take();
//! assert!(buf.capacity() >= frameway_wire::spare::BUFFER_SIZE / 2);
//! buf.extend_from_slice(b"a message");
//! buf.clear();
//! frameway_wire::spare::give(buf);
//! ```

use std::cell::RefCell;

use bytes::BytesMut;

/// The capacity of the buffers handed out: a 64 KiB message and its frame
/// header arrive in one read.
pub const BUFFER_SIZE: usize = 64 * 1024 + 16;
/// Spare buffers kept per thread.
const KEEP: usize = 32;
/// Buffers that grew beyond this (for a large message) are freed rather
/// than kept.
const KEEP_CAPACITY: usize = 256 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with at least half of [`BUFFER_SIZE`] bytes of capacity
/// (a new one has all of it): a spare one if the thread has one, else a new
/// one.
pub fn take() -> BytesMut {
    let spare = SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten();
    match spare {
        // A buffer with half its room left is good as it is: reclaiming the
        // room earlier messages used costs a call into `bytes` each time.
        // Reclaiming fails only while a payload split off the buffer is
        // still alive; that buffer is dropped (not the payload) for a new one.
        Some(mut buf) => {
            if buf.capacity() >= BUFFER_SIZE / 2 || buf.try_reclaim(BUFFER_SIZE) {
                buf
            } else {
                BytesMut::with_capacity(BUFFER_SIZE)
            }
        }
        None => BytesMut::with_capacity(BUFFER_SIZE),
    }
}

/// Gives back a buffer whose contents are no longer needed, to be handed
/// out again by [`take`].
pub fn give(mut buf: BytesMut) {
    if buf.capacity() == 0 || buf.capacity() > KEEP_CAPACITY {
        return;
    }
    buf.clear();
    // During thread teardown the spares are gone: the buffer is just freed.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < KEEP {
            spare.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_is_handed_out_again() {
        let buf = take();
        let at = buf.as_ptr();
        give(buf);
        assert_eq!(take().as_ptr(), at);
    }

    #[test]
    fn a_buffer_still_shared_with_a_payload_is_not_reused_under_it() {
        let mut buf = take();
        buf.extend_from_slice(b"payload");
        let payload = buf.split().freeze();
        give(buf);
        let mut next = take();
        next.extend_from_slice(&[0; BUFFER_SIZE]);
        assert_eq!(&payload[..], b"payload");
    }
}
