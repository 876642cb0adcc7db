//! A vault whose newest key epoch has layout 3, mounted: files written through FUSE get file
//! header version 3 under that epoch and read back (after a remount too), fsck finds them clean,
//! and a mount with keys lacking their epoch answers EIO (FORMAT.md §15.3).

use crate::support::common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

use coffer::crypto::{KeySet, MasterKey};
use coffer::format::epochs::{EpochId, Layout};
use coffer::fs::{MountHandle, MountOptions};
use coffer::vault::fsck::fsck;
use coffer::vault::{unlock, EpochKeys, Vault, VaultKeys};
use common::{fuse_available, unmounted_vault, Watchdog, WATCHDOG};

const EPOCH: EpochId = EpochId([0xe0, 0xe1, 0xe2, 0xe3]);

/// CIPHERDIR opened with one layout-3 epoch `id` (key 0x5a..).
fn v3_vault(cipher: &Path, id: EpochId) -> Vault {
    let params = unlock::read_config(&unlock::config_path(cipher, None))
        .unwrap()
        .params();
    let keys = VaultKeys::from_epochs(vec![EpochKeys {
        id: Some(id),
        layout: Layout::V3,
        set: KeySet::derive_v3(&MasterKey::from_bytes([0x5a; 32])),
    }])
    .unwrap();
    Vault::open_with_keys(cipher, keys, params, false).unwrap()
}

/// Mounts `vault` at `mnt` with a watchdog; dropping the pair unmounts.
fn mount(vault: Vault, mnt: &Path) -> (MountHandle, Watchdog) {
    let h = coffer::fs::spawn(vault, mnt, &MountOptions::default()).expect("mount");
    let w = Watchdog::start(h.mountpoint().to_path_buf(), h.connection(), WATCHDOG);
    (h, w)
}

fn unmount((h, w): (MountHandle, Watchdog)) {
    h.unmount().expect("unmount");
    w.stop();
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)).collect()
}

/// The headers of the regular backing files directly in `cipher`.
fn backing_headers(cipher: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in fs::read_dir(cipher).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !e.file_type().unwrap().is_file() || name.starts_with("coffer.") || name.ends_with(".name") {
            continue;
        }
        let bytes = fs::read(e.path()).unwrap();
        if !bytes.is_empty() {
            out.push(bytes[..6].to_vec());
        }
    }
    out
}

#[test]
fn a_v3_vault_mounts_writes_version_3_files_and_reads_them_back() {
    if !fuse_available() {
        return;
    }
    let (_tmp, cipher, mnt) = unmounted_vault();
    let m = mount(v3_vault(&cipher, EPOCH), &mnt);
    let small = pattern(100, 1);
    let big = pattern(5 * 4096 + 333, 2);
    fs::write(mnt.join("small"), &small).unwrap();
    fs::write(mnt.join("big"), &big).unwrap();
    // Several sessions: an fsync between writes, an append, a truncate, a write past the end.
    let f = OpenOptions::new().read(true).write(true).open(mnt.join("big")).unwrap();
    f.write_all_at(b"first", 4096).unwrap();
    f.sync_all().unwrap();
    f.write_all_at(b"second", 3 * 4096 + 7).unwrap();
    f.sync_all().unwrap();
    let mut want = big.clone();
    want[4096..4101].copy_from_slice(b"first");
    want[3 * 4096 + 7..3 * 4096 + 13].copy_from_slice(b"second");
    f.set_len(4 * 4096 + 10).unwrap();
    want.truncate(4 * 4096 + 10);
    f.write_all_at(b"past", 7 * 4096).unwrap();
    want.resize(7 * 4096, 0);
    want.extend_from_slice(b"past");
    drop(f);
    let mut a = OpenOptions::new().append(true).open(mnt.join("small")).unwrap();
    a.write_all(b" and more").unwrap();
    drop(a);
    let small = [&small[..], b" and more"].concat();
    // Truncated to 0 and written again: a new file ID, still under the epoch.
    fs::write(mnt.join("again"), b"one").unwrap();
    fs::write(mnt.join("again"), b"two!").unwrap();
    assert_eq!(fs::read(mnt.join("big")).unwrap(), want);
    assert_eq!(fs::read(mnt.join("small")).unwrap(), small);
    assert_eq!(fs::read(mnt.join("again")).unwrap(), b"two!");
    unmount(m);

    let headers = backing_headers(&cipher);
    assert_eq!(headers.len(), 3, "{headers:?}");
    for h in &headers {
        assert_eq!(
            h[..],
            [0, 3, 0xe0, 0xe1, 0xe2, 0xe3],
            "header version 3 under the epoch"
        );
    }
    let report = fsck(&v3_vault(&cipher, EPOCH), false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    assert_eq!(report.files, 3);

    // Mounted again: the same bytes.
    let m = mount(v3_vault(&cipher, EPOCH), &mnt);
    assert_eq!(fs::read(mnt.join("big")).unwrap(), want);
    assert_eq!(fs::read(mnt.join("small")).unwrap(), small);
    unmount(m);

    // With the same key under another epoch ID, the names still decrypt but the files' epoch is
    // unknown: EIO.
    let m = mount(v3_vault(&cipher, EpochId([9, 9, 9, 9])), &mnt);
    let e = fs::read(mnt.join("big")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    unmount(m);
}
