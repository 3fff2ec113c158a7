#![no_main]
//! See README.md; the logic lives in `arca_fuzz::keyslot_from_bytes` (src/lib.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| arca_fuzz::keyslot_from_bytes(data));
