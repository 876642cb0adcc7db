//! Fuzz: file header decoding never panics and round-trips what it accepts.
#![no_main]

use coffer::format::header::FileHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = FileHeader::decode(data) {
        assert_eq!(&h.encode()[..], &data[..18]);
    }
});
