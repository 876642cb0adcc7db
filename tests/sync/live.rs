//! A sync client changing CIPHERDIR under a live mount: backing files replaced (temp + rename)
//! or rewritten in place (rsync --inplace), deleted, new files and directories, a directory
//! that arrives before its diriv, a diriv conflict copy arriving late. Each change shows within
//! the 1 s entry/attribute TTL, no read mixes two versions, and the mount keeps working.

use crate::support::common;
use crate::support::sync as sync_util;

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{require_tool, wait_for, TestMount};
use sync_util::{names, replace_via_temp, Backing, SHOW_WITHIN};

/// A version of a file: `k` in every byte, 3 full blocks plus a tail whose length depends on k,
/// so that a read mixing two versions is seen in its bytes or its length.
fn version(k: u8) -> Vec<u8> {
    vec![k; 3 * 4096 + 100 * usize::from(k) + 1]
}

/// Whether `data` is exactly one whole version.
fn whole_version(data: &[u8]) -> Result<u8, String> {
    let Some(&k) = data.first() else {
        return Err("empty read".into());
    };
    if data.len() != version(k).len() {
        return Err(format!("length {} is not version {k}'s", data.len()));
    }
    if let Some(p) = data.iter().position(|&b| b != k) {
        return Err(format!("version {k} with byte {} at {p}", data[p]));
    }
    Ok(k)
}

/// Backing bytes of each version, written through the mount under scratch names and removed.
fn backing_versions(m: &TestMount, b: &Backing, n: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|k| {
            let name = format!("scratch-{k}");
            fs::write(m.path(&name), version(k)).unwrap();
            let bytes = fs::read(b.path("", &name)).unwrap();
            fs::remove_file(m.path(&name)).unwrap();
            bytes
        })
        .collect()
}

#[test]
fn external_changes_show_within_the_ttl() {
    let Some(m) = TestMount::apart() else { return };
    require_tool("rsync");
    let b = Backing::open(&m.cipher);
    let v = backing_versions(&m, &b, 4);
    fs::write(m.path("replaced"), version(0)).unwrap();
    fs::write(m.path("inplace"), version(0)).unwrap();
    fs::write(m.path("deleted"), b"bye").unwrap();
    fs::create_dir(m.path("dir")).unwrap();
    // The kernel now caches all of these (entries, attributes, pages).
    for n in ["replaced", "inplace", "deleted"] {
        fs::read(m.path(n)).unwrap();
    }
    assert_eq!(names(&m.mnt), vec!["deleted", "dir", "inplace", "replaced"]);

    // Temp file + rename, as Syncthing, Dropbox and Nextcloud deliver a file.
    replace_via_temp(&v[1], &b.path("", "replaced"));
    let t = wait_for(SHOW_WITHIN, "replaced file", || {
        fs::read(m.path("replaced")).is_ok_and(|d| d == version(1))
    });
    eprintln!("replace (temp + rename) seen after {t:?}");

    // rsync --inplace of another coffer file's bytes (another file ID, another size).
    let src = m.cipher.parent().unwrap().join("other-version");
    fs::write(&src, &v[3]).unwrap();
    common::run(
        &m.cipher,
        "rsync",
        &[
            "--inplace",
            "--no-whole-file",
            src.to_str().unwrap(),
            b.path("", "inplace").to_str().unwrap(),
        ],
    );
    let t = wait_for(SHOW_WITHIN, "in-place rewrite", || {
        fs::read(m.path("inplace")).is_ok_and(|d| d == version(3))
    });
    eprintln!("in-place rewrite seen after {t:?}");
    assert_eq!(fs::metadata(m.path("inplace")).unwrap().len(), version(3).len() as u64);

    // Deleted by the client.
    fs::remove_file(b.path("", "deleted")).unwrap();
    let t = wait_for(SHOW_WITHIN, "deletion", || {
        fs::metadata(m.path("deleted")).is_err() && !names(&m.mnt).contains(&"deleted".to_string())
    });
    eprintln!("deletion seen after {t:?}");

    // New files and directories from the other replica (written by its coffer).
    let root = b.vault.root_dir().unwrap();
    let (f, _) = b.vault.create_file(&root, b"arrived.txt", 0o644).unwrap();
    f.write_at(b"from the other side", 0).unwrap();
    let nd = b.vault.mkdir(&root, b"new-dir", 0o755).unwrap();
    drop(nd);
    let sub = b.vault.open_dir_path(b"new-dir").unwrap();
    let (f, _) = b.vault.create_file(&sub, b"deep.txt", 0o644).unwrap();
    f.write_at(b"deep", 0).unwrap();
    let d = b.vault.open_dir_path(b"dir").unwrap();
    let (f, _) = b.vault.create_file(&d, b"in-old-dir", 0o644).unwrap();
    f.write_at(b"x", 0).unwrap();
    // A cached listing may show new names a moment after a lookup finds them (the watch
    // passes the change on in tens of milliseconds): both within the bound.
    let t = wait_for(SHOW_WITHIN, "new entries", || {
        fs::read(m.path("arrived.txt")).is_ok_and(|d| d == b"from the other side")
            && fs::read(m.path("new-dir/deep.txt")).is_ok_and(|d| d == b"deep")
            && names(&m.path("dir")) == vec!["in-old-dir"]
            && names(&m.mnt) == vec!["arrived.txt", "dir", "inplace", "new-dir", "replaced"]
    });
    eprintln!("new files and directories seen after {t:?}");

    // A directory deleted by the client.
    let nd_path = b.path("", "new-dir");
    fs::remove_dir_all(&nd_path).unwrap();
    wait_for(SHOW_WITHIN, "deleted directory", || {
        fs::metadata(m.path("new-dir")).is_err()
    });
    // The mount still works for writes.
    fs::write(m.path("after.txt"), b"ok").unwrap();
    assert_eq!(fs::read(m.path("after.txt")).unwrap(), b"ok");
}

