//! Crash-state simulation at the storage layer (in the style of ALICE / CrashMonkey): records
//! the backing-file-system operations a process makes under one directory (`strace -f -y -xx`),
//! turns them into a log of writes, truncates, creates, renames, links, unlinks, mkdirs and
//! fsyncs, and rebuilds the directory as it would be after a crash at any point of the log:
//! either with everything up to that point (a process crash) or with the file data that was not
//! fsync'ed yet dropped (a power loss on a file system that keeps metadata operations in order).
//! Scenario code marks its progress with `marker` (a failing `stat` of a fixed path).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The path prefix of markers.
pub const MARKER: &str = "/coffer-crash-marker/";

/// Emits a marker into the trace (a `stat` that fails; strace records its path).
pub fn marker(text: &str) {
    let _ = std::fs::symlink_metadata(format!("{MARKER}{text}"));
}

/// One recorded operation; paths are relative to the traced root ("" is the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Data written at an offset.
    Write { path: String, off: u64, data: Vec<u8> },
    /// Size set.
    Truncate { path: String, len: u64 },
    /// A file created (if it did not exist).
    Create { path: String },
    /// A directory made.
    Mkdir { path: String },
    /// A directory removed.
    Rmdir { path: String },
    /// A name removed.
    Unlink { path: String },
    /// A rename (flags of renameat2: 1 = NOREPLACE, 2 = EXCHANGE).
    Rename { from: String, to: String, flags: u32 },
    /// A symlink made.
    Symlink { target: Vec<u8>, path: String },
    /// A hard link made.
    Link { from: String, to: String },
    /// fsync / fdatasync of the object at `path`.
    Fsync { path: String },
    /// sync / syncfs.
    SyncAll,
    /// A scenario marker.
    Marker(String),
}

const TRACED: &str =
    "openat,open,creat,close,write,pwrite64,writev,pwritev,pwritev2,lseek,dup2,dup3,ftruncate,truncate,\
fsync,fdatasync,sync,syncfs,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,rmdir,symlink,symlinkat,\
link,linkat,statx,newfstatat,stat,lstat";

/// Runs `cmd` under strace and returns the operations it made under `root`.
pub fn record(root: &Path, cmd: Command, scratch: &Path) -> Vec<Op> {
    let trace = scratch.join("trace.txt");
    let prog = cmd.get_program().to_os_string();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_os_string()).collect();
    let envs: Vec<_> = cmd
        .get_envs()
        .map(|(k, v)| (k.to_os_string(), v.map(|v| v.to_os_string())))
        .collect();
    let mut st = Command::new("strace");
    st.args(["-f", "-qq", "-y", "-xx", "-s", "16777216", "-e"])
        .arg(format!("trace={TRACED}"))
        .arg("-o")
        .arg(&trace)
        .arg(prog)
        .args(args);
    if let Some(d) = cmd.get_current_dir() {
        st.current_dir(d);
    }
    for (k, v) in envs {
        match v {
            Some(v) => st.env(k, v),
            None => st.env_remove(k),
        };
    }
    let out = st.output().expect("run strace");
    assert!(
        out.status.success(),
        "traced child failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&trace).unwrap();
    parse(&text, root)
}

/// Decodes a `"\x41\x42"` string (or a bare `\x..` run) into bytes.
fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim().trim_start_matches('"');
    let s = s.split('"').next().unwrap_or("");
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len() / 4);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1] == b'x' {
            let h = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(h, 16).unwrap());
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Splits strace arguments at top-level commas.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' | '[' | '(' | '<' if !quoted => depth += 1,
            '}' | ']' | ')' | '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() {
        out.push(s[start..].trim());
    }
    out
}

/// `3<\x2f...>` or `AT_FDCWD<...>` → (fd number if any, path).
fn fd_path(s: &str) -> (Option<i64>, Option<PathBuf>) {
    let (num, rest) = match s.find('<') {
        Some(i) => (&s[..i], Some(&s[i + 1..s.len() - 1])),
        None => (s, None),
    };
    let path = rest.map(|r| {
        let mut p = unhex(r);
        if p.ends_with(b" (deleted)") {
            p.truncate(p.len() - 10);
        }
        PathBuf::from(std::ffi::OsStr::from_bytes(&p))
    });
    (num.trim().parse().ok(), path)
}

struct Parser<'a> {
    root: &'a Path,
    pos: HashMap<i64, u64>,
    ops: Vec<Op>,
}

