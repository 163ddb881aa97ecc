//! UTF-8: incremental validation for text that arrives in pieces, and a
//! `Bytes` that is known to hold UTF-8.

use bytes::Bytes;

/// Validates UTF-8 that arrives in chunks (fragments, or parts of one frame
/// split across reads), failing as soon as a byte makes the text invalid
/// rather than at the end of the message.
///
/// ```
/// use frameway_wire::Utf8Validator;
/// let euro = "€".as_bytes(); // three bytes
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&euro[..1]).is_ok());
/// assert!(v.feed(&euro[1..]).is_ok());
/// assert!(v.finish().is_ok());
///
/// // 0xF4 0x90 can never start a valid sequence (> U+10FFFF): rejected at
/// // once, before the message ends.
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&[0xF4, 0x90]).is_err());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The bytes of a code point cut off at the end of the previous chunk.
    pending: [u8; 4],
    pending_len: u8,
}

/// The text was not valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8")]
pub struct InvalidUtf8;

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Validates the next chunk. An error means no continuation could make
    /// the text valid.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InvalidUtf8> {
        // ASCII first: most text on the wire is (JSON feeds, chat), and for
        // short chunks `simdutf8` hands over to `std`'s validator, about a
        // hundred instructions for a 20-byte message against a dozen here.
        if self.pending_len == 0 && is_ascii(chunk) {
            return Ok(());
        }
        if self.pending_len > 0 {
            // Complete the cut-off code point with up to three new bytes.
            let have = self.pending_len as usize;
            let take = chunk.len().min(4 - have);
            let mut joined = self.pending;
            joined[have..have + take].copy_from_slice(&chunk[..take]);
            match simdutf8::compat::from_utf8(&joined[..have + take]) {
                Ok(_) => chunk = &chunk[take..],
                // The cut-off code point completed; whatever failed after it
                // is rescanned with the rest of the chunk below.
                Err(e) if e.valid_up_to() > 0 => chunk = &chunk[e.valid_up_to() - have..],
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    // Still a valid prefix: the chunk ended before the code point.
                    self.pending = joined;
                    self.pending_len = (have + take) as u8;
                    return Ok(());
                }
            }
            self.pending_len = 0;
        }
        match simdutf8::compat::from_utf8(chunk) {
            Ok(_) => Ok(()),
            Err(e) => match e.error_len() {
                Some(_) => Err(InvalidUtf8),
                None => {
                    let rest = &chunk[e.valid_up_to()..];
                    self.pending[..rest.len()].copy_from_slice(rest);
                    self.pending_len = rest.len() as u8;
                    Ok(())
                }
            },
        }
    }

    /// Ends the text: an error if it stops in the middle of a code point.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forgets any partial code point, ready for a new text.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }
}

/// Whether `text` is a whole, valid UTF-8 text: what a relay's fast lane
/// asks of every text frame it passes, thousands per read under server
/// push. Inlined there, with the ASCII test below, a short ASCII payload
/// costs a few loads instead of a validator's call.
#[inline]
pub(crate) fn is_whole_text(text: &[u8]) -> bool {
    is_ascii(text) || simdutf8::basic::from_utf8(text).is_ok()
}

/// Whether every byte is ASCII. Up to `SHORT` bytes: eight at a time,
/// the last eight read again where they overlap, so that a short message
/// needs no byte loop (`<[u8]>::is_ascii` aligns first and loops byte by
/// byte on what is left, which for a 20-byte message is most of its work);
/// longer ones go to `<[u8]>::is_ascii`, whose aligned loop is as fast.
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const SHORT: usize = 64;
    let word = |at: usize| {
        let eight: [u8; 8] = bytes[at..at + 8].try_into().expect("eight bytes");
        u64::from_ne_bytes(eight)
    };
    let len = bytes.len();
    if len > SHORT {
        return bytes.is_ascii();
    }
    if len < 8 {
        return bytes.iter().fold(0, |acc, &b| acc | b) < 0x80;
    }
    let mut seen = word(len - 8);
    let mut at = 0;
    while at + 8 <= len {
        seen |= word(at);
        at += 8;
    }
    seen & HIGH == 0
}

