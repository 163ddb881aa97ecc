//! Random bytes for masking keys and handshake keys, drawn from the
//! operating system's generator in blocks of [`BLOCK`] per thread: a
//! gateway masking every frame toward its upstreams, or opening thousands
//! of upstream connections at once, then makes one `getrandom` call per
//! block instead of one per connection and per 16 frames. The bytes are
//! the OS generator's, unchanged; each is handed out once.

use std::cell::RefCell;

/// Bytes fetched per call to the operating system.
const BLOCK: usize = 4096;

struct Pool {
    bytes: [u8; BLOCK],
    /// Bytes already handed out (`BLOCK` when empty).
    used: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; BLOCK], used: BLOCK }) };
}

/// Fills `buf` with random bytes from this thread's pool, refilling it
/// from the operating system when it runs out.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    if buf.len() > BLOCK {
        return getrandom::fill(buf);
    }
    POOL.with_borrow_mut(|pool| {
        let mut done = 0;
        while done < buf.len() {
            if pool.used == BLOCK {
                getrandom::fill(&mut pool.bytes)?;
                pool.used = 0;
            }
            let n = (buf.len() - done).min(BLOCK - pool.used);
            buf[done..done + n].copy_from_slice(&pool.bytes[pool.used..pool.used + n]);
            pool.used += n;
            done += n;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successive_draws_differ_and_span_refills() {
        let mut seen = std::collections::HashSet::new();
        // More than a block's worth, in key-sized draws.
        for _ in 0..(2 * BLOCK / 16 + 3) {
            let mut key = [0u8; 16];
            fill(&mut key).unwrap();
            assert!(seen.insert(key), "a 16-byte draw repeated");
        }
        let mut big = vec![0u8; BLOCK + 1];
        fill(&mut big).unwrap();
        assert!(big.iter().any(|&b| b != 0));
    }
}