impl Parser<'_> {
    fn rel(&self, p: &Path) -> Option<String> {
        let r = p.strip_prefix(self.root).ok()?;
        Some(String::from_utf8_lossy(r.as_os_str().as_bytes()).into_owned())
    }

    /// Path of `name` relative to directory fd argument `dirfd` (absolute names win).
    fn at(&self, dirfd: &str, name: &str) -> Option<String> {
        let n = PathBuf::from(std::ffi::OsStr::from_bytes(&unhex(name)));
        let full = if n.is_absolute() { n } else { fd_path(dirfd).1?.join(n) };
        self.rel(&full)
    }

    fn fd_rel(&self, fd: &str) -> Option<String> {
        self.rel(&fd_path(fd).1?)
    }

    fn write(&mut self, fd: &str, off: Option<u64>, data: Vec<u8>, ret: u64) {
        let num = fd_path(fd).0.unwrap_or(-1);
        let explicit = off.is_some();
        let off = off.unwrap_or_else(|| self.pos.get(&num).copied().unwrap_or(0));
        if off.checked_add(ret).is_some() && fd_path(fd).1.is_some() {
            if let Some(path) = self.fd_rel(fd) {
                let mut data = data;
                data.truncate(ret as usize);
                self.ops.push(Op::Write { path, off, data });
            }
        }
        // pwrite leaves the file position alone; write moves it (also on an fd whose open was
        // not seen, e.g. one dup2'ed from another).
        if !explicit {
            self.pos.insert(num, off + ret);
        }
    }

    fn iov(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for part in s.split("iov_base=").skip(1) {
            out.extend(unhex(part));
        }
        out
    }

    fn line(&mut self, name: &str, args: &str, ret: &str) {
        let a = split_args(args);
        let ok = !ret.starts_with('-');
        let retn: u64 = ret.split(['<', ' ']).next().and_then(|r| r.parse().ok()).unwrap_or(0);
        let arg = |i: usize| a.get(i).copied().unwrap_or("");
        if matches!(name, "statx" | "newfstatat" | "stat" | "lstat") {
            let path = if name == "stat" || name == "lstat" {
                arg(0)
            } else {
                arg(1)
            };
            let p = unhex(path);
            if let Some(m) = p.strip_prefix(MARKER.as_bytes()) {
                self.ops.push(Op::Marker(String::from_utf8_lossy(m).into_owned()));
            }
            return;
        }
        if !ok {
            return;
        }
        let push = |ops: &mut Vec<Op>, op: Option<Op>| ops.extend(op);
        match name {
            "openat" | "open" | "creat" => {
                let (flags, path_i) = match name {
                    "openat" => (arg(2), 1),
                    "open" => (arg(1), 0),
                    _ => ("O_CREAT|O_TRUNC", 0),
                };
                let (fd, opened) = fd_path(ret);
                if let Some(fd) = fd {
                    self.pos.insert(fd, 0);
                }
                let rel = opened
                    .and_then(|p| self.rel(&p))
                    .or_else(|| self.at(arg(0), arg(path_i)));
                if let Some(path) = rel {
                    if flags.contains("O_CREAT") {
                        self.ops.push(Op::Create { path: path.clone() });
                    }
                    if flags.contains("O_TRUNC") {
                        self.ops.push(Op::Truncate { path, len: 0 });
                    }
                }
            }
            "close" => {
                if let Some(fd) = fd_path(arg(0)).0 {
                    self.pos.remove(&fd);
                }
            }
            "dup2" | "dup3" => {
                // The new fd shares the old one's file position.
                if let (Some(old), Some(new)) = (fd_path(arg(0)).0, fd_path(ret).0) {
                    let p = self.pos.get(&old).copied().unwrap_or(0);
                    self.pos.insert(new, p);
                }
            }
            "lseek" => {
                if let Some(fd) = fd_path(arg(0)).0 {
                    self.pos.insert(fd, retn);
                }
            }
            "write" => self.write(arg(0), None, unhex(arg(1)), retn),
            "pwrite64" => self.write(arg(0), arg(3).parse().ok(), unhex(arg(1)), retn),
            "writev" => self.write(arg(0), None, Self::iov(arg(1)), retn),
            "pwritev" | "pwritev2" => self.write(arg(0), arg(3).parse().ok(), Self::iov(arg(1)), retn),
            "ftruncate" => {
                let op = self.fd_rel(arg(0)).map(|path| Op::Truncate {
                    path,
                    len: arg(1).parse().unwrap_or(0),
                });
                push(&mut self.ops, op);
            }
            "truncate" => {
                let op = self.at("", arg(0)).map(|path| Op::Truncate {
                    path,
                    len: arg(1).parse().unwrap_or(0),
                });
                push(&mut self.ops, op);
            }
            "fsync" | "fdatasync" => {
                let op = self.fd_rel(arg(0)).map(|path| Op::Fsync { path });
                push(&mut self.ops, op);
            }
            "sync" | "syncfs" => self.ops.push(Op::SyncAll),
            "rename" | "renameat" | "renameat2" => {
                let (from, to, flags) = if name == "rename" {
                    (self.at("", arg(0)), self.at("", arg(1)), 0)
                } else {
                    let f = arg(4);
                    let flags =
                        u32::from(f.contains("RENAME_NOREPLACE")) | (u32::from(f.contains("RENAME_EXCHANGE")) << 1);
                    (self.at(arg(0), arg(1)), self.at(arg(2), arg(3)), flags)
                };
                if let (Some(from), Some(to)) = (from, to) {
                    self.ops.push(Op::Rename { from, to, flags });
                }
            }
            "unlink" | "unlinkat" | "rmdir" => {
                let (path, dir) = match name {
                    "unlinkat" => (self.at(arg(0), arg(1)), arg(2).contains("AT_REMOVEDIR")),
                    "rmdir" => (self.at("", arg(0)), true),
                    _ => (self.at("", arg(0)), false),
                };
                let op = path.map(|path| if dir { Op::Rmdir { path } } else { Op::Unlink { path } });
                push(&mut self.ops, op);
            }
            "mkdir" | "mkdirat" => {
                let path = if name == "mkdir" {
                    self.at("", arg(0))
                } else {
                    self.at(arg(0), arg(1))
                };
                push(&mut self.ops, path.map(|path| Op::Mkdir { path }));
            }
            "symlink" | "symlinkat" => {
                let target = unhex(arg(0));
                let path = if name == "symlink" {
                    self.at("", arg(1))
                } else {
                    self.at(arg(1), arg(2))
                };
                push(&mut self.ops, path.map(|path| Op::Symlink { target, path }));
            }
            "link" | "linkat" => {
                let (from, to) = if name == "link" {
                    (self.at("", arg(0)), self.at("", arg(1)))
                } else {
                    (self.at(arg(0), arg(1)), self.at(arg(2), arg(3)))
                };
                if let (Some(from), Some(to)) = (from, to) {
                    self.ops.push(Op::Link { from, to });
                }
            }
            _ => {}
        }
    }
}

