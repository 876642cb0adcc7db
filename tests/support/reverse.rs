//! Helpers for the reverse-mode tests: a plain test tree, a reverse mount with a watchdog and a
//! `Drop` that unmounts, a forward mount of a copy, rsync, and tree snapshots.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer::format::config::VaultParams;
use coffer::fs::{MountHandle, MountOptions};
use coffer::vault::reverse::{self, Excludes, ReverseVault};
use coffer::vault::{KdfCost, Vault};

use super::common::{run, Watchdog};
use super::data::bytes;

/// Password of every test config.
pub const PASSWORD: &[u8] = b"reverse test password";
/// A test still running after this is treated as hung.
pub const WATCHDOG: Duration = Duration::from_secs(120);

/// A 200-byte name (long in the vault).
pub fn long_name() -> Vec<u8> {
    let mut n = b"long-".to_vec();
    n.resize(200, b'n');
    n
}

/// Non-UTF-8 name.
pub const BINARY_NAME: &[u8] = b"bin-\xff\xfe-name";

fn p(base: &Path, rel: &[u8]) -> PathBuf {
    base.join(OsStr::from_bytes(rel))
}

/// Writes the test tree into `plain`.
pub fn build_tree(plain: &Path) {
    let files: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"empty".to_vec(), Vec::new()),
        (b"one".to_vec(), b"x".to_vec()),
        (b"block".to_vec(), bytes(1, 4096)),
        (b"block-plus-one".to_vec(), bytes(2, 4097)),
        (b"zeros".to_vec(), vec![0u8; 3 * 4096 + 7]),
        (b"big".to_vec(), bytes(3, 3 * 1024 * 1024 + 123)),
        (b"a/b/c/deep.txt".to_vec(), b"deep".to_vec()),
        (b"a/sibling".to_vec(), bytes(4, 10_000)),
        (long_name(), b"long name content".to_vec()),
        (BINARY_NAME.to_vec(), b"binary name content".to_vec()),
        ([b"a/".as_slice(), &long_name()].concat(), bytes(5, 5000)),
    ];
    for (rel, data) in files {
        let path = p(plain, &rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
    }
    std::fs::create_dir_all(plain.join("emptydir")).unwrap();
    std::os::unix::fs::symlink("a/b", plain.join("link")).unwrap();
    std::os::unix::fs::symlink("T".repeat(4000), plain.join("far-link")).unwrap();
    std::os::unix::fs::symlink("one", p(plain, &[b"ln-".as_slice(), &long_name()[3..]].concat())).unwrap();
}

/// Writes the reverse config into `plain` (cheap KDF).
pub fn init_plain(plain: &Path) {
    reverse::init(plain, None, PASSWORD, &VaultParams::default(), KdfCost::INSECURE_TEST).expect("init reverse");
}

/// A mount (reverse or forward) that unmounts on drop.
pub struct Mounted {
    handle: Option<MountHandle>,
    dog: Option<Watchdog>,
    /// The mountpoint.
    pub mnt: PathBuf,
}

impl Mounted {
    fn new(h: MountHandle) -> Mounted {
        let dog = Watchdog::start(h.mountpoint().to_path_buf(), h.connection(), WATCHDOG);
        Mounted {
            mnt: h.mountpoint().to_path_buf(),
            handle: Some(h),
            dog: Some(dog),
        }
    }

    /// `rel` inside the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mnt.join(rel)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = h.unmount() {
                eprintln!("unmount: {e}");
            }
        }
        if let Some(d) = self.dog.take() {
            d.stop();
        }
    }
}

/// Mounts the reverse view of `plain` at `mnt`.
pub fn mount_reverse(plain: &Path, mnt: &Path, excludes: &[&str]) -> Mounted {
    std::fs::create_dir_all(mnt).unwrap();
    let v = ReverseVault::unlock(plain, None, PASSWORD, Excludes::new(excludes).unwrap()).expect("unlock reverse");
    Mounted::new(coffer::fs::spawn(v, mnt, &MountOptions::default()).expect("reverse mount"))
}

/// Mounts a copy of the view forward, read-only.
pub fn mount_forward(copy: &Path, mnt: &Path) -> Mounted {
    std::fs::create_dir_all(mnt).unwrap();
    let v = Vault::unlock(copy, None, PASSWORD, true).expect("unlock copy");
    let opts = MountOptions {
        read_only: true,
        ..MountOptions::default()
    };
    Mounted::new(coffer::fs::spawn(v, mnt, &opts).expect("forward mount"))
}

