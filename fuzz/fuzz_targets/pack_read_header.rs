#![no_main]
//! See README.md; the logic lives in `arca_fuzz::pack_read_header` (src/lib.rs).

libfuzzer_sys::fuzz_target!(|data: &[u8]| arca_fuzz::pack_read_header(data));