#[test]
fn reader_sees_whole_versions_during_50_replacements() {
    let Some(m) = TestMount::apart() else { return };
    let b = Backing::open(&m.cipher);
    let v = backing_versions(&m, &b, 50);
    fs::write(m.path("hot"), version(0)).unwrap();
    let target = b.path("", "hot");
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..2 {
        let stop = stop.clone();
        let path = m.path("hot");
        readers.push(std::thread::spawn(move || {
            let (mut ok, mut errors) = (0u32, Vec::new());
            let mut seen = std::collections::BTreeSet::new();
            while !stop.load(Ordering::Relaxed) {
                // Reader 0 reads whole files; reader 1 reads in small pieces through one handle.
                let data = if r == 0 {
                    fs::read(&path)
                } else {
                    fs::File::open(&path).and_then(|mut f| {
                        let mut out = Vec::new();
                        let mut buf = [0u8; 1000];
                        loop {
                            let n = f.read(&mut buf)?;
                            if n == 0 {
                                break Ok(out);
                            }
                            out.extend_from_slice(&buf[..n]);
                            std::thread::sleep(Duration::from_micros(200));
                        }
                    })
                };
                match data {
                    Ok(d) => match whole_version(&d) {
                        Ok(k) => {
                            ok += 1;
                            seen.insert(k);
                        }
                        Err(e) => panic!("reader {r}: a read mixed versions: {e}"),
                    },
                    Err(e) => errors.push(e.raw_os_error().unwrap_or(-1)),
                }
            }
            (ok, errors, seen)
        }));
    }
    for data in v.iter().skip(1) {
        replace_via_temp(data, &target);
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for (r, h) in readers.into_iter().enumerate() {
        let (ok, errors, seen) = h.join().unwrap();
        eprintln!(
            "reader {r}: {ok} whole reads of {} versions, errors {errors:?}",
            seen.len()
        );
        assert!(ok > 20, "reader {r} made too few reads: {ok}");
        assert!(errors.is_empty(), "reader {r}: errors {errors:?}");
    }
    wait_for(SHOW_WITHIN, "last version", || {
        fs::read(m.path("hot")).is_ok_and(|d| d == version(49))
    });
}

#[test]
fn in_place_rewrites_give_whole_versions_or_eio() {
    let Some(m) = TestMount::apart() else { return };
    let b = Backing::open(&m.cipher);
    let v = backing_versions(&m, &b, 20);
    fs::write(m.path("hot"), version(0)).unwrap();
    let target = b.path("", "hot");
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        let path = m.path("hot");
        std::thread::spawn(move || {
            let (mut ok, mut eio) = (0u32, 0u32);
            while !stop.load(Ordering::Relaxed) {
                match fs::read(&path) {
                    Ok(d) => match whole_version(&d) {
                        Ok(_) => ok += 1,
                        // The kernel's cached size may lag an in-place size change by the
                        // attribute TTL: a read cut to the old length is the one other outcome.
                        Err(e) if d.iter().all(|&x| x == d[0]) => {
                            eprintln!("short read during in-place rewrite: {e}");
                            ok += 1;
                        }
                        Err(e) => panic!("a read mixed versions: {e}"),
                    },
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => eio += 1,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            (ok, eio)
        })
    };
    // Rewrite in place, front to back, as rsync --inplace does (each version has its own
    // file ID, so a block of one never authenticates inside another).
    for data in v.iter().skip(1) {
        let f = fs::OpenOptions::new().write(true).open(&target).unwrap();
        for (i, chunk) in data.chunks(4128).enumerate() {
            f.write_all_at(chunk, (i * 4128) as u64).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        f.set_len(data.len() as u64).unwrap();
        drop(f);
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, eio) = reader.join().unwrap();
    eprintln!("in-place rewrites: {ok} whole reads, {eio} EIO");
    assert!(ok > 5, "too few whole reads: {ok}");
    wait_for(SHOW_WITHIN, "last version", || {
        fs::read(m.path("hot")).is_ok_and(|d| d == version(19))
    });
}

#[test]
fn directory_arriving_before_its_diriv() {
    let Some(m) = TestMount::apart() else { return };
    let b = Backing::open(&m.cipher);
    // The other replica made "late" with a file in it; the client delivers the directory and
    // the file first, the diriv last.
    let root = b.vault.root_dir().unwrap();
    b.vault.mkdir(&root, b"late", 0o755).unwrap();
    let d = b.vault.open_dir_path(b"late").unwrap();
    let (f, _) = b.vault.create_file(&d, b"inside.txt", 0o644).unwrap();
    f.write_at(b"inside", 0).unwrap();
    let late = b.dir("late");
    let parked = m.cipher.parent().unwrap().join("parked-diriv");
    fs::rename(late.join("coffer.diriv"), &parked).unwrap();

    assert_eq!(names(&m.mnt), vec!["late"]);
    // With the kernel cache on, the kernel opens directories itself: the error comes with
    // the first read of the listing instead of the open.
    let e = fs::read_dir(m.path("late"))
        .and_then(|mut it| it.next().transpose())
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "listing: {e}");
    let e = fs::write(m.path("late/new.txt"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "create: {e}");
    let e = fs::create_dir(m.path("late/sub")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "mkdir: {e}");
    assert!(!late.join("coffer.diriv").exists(), "no second diriv written");
    let mut backing: Vec<_> = fs::read_dir(&late).unwrap().map(|e| e.unwrap().file_name()).collect();
    backing.sort();
    assert_eq!(backing.len(), 1, "nothing written into the directory: {backing:?}");

    // The diriv arrives (temp + rename, as a client delivers it).
    replace_via_temp(&fs::read(&parked).unwrap(), &late.join("coffer.diriv"));
    let t = wait_for(SHOW_WITHIN, "entries once the diriv arrived", || {
        fs::read_dir(m.path("late")).is_ok() && names(&m.path("late")) == vec!["inside.txt"]
    });
    eprintln!("entries shown {t:?} after the diriv arrived");
    assert_eq!(fs::read(m.path("late/inside.txt")).unwrap(), b"inside");
    fs::write(m.path("late/new.txt"), b"x").unwrap();
    assert_eq!(names(&m.path("late")), vec!["inside.txt", "new.txt"]);
}

#[test]
fn diriv_conflict_arriving_under_a_live_mount() {
    let Some(m) = TestMount::apart() else { return };
    let b = Backing::open(&m.cipher);
    fs::create_dir(m.path("shared")).unwrap();
    fs::write(m.path("shared/from-a.txt"), b"A").unwrap();
    assert_eq!(names(&m.path("shared")), vec!["from-a.txt"]);
    let dir = b.dir("shared");
    let iv_a = fs::read(dir.join("coffer.diriv")).unwrap();
    let iv_b = [0x5b_u8; 16];
    // Replica B made "shared" too, under its own IV, with from-b.txt and its own same.txt.
    let name_b = |plain: &[u8]| {
        let c = coffer::vault::cipher_name_for(&b.vault.keys(), b.vault.params(), &iv_b, plain).unwrap();
        dir.join(std::ffi::OsStr::from_bytes(&c.entry))
    };
    fs::write(m.path("shared/same.txt"), b"same from A").unwrap();
    let content = |text: &[u8]| {
        fs::write(m.path("scratch"), text).unwrap();
        let bytes = fs::read(b.path("", "scratch")).unwrap();
        fs::remove_file(m.path("scratch")).unwrap();
        bytes
    };
    let from_b = content(b"B");
    let same_b = content(b"same from B");
    // Syncthing's resolution: B's diriv won (newer), A's became the conflict copy, and B's
    // entries arrived. The mount has the directory open with A's IV.
    replace_via_temp(&from_b, &name_b(b"from-b.txt"));
    replace_via_temp(&same_b, &name_b(b"same.txt"));
    fs::write(dir.join("coffer.sync-conflict-20261125-101010-AAAAAAA.diriv"), &iv_a).unwrap();
    replace_via_temp(&iv_b, &dir.join("coffer.diriv"));

    let want = vec!["from-a.txt", "from-b.txt", "same (coffer duplicate 1).txt", "same.txt"];
    let t = wait_for(SHOW_WITHIN, "entries under both IVs", || {
        names(&m.path("shared")) == want
    });
    eprintln!("diriv conflict seen after {t:?}");
    assert_eq!(fs::read(m.path("shared/from-a.txt")).unwrap(), b"A");
    assert_eq!(fs::read(m.path("shared/from-b.txt")).unwrap(), b"B");
    let mut same = vec![
        fs::read(m.path("shared/same.txt")).unwrap(),
        fs::read(m.path("shared/same (coffer duplicate 1).txt")).unwrap(),
    ];
    same.sort();
    assert_eq!(same, vec![b"same from A".to_vec(), b"same from B".to_vec()]);
    // The rule for new names: the IV in coffer.diriv (the one the client kept on every replica).
    fs::write(m.path("shared/new.txt"), b"new").unwrap();
    assert!(
        name_b(b"new.txt").exists(),
        "new names are encrypted under coffer.diriv's IV"
    );
}