/// `rsync -a --delete [extra] SRC/ DST/`; returns stdout.
pub fn rsync(src: &Path, dst: &Path, extra: &[&str]) -> String {
    let s = format!("{}/", src.display());
    let d = format!("{}/", dst.display());
    let mut args: Vec<&OsStr> = vec![OsStr::new("-a"), OsStr::new("--delete")];
    args.extend(extra.iter().map(OsStr::new));
    args.push(OsStr::new(&s));
    args.push(OsStr::new(&d));
    run(Path::new("."), "rsync", &args)
}

/// `diff -r --no-dereference A B`, ignoring the reverse config in the plain tree.
pub fn diff_tree(a: &Path, b: &Path) {
    run(
        Path::new("."),
        "diff",
        &[
            OsStr::new("-r"),
            OsStr::new("--no-dereference"),
            OsStr::new("-x"),
            OsStr::new(reverse::REVERSE_CONFIG_NAME),
            a.as_os_str(),
            b.as_os_str(),
        ],
    );
}

/// One object of a tree snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Obj {
    /// A directory.
    Dir,
    /// A file's bytes.
    File(Vec<u8>),
    /// A symlink's target.
    Link(Vec<u8>),
}

/// Every object under `root` by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Obj> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<Vec<u8>, Obj>) {
        for e in std::fs::read_dir(root.join(rel)).unwrap() {
            let e = e.unwrap();
            let r = rel.join(e.file_name());
            let t = e.file_type().unwrap();
            let key = r.as_os_str().as_bytes().to_vec();
            if t.is_symlink() {
                let target = std::fs::read_link(root.join(&r)).unwrap();
                out.insert(key, Obj::Link(target.as_os_str().as_bytes().to_vec()));
            } else if t.is_dir() {
                out.insert(key, Obj::Dir);
                walk(root, &r, out);
            } else {
                out.insert(key, Obj::File(std::fs::read(root.join(&r)).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// The cipher path (relative to the view's root) of plain path `rel`.
pub fn cipher_path(plain: &Path, rel: &[u8]) -> Vec<u8> {
    let v = ReverseVault::unlock(plain, None, PASSWORD, Excludes::default()).unwrap();
    let mut dir = v.root_dir().unwrap();
    let comps: Vec<&[u8]> = rel.split(|&c| c == b'/').collect();
    let mut out = Vec::new();
    for (i, c) in comps.iter().enumerate() {
        let name = v.cipher_name(&dir, c).unwrap();
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(&name.entry);
        if i + 1 < comps.len() {
            dir = v.open_child(&dir, c).unwrap();
        }
    }
    out
}

/// `rsync -a --delete SRC/ DST/` that may fail: (exit code, stderr).
pub fn rsync_status(src: &Path, dst: &Path) -> (i32, String) {
    let out = std::process::Command::new("rsync")
        .arg("-a")
        .arg("--delete")
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
        .expect("run rsync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A filesystem image mounted on a loop device (for reflink tests); unmounted on drop.
pub struct LoopFs {
    /// Where it is mounted.
    pub mnt: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    /// A fresh 300 MB filesystem made by `mkfs` (e.g. `mkfs.xfs`), or None (with a message
    /// saying why) where the tool or loop mounts are unavailable.
    pub fn new(mkfs: &str) -> Option<LoopFs> {
        let dir = tempfile::Builder::new().prefix("coffer-loop-").tempdir().unwrap();
        let img = dir.path().join("img");
        std::fs::File::create(&img).unwrap().set_len(300 << 20).unwrap();
        match std::process::Command::new(mkfs).arg("-q").arg(&img).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!("SKIPPED: {mkfs} failed: {}", String::from_utf8_lossy(&o.stderr).trim());
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED: {mkfs} is not available ({e}); scripts/test installs it");
                return None;
            }
        }
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let o = std::process::Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&img)
            .arg(&mnt)
            .output()
            .expect("run mount");
        if !o.status.success() {
            eprintln!(
                "SKIPPED: cannot loop-mount a {mkfs} image: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            return None;
        }
        Some(LoopFs { mnt, _dir: dir })
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let ok = std::process::Command::new("umount")
            .arg(&self.mnt)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}
