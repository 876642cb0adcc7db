//! Fuzz: recovery key parsing never panics; what it accepts has valid parameters.
#![no_main]

use coffer::format::recovery;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok((_, params)) = recovery::decode(&text) {
        assert!(params.validate().is_ok());
    }
});
