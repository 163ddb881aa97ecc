//! Structured values drawn from the fuzzer's raw bytes. Exhausted input
//! reads as zeros, so every byte string is a valid input and a corpus file
//! written by hand stays readable.

/// A cursor over the fuzzer's bytes.
///
/// ```
/// use frameway_fuzz_checks::Input;
/// // Two reads of one byte, then the rest.
/// let mut input = Input::new(&[2, 1, 1, b'a', b'b', b'c']);
/// let splits = input.splits();
/// assert_eq!(splits.chunks(input.rest()), [&b"a"[..], b"b", b"c"]);
/// ```
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    /// The next byte, or 0 once the input is used up.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next byte's low bit.
    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// One of `choices`, picked by the next byte.
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.byte()) % choices.len()]
    }

    /// A length-prefixed slice: one byte of length, then up to that many bytes.
    pub fn bytes(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte()).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        head
    }

    /// A read plan: one byte of count, then that many chunk sizes.
    pub fn splits(&mut self) -> Splits {
        let count = self.byte();
        Splits((0..count).map(|_| usize::from(self.byte())).collect())
    }

    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// How a byte stream is cut into reads: chunk sizes in order (0 is an
/// empty read), then whatever is left in one read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits(Vec<usize>);

impl Splits {
    /// `data` cut as planned; the chunks always concatenate to `data`.
    pub fn chunks<'d>(&self, mut data: &'d [u8]) -> Vec<&'d [u8]> {
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &size in &self.0 {
            let (chunk, rest) = data.split_at(size.min(data.len()));
            out.push(chunk);
            data = rest;
        }
        if !data.is_empty() || out.is_empty() {
            out.push(data);
        }
        out
    }
}
