#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frameway_fuzz_checks::utf8::check(data));
