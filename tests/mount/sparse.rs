//! A sparse file past 4 GiB: write at 5 GiB, read it back, read the hole, truncate — in bounded
//! time, with CIPHERDIR staying small on disk.

use crate::support::common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant};

use common::TestMount;

const GIB: u64 = 1 << 30;

/// Bytes actually allocated under `dir` (st_blocks), recursively.
fn allocated(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        total += m.blocks() * 512;
        if m.is_dir() {
            total += allocated(&e.path());
        }
    }
    total
}

#[test]
fn write_at_five_gib() {
    let Some(mut m) = TestMount::new() else { return };
    let start = Instant::now();
    let p = m.path("big-sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all_at(b"start", 0).unwrap();
    let off = 5 * GIB + 12_345;
    f.write_all_at(b"far away marker", off).unwrap();
    assert_eq!(f.metadata().unwrap().len(), off + 15);
    let mut back = [0u8; 15];
    f.read_exact_at(&mut back, off).unwrap();
    assert_eq!(&back, b"far away marker");
    // The hole: around 4 GiB (past u32 offsets) and just before the marker.
    for at in [4 * GIB - 10, 4 * GIB + 3, off - 5000] {
        let mut hole = vec![1u8; 4096];
        f.read_exact_at(&mut hole, at).unwrap();
        assert!(hole.iter().all(|&b| b == 0), "hole at {at} is not zeros");
    }
    drop(f);
    assert!(
        allocated(&m.cipher) < 4 << 20,
        "CIPHERDIR grew to {} bytes",
        allocated(&m.cipher)
    );
    m.remount();
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("big-sparse"))
        .unwrap();
    f.read_exact_at(&mut back, off).unwrap();
    assert_eq!(&back, b"far away marker");
    let mut head = [0u8; 5];
    f.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head, b"start");
    // Truncate into the hole, then below 4 GiB, then grow again.
    f.set_len(4 * GIB + 100).unwrap();
    assert_eq!(fs::metadata(m.path("big-sparse")).unwrap().len(), 4 * GIB + 100);
    let mut tail = [1u8; 100];
    f.read_exact_at(&mut tail, 4 * GIB).unwrap();
    assert!(tail.iter().all(|&b| b == 0));
    f.set_len(3 * GIB).unwrap();
    f.set_len(6 * GIB).unwrap();
    let mut z = [1u8; 64];
    f.read_exact_at(&mut z, 5 * GIB + 12_345).unwrap();
    assert!(z.iter().all(|&b| b == 0), "bytes past a truncation came back");
    drop(f);
    assert!(
        allocated(&m.cipher) < 4 << 20,
        "CIPHERDIR grew to {} bytes",
        allocated(&m.cipher)
    );
    let took = start.elapsed();
    assert!(took < Duration::from_secs(30), "sparse operations took {took:?}");
}