/// Parses an `strace -f -y -xx -o FILE` trace into the operations made under `root`.
pub fn parse(text: &str, root: &Path) -> Vec<Op> {
    let mut p = Parser {
        root,
        pos: HashMap::new(),
        ops: Vec::new(),
    };
    let mut pending: HashMap<String, String> = HashMap::new();
    for raw in text.lines() {
        let (pid, line) = match raw.split_once(' ') {
            Some((a, b)) if a.chars().all(|c| c.is_ascii_digit()) => (a.to_string(), b.trim_start()),
            _ => (String::new(), raw),
        };
        if line.starts_with("+++") || line.starts_with("---") {
            continue;
        }
        let full = if let Some(pre) = line.strip_suffix(" <unfinished ...>") {
            pending.insert(pid, pre.to_string());
            continue;
        } else if line.starts_with("<... ") {
            let rest = line.split_once("resumed>").map_or("", |(_, r)| r);
            match pending.remove(&pid) {
                Some(pre) => pre + rest,
                None => continue,
            }
        } else {
            line.to_string()
        };
        let Some(open) = full.find('(') else { continue };
        let Some(eq) = full.rfind(") = ") else { continue };
        if eq < open {
            continue;
        }
        let name = &full[..open];
        p.line(name, &full[open + 1..eq], full[eq + 4..].trim());
    }
    p.ops
}

/// One file's contents: everything written, and what the last fsync made durable.
#[derive(Debug, Clone, Default)]
struct Inode {
    cur: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Debug, Clone)]
enum Node {
    File(usize),
    Dir,
    Symlink(Vec<u8>),
}

/// A directory tree as the file system would hold it.
#[derive(Debug, Clone, Default)]
pub struct Model {
    entries: BTreeMap<String, Node>,
    inodes: Vec<Inode>,
}

/// Which crash state to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Every operation so far reached the disk (a process crash).
    All,
    /// Metadata operations in order, but file data only as of each file's last fsync.
    SyncedData,
}

impl Model {
    /// Loads a directory tree (every file counts as durable).
    pub fn load(root: &Path) -> Model {
        let mut m = Model::default();
        m.load_dir(root, "");
        m
    }

