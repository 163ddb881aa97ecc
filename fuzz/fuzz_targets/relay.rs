#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| frameway_fuzz_checks::relay::check(data));
