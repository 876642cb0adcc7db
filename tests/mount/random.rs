//! Randomized differential test: thousands of random operations applied to the mount and to a
//! plain directory, errnos compared op by op, then both trees compared byte for byte with
//! metadata. The seed is printed on failure; set COFFER_SEED to replay one, COFFER_OPS to change
//! the count.

use crate::support::common;
use crate::support::data::Rng;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{symlink, FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{errno, get_xattr, list_xattr, set_xattr, TestMount};

#[derive(Debug, Clone)]
enum Op {
    Write {
        path: PathBuf,
        off: u64,
        len: usize,
        byte: u8,
    },
    Truncate {
        path: PathBuf,
        len: u64,
    },
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    Link {
        from: PathBuf,
        to: PathBuf,
    },
    Unlink {
        path: PathBuf,
    },
    Mkdir {
        path: PathBuf,
    },
    Rmdir {
        path: PathBuf,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
    Symlink {
        target: String,
        path: PathBuf,
    },
    SetXattr {
        path: PathBuf,
        name: String,
        value: Vec<u8>,
    },
}

fn random_path(rng: &mut Rng) -> PathBuf {
    let long = "n".repeat(220);
    let names = ["a", "b", "c", "d", "e", long.as_str()];
    let depth = 1 + rng.below(3);
    let mut p = PathBuf::new();
    for _ in 0..depth {
        p.push(rng.pick(&names));
    }
    p
}

fn random_op(rng: &mut Rng) -> Op {
    let path = random_path(rng);
    match rng.below(20) {
        0..=5 => Op::Write {
            path,
            off: if rng.below(3) == 0 {
                rng.below(200_000)
            } else {
                rng.below(9000)
            },
            len: rng.below(10_000) as usize,
            byte: rng.below(256) as u8,
        },
        6 | 7 => Op::Truncate {
            path,
            len: rng.below(30_000),
        },
        8 | 9 => Op::Rename {
            from: path,
            to: random_path(rng),
        },
        10 => Op::Link {
            from: path,
            to: random_path(rng),
        },
        11 => Op::Unlink { path },
        12 | 13 => Op::Mkdir { path },
        14 => Op::Rmdir { path },
        15 => Op::Chmod {
            path,
            mode: *rng.pick(&[0o600, 0o644, 0o755, 0o700, 0o640, 0o4755]),
        },
        16 => Op::Symlink {
            target: format!("t{}", rng.below(1000)).repeat(1 + rng.below(3) as usize),
            path,
        },
        _ => Op::SetXattr {
            path,
            name: format!("user.k{}", rng.below(3)),
            value: (0..rng.below(64)).map(|i| i as u8).collect(),
        },
    }
}

fn apply(root: &Path, op: &Op) -> io::Result<()> {
    match op {
        Op::Write { path, off, len, byte } => {
            let f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(root.join(path))?;
            f.write_all_at(&vec![*byte; *len], *off)
        }
        Op::Truncate { path, len } => OpenOptions::new().write(true).open(root.join(path))?.set_len(*len),
        Op::Rename { from, to } => fs::rename(root.join(from), root.join(to)),
        Op::Link { from, to } => fs::hard_link(root.join(from), root.join(to)),
        Op::Unlink { path } => fs::remove_file(root.join(path)),
        Op::Mkdir { path } => fs::create_dir(root.join(path)),
        Op::Rmdir { path } => fs::remove_dir(root.join(path)),
        Op::Chmod { path, mode } => {
            let p = root.join(path);
            if fs::symlink_metadata(&p)?.file_type().is_symlink() {
                return Ok(());
            }
            fs::set_permissions(p, fs::Permissions::from_mode(*mode))
        }
        Op::Symlink { target, path } => symlink(target, root.join(path)),
        Op::SetXattr { path, name, value } => set_xattr(&root.join(path), name, value, 0),
    }
}

/// Everything compared about one entry.
#[derive(Debug, PartialEq)]
struct Snap {
    mode: u32,
    nlink: u64,
    uid: u32,
    gid: u32,
    size: u64,
    content: Option<Vec<u8>>,
    target: Option<PathBuf>,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn snapshot(root: &Path) -> BTreeMap<PathBuf, Snap> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for e in fs::read_dir(root.join(&rel)).unwrap() {
            let e = e.unwrap();
            let rel = rel.join(e.file_name());
            let p = root.join(&rel);
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let xattrs = if ft.is_symlink() {
                Vec::new()
            } else {
                list_xattr(&p)
                    .unwrap()
                    .into_iter()
                    .map(|n| (n.clone(), get_xattr(&p, &n).unwrap()))
                    .collect()
            };
            if ft.is_dir() {
                stack.push(rel.clone());
            }
            out.insert(
                rel,
                Snap {
                    mode: m.mode(),
                    nlink: m.nlink(),
                    uid: m.uid(),
                    gid: m.gid(),
                    size: if ft.is_dir() { 0 } else { m.len() },
                    content: ft.is_file().then(|| fs::read(&p).unwrap()),
                    target: ft.is_symlink().then(|| fs::read_link(&p).unwrap()),
                    xattrs,
                },
            );
        }
    }
    out
}

fn compare(mount: &Path, plain: &Path, seed: u64, after: usize) {
    let a = snapshot(mount);
    let b = snapshot(plain);
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "seed {seed}: trees differ in names after {after} ops");
    for (k, va) in &a {
        assert_eq!(
            Some(va),
            b.get(k),
            "seed {seed}: {} differs after {after} ops",
            k.display()
        );
    }
}

#[test]
fn random_ops_match_a_plain_directory() {
    let Some(m) = TestMount::new() else { return };
    let plain = tempfile::Builder::new().prefix("coffer-plain-").tempdir().unwrap();
    let seed = std::env::var("COFFER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let ops: usize = std::env::var("COFFER_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4000);
    eprintln!("mount_random: seed {seed} ({ops} ops); replay with COFFER_SEED={seed}");
    let mut rng = Rng::new(seed);
    let mut ok = 0;
    for i in 0..ops {
        let op = random_op(&mut rng);
        let a = apply(&m.mnt, &op);
        let b = apply(plain.path(), &op);
        assert_eq!(
            errno(&a),
            errno(&b),
            "seed {seed}: op {i} {op:?}: mount {a:?}, plain {b:?}"
        );
        ok += usize::from(a.is_ok());
        if (i + 1) % 1000 == 0 {
            compare(&m.mnt, plain.path(), seed, i + 1);
        }
    }
    compare(&m.mnt, plain.path(), seed, ops);
    assert!(
        ok > ops / 5,
        "seed {seed}: only {ok} of {ops} ops succeeded; the test is not exercising much"
    );
    // And the same tree after a remount (nothing lived only in the daemon).
    let mut m = m;
    m.remount();
    compare(&m.mnt, plain.path(), seed, ops);
}