/// Bytes that are valid UTF-8: the payload of a text message, shared without
/// copying.
///
/// ```
/// use frameway_wire::Utf8Bytes;
/// let text = Utf8Bytes::from("héllo");
/// assert_eq!(text.as_str(), "héllo");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty text.
    pub const fn new() -> Self {
        Utf8Bytes(Bytes::new())
    }

    /// A text from a static string, without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes the caller has already validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(is_whole_text(&bytes));
        Utf8Bytes(bytes)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates (or receives validated) UTF-8,
        // and the bytes are immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying bytes, shared.
    pub(crate) fn as_shared(&self) -> &Bytes {
        &self.0
    }

    /// The underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl std::fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for Utf8Bytes {
    fn from(s: &String) -> Self {
        Utf8Bytes::from(s.as_str())
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Bytes) -> Result<Self, InvalidUtf8> {
        if !is_whole_text(&bytes) {
            return Err(InvalidUtf8);
        }
        Ok(Utf8Bytes(bytes))
    }
}

impl TryFrom<Vec<u8>> for Utf8Bytes {
    type Error = InvalidUtf8;
    fn try_from(bytes: Vec<u8>) -> Result<Self, InvalidUtf8> {
        Utf8Bytes::try_from(Bytes::from(bytes))
    }
}

impl From<Utf8Bytes> for Bytes {
    fn from(text: Utf8Bytes) -> Bytes {
        text.0
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ascii_test_finds_a_high_byte_at_any_place_in_any_length() {
        for len in 0..=80 {
            let ascii = vec![b'a'; len];
            assert!(is_ascii(&ascii), "{len} ASCII bytes");
            for at in 0..len {
                for high in [0x80, 0xc3, 0xff] {
                    let mut bytes = ascii.clone();
                    bytes[at] = high;
                    assert!(!is_ascii(&bytes), "{len} bytes, {high:#x} at {at}");
                }
            }
        }
        assert!(is_ascii(&(0..0x80).collect::<Vec<u8>>()));
    }

    #[test]
    fn a_whole_text_is_valid_utf8_with_no_code_point_cut() {
        assert!(is_whole_text(b""));
        assert!(is_whole_text("plain ascii, twenty!".as_bytes()));
        assert!(is_whole_text("caf\u{e9} \u{20ac} \u{1f600}".as_bytes()));
        assert!(!is_whole_text(&"\u{20ac}".as_bytes()[..2]));
        assert!(!is_whole_text(b"twenty bytes of text\xff"));
        assert!(!is_whole_text(b"\xed\xa0\x80"));
    }

    fn feed_split(data: &[u8], at: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &end in at.iter().chain(std::iter::once(&data.len())) {
            v.feed(&data[start..end])?;
            start = end;
        }
        v.finish()
    }

    #[test]
    fn every_split_of_valid_text_is_accepted() {
        let text = "κόσμε€𝄞 mixed ascii and 😀".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert!(feed_split(text, &[i, j]).is_ok(), "split {i} {j}");
            }
        }
        for i in 0..=text.len() {
            let mut v = Utf8Validator::new();
            for b in text {
                v.feed(std::slice::from_ref(b)).unwrap();
            }
            assert!(v.finish().is_ok(), "{i}");
        }
    }

    #[test]
    fn every_split_of_invalid_text_is_rejected() {
        let cases: [&[u8]; 6] = [
            b"abc\xffdef",
            b"\xed\xa0\x80",     // surrogate
            b"\xf4\x90\x80\x80", // above U+10FFFF
            b"\xc0\xaf",         // overlong
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"ok\xe2\x82", // truncated at the end
        ];
        for data in cases {
            for i in 0..=data.len() {
                for j in i..=data.len() {
                    assert!(feed_split(data, &[i, j]).is_err(), "{data:?} {i} {j}");
                }
            }
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        // Autobahn 6.4.x: the first invalid byte must fail even though the
        // frame has not finished.
        let mut v = Utf8Validator::new();
        v.feed("κόσμε".as_bytes()).unwrap();
        assert!(v.feed(b"\xf4\x90").is_err());

        let mut v = Utf8Validator::new();
        v.feed(b"\xf4").unwrap();
        assert!(v.feed(b"\x90").is_err());
    }
}
