//! Receive limits chosen by the input: small ones, so that the fuzzer
//! reaches every limit with a few hundred bytes, and the defaults.

use frameway_wire::Limits;

use crate::Input;

/// Limits picked by the next three bytes.
pub fn limits(input: &mut Input<'_>) -> Limits {
    let frame = input.pick(&[0, 1, 125, 126, 1000, 65_536, Limits::DEFAULT.max_frame_len]);
    let message = input.pick(&[
        0,
        1,
        200,
        4096,
        65_536,
        1 << 20,
        Limits::DEFAULT.max_message_len,
    ]);
    let fragments = input.pick(&[1, 2, 3, 16, Limits::DEFAULT.max_fragments]);
    Limits::default()
        .with_max_frame_len(frame)
        .with_max_message_len(message)
        .with_max_fragments(fragments)
}
