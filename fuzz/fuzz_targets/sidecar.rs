//! Fuzz: long-name sidecar checks never panic and only accept content matching the hash.
#![no_main]

use coffer::format::names::NameEncoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for enc in [NameEncoding::Base64Url, NameEncoding::Base32] {
        let _ = enc.check_sidecar("AAAA", data);
        let text = String::from_utf8_lossy(data);
        let hash = enc.long_hash(text.trim_end_matches('\n'));
        if let Ok(name) = enc.check_sidecar(&hash, data) {
            assert_eq!(enc.long_hash(&name), hash);
        }
    }
});
