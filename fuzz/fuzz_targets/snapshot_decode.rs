#![no_main]
//! See README.md; the logic lives in `arca_fuzz::snapshot_decode` (src/lib.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| arca_fuzz::snapshot_decode(data));
