//! Masking (RFC 6455 §5.3): XOR with a four-byte key, repeated.

/// XORs `buf` in place with `key`, as if `buf` started `offset` bytes into a
/// masked payload. The offset lets a payload that arrives in pieces be
/// unmasked piece by piece.
///
/// Works a machine word at a time over the aligned middle of the buffer so it
/// runs at memory speed; the compiler vectorises the word loop, with AVX2
/// where the CPU has it (checked at run time).
///
/// ```
/// use frameway_wire::apply_mask;
/// let key = [1, 2, 3, 4];
/// let mut data = *b"Hello, world";
/// apply_mask(&mut data, key, 0);
/// assert_ne!(&data, b"Hello, world");
/// // Unmasking the second half on its own gives the same result.
/// apply_mask(&mut data[..5], key, 0);
/// apply_mask(&mut data[5..], key, 5);
/// assert_eq!(&data, b"Hello, world");
/// ```
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate(key, offset);
    if buf.len() < 64 {
        let word_key = repeated(key);
        // Small payloads (most messages) are not worth aligning: eight
        // bytes at a time unaligned, then the rest, which starts on a key
        // boundary because eight is a multiple of four.
        let mut words = buf.chunks_exact_mut(8);
        for word in &mut words {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word_key).to_ne_bytes());
        }
        let rest = words.into_remainder();
        for (b, k) in rest.iter_mut().zip(word_key.to_ne_bytes()) {
            *b ^= k;
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if buf.len() >= WIDE_FROM && std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { mask_words_avx2(buf, key) };
    }
    mask_words(buf, key);
}

/// Payloads from this size are masked with 32-byte vectors where the CPU
/// has them: below it the feature check and the shorter loop gain nothing.
/// (AVX-512 measured 8-11% faster than AVX2 from 64 KiB but slower up to
/// 16 KiB, too little either way to carry a third loop.)
#[cfg(target_arch = "x86_64")]
const WIDE_FROM: usize = 256;

/// The word loop, compiled with AVX2 so that it is vectorised 32 bytes at a
/// time (the portable build targets SSE2, 16 bytes, and the masking of large
/// payloads is most of a large message's user time).
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn mask_words_avx2(buf: &mut [u8], key: [u8; 4]) {
    mask_words(buf, key);
}

/// XORs the unaligned head and tail byte by byte and the aligned middle a
/// word at a time; the compiler vectorises the word loop for the features
/// of the function it is inlined into.
#[inline(always)]
fn mask_words(buf: &mut [u8], key: [u8; 4]) {
    // SAFETY: u64 has no invalid bit patterns and align_to_mut only yields an
    // aligned, in-bounds middle slice.
    let (head, words, tail) = unsafe { buf.align_to_mut::<u64>() };
    for (i, b) in head.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
    let key = rotate(key, head.len());
    let word_key = repeated(key);
    for w in words.iter_mut() {
        *w ^= word_key;
    }
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// The key twice over, as a machine word.
#[inline]
fn repeated(key: [u8; 4]) -> u64 {
    u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ])
}

/// The key as seen from `by` bytes into the payload.
#[inline]
fn rotate(key: [u8; 4], by: usize) -> [u8; 4] {
    [
        key[by & 3],
        key[(by + 1) & 3],
        key[(by + 2) & 3],
        key[(by + 3) & 3],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(i + offset) & 3];
        }
    }

    #[test]
    fn matches_bytewise_masking_for_every_length_offset_and_alignment() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        // Long enough for the vector loops of the wide path (from
        // WIDE_FROM bytes) to run several times and leave every tail.
        let source: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..8 {
            for len in 0..(source.len() - start) {
                for offset in 0..4 {
                    let mut fast = source.clone();
                    let mut slow = source.clone();
                    apply_mask(&mut fast[start..start + len], key, offset);
                    naive(&mut slow[start..start + len], key, offset);
                    assert_eq!(fast, slow, "start {start} len {len} offset {offset}");
                }
            }
        }
    }

    /// Every word loop this CPU can run, not only the one `apply_mask`
    /// picks, agrees with byte-wise masking.
    #[test]
    fn every_word_loop_matches_bytewise_masking() {
        type WordLoop = fn(&mut [u8], [u8; 4]);
        let mut loops: Vec<(&str, WordLoop)> = vec![("portable", mask_words)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2, checked just above.
                loops.push(("avx2", |buf, key| unsafe { mask_words_avx2(buf, key) }));
            }
        }
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let source: Vec<u8> = (0..700u32).map(|i| (i * 5 + 1) as u8).collect();
        for (name, word_loop) in loops {
            for start in 0..8 {
                for len in 0..(source.len() - start) {
                    let mut fast = source.clone();
                    let mut slow = source.clone();
                    word_loop(&mut fast[start..start + len], key);
                    naive(&mut slow[start..start + len], key, 0);
                    assert_eq!(fast, slow, "{name}: start {start} len {len}");
                }
            }
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: a masked "Hello".
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }
}
