//! Fuzz: decoding backing symlink targets (inline and `.link` sidecars) never panics and never
//! authenticates garbage.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use coffer::format::config::VaultParams;
use coffer::vault::{unlock, KdfCost, Vault};
use libfuzzer_sys::fuzz_target;

fn vault() -> &'static Vault {
    static V: OnceLock<(tempfile::TempDir, Vault)> = OnceLock::new();
    &V.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tempdir");
        unlock::init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).expect("init");
        let v = Vault::unlock(tmp.path(), None, b"pw", false).expect("unlock");
        (tmp, v)
    })
    .1
}

fuzz_target!(|data: &[u8]| {
    let v = vault();
    let root = v.root_dir().expect("root");
    let dir = v.cipherdir();
    let _ = std::fs::remove_file(dir.join("L"));
    let _ = std::fs::remove_file(dir.join("M"));
    let target: Vec<u8> = data.iter().copied().filter(|&b| b != 0).take(4095).collect();
    if !target.is_empty() && std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), dir.join("L")).is_ok() {
        assert!(v.readlink(&root, b"L").is_err());
    }
    std::os::unix::fs::symlink("coffer:link", dir.join("M")).expect("symlink");
    std::fs::write(dir.join("M.link"), data).expect("write");
    assert!(v.readlink(&root, b"M").is_err());
});
