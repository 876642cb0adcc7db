//! Fuzz: CryptFile over arbitrary backing bytes — size, reads, seeks, verify, a write and a
//! truncate never panic, and a write that succeeds reads back.
#![no_main]

use std::os::unix::fs::FileExt;
use std::sync::{Arc, OnceLock};

use coffer::crypto::{KeySet, MasterKey};
use coffer::vault::CryptFile;
use libfuzzer_sys::fuzz_target;

fn keys() -> Arc<KeySet> {
    static K: OnceLock<Arc<KeySet>> = OnceLock::new();
    K.get_or_init(|| Arc::new(KeySet::derive(&MasterKey::from_bytes([0x5c; 32]), false)))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    // First 8 bytes steer the operations; the rest is the backing file.
    if data.len() < 8 {
        return;
    }
    let (ctl, body) = data.split_at(8);
    let tmp = tempfile::tempfile().expect("temp file");
    tmp.write_all_at(body, 0).expect("write");
    let f = CryptFile::new(tmp, keys(), "fuzz".into());
    let off = u64::from(u16::from_le_bytes([ctl[0], ctl[1]]));
    let len = usize::from(u16::from_le_bytes([ctl[2], ctl[3]]) % 9000);
    let _ = f.plain_len();
    let _ = f.verify_all();
    let mut buf = vec![0u8; len];
    let _ = f.read_at(&mut buf, off);
    let _ = f.seek_data_hole(off, true);
    let _ = f.seek_data_hole(off, false);
    let woff = u64::from(u16::from_le_bytes([ctl[4], ctl[5]]));
    let wdata = vec![ctl[6] | 1; usize::from(ctl[7]) * 40];
    if f.write_at(&wdata, woff).is_ok() && !wdata.is_empty() {
        let mut back = vec![0u8; wdata.len()];
        if f.read_at(&mut back, woff).is_ok() {
            assert_eq!(back, wdata);
        }
    }
    let _ = f.set_len(off);
    let _ = f.repair_tail();
});
