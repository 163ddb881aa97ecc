//! `utf8`: [`Utf8Validator`] against `std::str::from_utf8`, on every split.
//!
//! Asserts, after each chunk: the validator fails exactly when the bytes so
//! far contain a sequence no continuation can repair (it fails on the first
//! bad byte, and never on a code point merely cut off); at the end it
//! agrees with std. A validator reset mid-text then agrees again.

use frameway_wire::Utf8Validator;

use crate::Input;

/// The check; see the module documentation.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let splits = input.splits();
    let text = input.rest();
    let chunks = splits.chunks(text);

    let mut validator = Utf8Validator::new();
    let mut seen = 0;
    for chunk in &chunks {
        seen += chunk.len();
        let hopeless = std::str::from_utf8(&text[..seen]).is_err_and(|e| e.error_len().is_some());
        let fed = validator.feed(chunk);
        assert_eq!(
            fed.is_err(),
            hopeless,
            "after {seen} of {} bytes",
            text.len()
        );
        if fed.is_err() {
            return;
        }
    }
    let valid = std::str::from_utf8(text).is_ok();
    assert_eq!(validator.finish().is_ok(), valid);

    // A validator left mid-code-point by one text starts the next afresh.
    validator.feed(chunks[0]).ok();
    validator.reset();
    assert_eq!(
        validator
            .feed(text)
            .and_then(|()| validator.finish())
            .is_ok(),
        valid
    );
}