    fn load_dir(&mut self, dir: &Path, rel: &str) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let ft = e.file_type().unwrap();
            if ft.is_symlink() {
                let t = std::fs::read_link(e.path()).unwrap();
                self.entries.insert(r, Node::Symlink(t.as_os_str().as_bytes().to_vec()));
            } else if ft.is_dir() {
                self.entries.insert(r.clone(), Node::Dir);
                self.load_dir(&e.path(), &r);
            } else {
                let data = std::fs::read(e.path()).unwrap();
                self.inodes.push(Inode {
                    cur: data.clone(),
                    synced: data,
                });
                self.entries.insert(r, Node::File(self.inodes.len() - 1));
            }
        }
    }

    fn inode(&mut self, path: &str) -> Option<&mut Inode> {
        match self.entries.get(path) {
            Some(Node::File(i)) => self.inodes.get_mut(*i),
            _ => None,
        }
    }

    fn subtree(&self, path: &str) -> Vec<String> {
        let pre = format!("{path}/");
        self.entries
            .keys()
            .filter(|k| *k == path || k.starts_with(&pre))
            .cloned()
            .collect()
    }

    fn take_subtree(&mut self, path: &str) -> Vec<(String, Node)> {
        let keys = self.subtree(path);
        keys.into_iter()
            .filter_map(|k| {
                let n = self.entries.remove(&k)?;
                Some((k[path.len()..].to_string(), n))
            })
            .collect()
    }

    fn put_subtree(&mut self, path: &str, nodes: Vec<(String, Node)>) {
        for (suffix, n) in nodes {
            self.entries.insert(format!("{path}{suffix}"), n);
        }
    }

    /// Applies one operation.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { path, off, data } => {
                if let Some(ino) = self.inode(path) {
                    let end = *off as usize + data.len();
                    if ino.cur.len() < end {
                        ino.cur.resize(end, 0);
                    }
                    ino.cur[*off as usize..end].copy_from_slice(data);
                }
            }
            Op::Truncate { path, len } => {
                if let Some(ino) = self.inode(path) {
                    ino.cur.resize(*len as usize, 0);
                }
            }
            Op::Create { path } => {
                if !self.entries.contains_key(path) {
                    self.inodes.push(Inode::default());
                    self.entries.insert(path.clone(), Node::File(self.inodes.len() - 1));
                }
            }
            Op::Mkdir { path } => {
                self.entries.insert(path.clone(), Node::Dir);
            }
            Op::Rmdir { path } | Op::Unlink { path } => {
                self.entries.remove(path);
            }
            Op::Rename { from, to, flags } => {
                if from == to {
                    return;
                }
                let a = self.take_subtree(from);
                if flags & 2 != 0 {
                    let b = self.take_subtree(to);
                    self.put_subtree(from, b);
                } else {
                    self.take_subtree(to);
                }
                self.put_subtree(to, a);
            }
            Op::Symlink { target, path } => {
                self.entries.insert(path.clone(), Node::Symlink(target.clone()));
            }
            Op::Link { from, to } => {
                if let Some(n) = self.entries.get(from).cloned() {
                    self.entries.insert(to.clone(), n);
                }
            }
            Op::Fsync { path } => {
                if let Some(ino) = self.inode(path) {
                    ino.synced = ino.cur.clone();
                }
            }
            Op::SyncAll => {
                for ino in &mut self.inodes {
                    ino.synced = ino.cur.clone();
                }
            }
            Op::Marker(_) => {}
        }
    }

    /// A digest of the state `variant` would show (to skip duplicate states).
    pub fn digest(&self, variant: Variant) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for &x in b {
                h = (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
            }
            h = (h ^ 0xff).wrapping_mul(0x100_0000_01b3);
        };
        for (k, n) in &self.entries {
            eat(k.as_bytes());
            match n {
                Node::Dir => eat(b"d"),
                Node::Symlink(t) => eat(t),
                Node::File(i) => eat(self.data(*i, variant)),
            }
        }
        h
    }

    fn data(&self, i: usize, variant: Variant) -> &[u8] {
        match variant {
            Variant::All => &self.inodes[i].cur,
            Variant::SyncedData => &self.inodes[i].synced,
        }
    }

    /// Writes the state into `dir` (which must not exist).
    pub fn materialize(&self, dir: &Path, variant: Variant) {
        std::fs::create_dir_all(dir).unwrap();
        let mut made: HashMap<usize, PathBuf> = HashMap::new();
        for (k, n) in &self.entries {
            let p = dir.join(k);
            match n {
                Node::Dir => std::fs::create_dir_all(&p).unwrap(),
                Node::Symlink(t) => std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(t), &p).unwrap(),
                Node::File(i) => match made.get(i) {
                    Some(first) => std::fs::hard_link(first, &p).unwrap(),
                    None => {
                        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                        std::fs::write(&p, self.data(*i, variant)).unwrap();
                        made.insert(*i, p);
                    }
                },
            }
        }
    }
}
