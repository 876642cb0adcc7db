//! Fuzz: backing-name decoding and classification in both encodings, and plain_name on a real
//! vault, never panic and never decrypt garbage.
#![no_main]

use std::sync::OnceLock;

use coffer::format::backing_name::classify;
use coffer::format::config::VaultParams;
use coffer::format::names::{self, NameEncoding};
use coffer::vault::{unlock, KdfCost, Vault};
use libfuzzer_sys::fuzz_target;

fn vault() -> &'static Vault {
    static V: OnceLock<(tempfile::TempDir, Vault)> = OnceLock::new();
    &V.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        unlock::init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).expect("init");
        let v = Vault::unlock(tmp.path(), None, b"pw", true).expect("unlock");
        (tmp, v)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let _ = names::decode(data);
    for enc in [NameEncoding::Base64Url, NameEncoding::Base32] {
        if let Ok(raw) = enc.decode(data) {
            assert_eq!(enc.encode(&raw).as_bytes(), data);
        }
        let _ = classify(data, enc);
    }
    let v = vault();
    let root = v.root_dir().expect("root");
    if let Ok(Some(name)) = v.plain_name(&root, data) {
        panic!("garbage decrypted to {name:?}");
    }
});
