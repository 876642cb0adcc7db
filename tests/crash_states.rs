//! Crash states at the storage layer: each scenario (create, overwrite, append/truncate, rename,
//! mkdir, long names, symlinks, passwd) runs through the vault library in a child process under
//! strace; its backing operations are replayed up to every point of the log, once with all of
//! them (a process crash) and once without the file data that was not fsync'ed yet (a power
//! loss). Every such state must open (with the old or the new password during `passwd`), every
//! path whose step finished (data and parent fsync'ed) must read back exactly, and fsck may
//! report only paths of the step in flight; `fsck --repair` then leaves at most those.

mod support;

use support::{common, crashsim};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use coffer::format::config::VaultParams;
use coffer::vault::fsck::{fsck_with, FsckOptions};
use coffer::vault::{unlock, Dir, KdfCost, Vault};
use crashsim::{marker, Model, Op, Variant};
use support::data::fnv;
use support::vectors::{hex, to_hex};

const PW: &[u8] = b"crash password";
const NEW_PW: &[u8] = b"crash password two";
const SCENARIOS: &[&str] = &["create", "overwrite", "append", "rename", "mkdir", "long", "passwd"];

/// The directory holding `path` and the last component.
fn parent<'a>(v: &Vault, path: &'a [u8]) -> coffer::vault::Result<(Dir, &'a [u8])> {
    Ok(match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (v.open_dir_path(&path[..i])?, &path[i + 1..]),
        None => (v.root_dir()?, path),
    })
}

/// What `path` is now, as a fact string (the same code writes and checks facts).
fn describe(v: &Vault, path: &[u8]) -> String {
    let h = to_hex(path);
    let r = (|| {
        let (dir, name) = parent(v, path)?;
        let (cn, st) = match v.lookup(&dir, name) {
            Ok(x) => x,
            Err(e) if e.errno() == libc::ENOENT => return Ok(format!("absent/{h}")),
            Err(e) => return Err(e),
        };
        Ok(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                v.open_dir_path(path)?;
                format!("dir/{h}")
            }
            libc::S_IFLNK => {
                let t = v.readlink(&dir, &cn.entry)?;
                format!("link/{h}/{}/{:x}", t.len(), fnv(&t))
            }
            _ => {
                let f = v.open_file(&dir, &cn.entry, false)?;
                let mut data = vec![0u8; f.plain_len()? as usize];
                let n = f.read_at(&mut data, 0)?;
                data.truncate(n);
                format!("file/{h}/{}/{:x}", data.len(), fnv(&data))
            }
        })
    })();
    r.unwrap_or_else(|e| format!("error/{h}/{e}"))
}

/// The scenario side (runs in the traced child).
struct Script {
    v: Vault,
    dir: std::path::PathBuf,
}

impl Script {
    fn begin(&self, paths: &[&[u8]]) {
        for p in paths {
            marker(&format!("begin/{}", to_hex(p)));
        }
    }

    /// Makes the step durable (fsync of the parents) and records the resulting facts.
    fn done(&self, paths: &[&[u8]]) {
        for p in paths {
            if let Ok((d, _)) = parent(&self.v, p) {
                d.fd.fsync().unwrap();
            }
        }
        for p in paths {
            marker(&describe(&self.v, p));
        }
    }

    /// Creates `path` if needed, writes `data` at `off`, fsyncs.
    fn write(&self, path: &[u8], off: u64, data: &[u8]) {
        self.begin(&[path]);
        let (dir, name) = parent(&self.v, path).unwrap();
        let f = match self.v.lookup(&dir, name) {
            Ok((cn, _)) => self.v.open_file(&dir, &cn.entry, true).unwrap(),
            Err(_) => self.v.create_file(&dir, name, 0o644).unwrap().0,
        };
        f.write_at(data, off).unwrap();
        f.sync(false).unwrap();
        self.done(&[path]);
    }

    fn set_len(&self, path: &[u8], len: u64) {
        self.begin(&[path]);
        let (dir, name) = parent(&self.v, path).unwrap();
        let (cn, _) = self.v.lookup(&dir, name).unwrap();
        let f = self.v.open_file(&dir, &cn.entry, true).unwrap();
        self.v.set_len(&f, len).unwrap();
        f.sync(false).unwrap();
        self.done(&[path]);
    }

    fn rename(&self, from: &[u8], to: &[u8], flags: u32) {
        self.begin(&[from, to]);
        let (fd, fname) = parent(&self.v, from).unwrap();
        let (td, tname) = parent(&self.v, to).unwrap();
        self.v.rename(&fd, fname, &td, tname, flags).unwrap();
        self.done(&[from, to]);
    }

    fn mkdir(&self, path: &[u8]) {
        self.begin(&[path]);
        let (dir, name) = parent(&self.v, path).unwrap();
        self.v.mkdir(&dir, name, 0o755).unwrap();
        self.done(&[path]);
    }

    fn unlink(&self, path: &[u8]) {
        self.begin(&[path]);
        let (dir, name) = parent(&self.v, path).unwrap();
        self.v.unlink(&dir, name).unwrap();
        self.done(&[path]);
    }

    fn symlink(&self, path: &[u8], target: &[u8]) {
        self.begin(&[path]);
        let (dir, name) = parent(&self.v, path).unwrap();
        self.v.symlink(&dir, name, target).unwrap();
        self.done(&[path]);
    }
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn run_scenario(s: &Script, name: &str) {
    let long = |c: &str| c.repeat(200 / c.len()).into_bytes();
    match name {
        "create" => {
            s.write(b"a.txt", 0, &data(1, 10_000));
            s.write(b"empty-then-small", 0, b"x");
            s.write(b"big", 0, &data(2, 70_000));
        }
        "overwrite" => {
            s.write(b"o", 0, &data(3, 3 * 4096 + 100));
            s.write(b"o", 5000, &data(4, 500));
            s.write(b"o", 4096, &data(5, 4096));
            s.write(b"o", 3 * 4096, &data(6, 300));
        }
        "append" => {
            s.write(b"p", 0, &data(7, 5000));
            s.write(b"p", 5000, &data(8, 9000));
            s.write(b"p", 14_000, &data(9, 10));
            s.write(b"p", 30_000, &data(10, 100));
            s.set_len(b"p", 40_000);
            s.set_len(b"p", 6000);
            s.set_len(b"p", 8192);
            s.set_len(b"p", 0);
            s.write(b"p", 0, b"again");
        }
        "rename" => {
            s.write(b"r1", 0, &data(11, 6000));
            s.rename(b"r1", b"r2", 0);
            s.mkdir(b"d");
            s.rename(b"r2", b"d/r3", 0);
            s.write(b"x", 0, b"exchange me");
            s.rename(b"x", b"d/r3", libc::RENAME_EXCHANGE);
            s.write(b"y", 0, b"replaced");
            s.rename(b"y", b"x", 0);
            s.unlink(b"x");
        }
        "mkdir" => {
            s.mkdir(b"d");
            s.mkdir(b"d/e");
            s.write(b"d/e/f", 0, &data(12, 5000));
            s.mkdir(&[b"d/".as_slice(), &long("long dir ")].concat());
        }
        "long" => {
            let (l1, l2, l3) = (long("first long "), long("second long "), long("third long "));
            s.write(&l1, 0, &data(13, 7000));
            s.rename(&l1, &l2, 0);
            s.rename(&l2, b"short", 0);
            s.rename(b"short", &l3, 0);
            s.write(b"other", 0, b"o");
            s.rename(b"other", &l3, 0);
            s.unlink(&l3);
            s.symlink(b"link", &vec![b't'; 3500]);
            s.symlink(&long("long link "), b"short target");
            s.unlink(b"link");
        }
        "passwd" => {
            s.write(b"before", 0, b"written before passwd");
            let path = unlock::config_path(&s.dir, None);
            marker(&format!("pwbegin/{}/{}", to_hex(PW), to_hex(NEW_PW)));
            unlock::change_password(&path, PW, NEW_PW, Some(KdfCost::INSECURE_TEST)).unwrap();
            marker(&format!("pw/{}", to_hex(NEW_PW)));
            s.write(b"after", 0, b"written after passwd");
        }
        _ => panic!("unknown scenario {name}"),
    }
}

/// The traced child: runs one scenario on an initialized vault.
#[test]
fn crash_child() {
    let (Some(name), Some(dir)) = (
        std::env::var("COFFER_CRASH_SCENARIO").ok(),
        std::env::var_os("COFFER_CRASH_DIR"),
    ) else {
        return;
    };
    let dir = Path::new(&dir).to_path_buf();
    let v = Vault::unlock(&dir, None, PW, false).unwrap();
    run_scenario(&Script { v, dir }, &name);
}

/// What the markers say at one point of the log.
#[derive(Default, Clone)]
struct Expect {
    /// Latest event per plaintext path: `None` = a step on it is in flight.
    paths: BTreeMap<Vec<u8>, Option<String>>,
    /// Passwords one of which must open the vault.
    passwords: Vec<Vec<u8>>,
}

impl Expect {
    fn new() -> Expect {
        Expect {
            paths: BTreeMap::new(),
            passwords: vec![PW.to_vec()],
        }
    }

    fn event(&mut self, m: &str) {
        let parts: Vec<&str> = m.split('/').collect();
        match parts[0] {
            "begin" => {
                self.paths.insert(hex(parts[1]), None);
            }
            "pwbegin" => self.passwords = vec![hex(parts[1]), hex(parts[2])],
            "pw" => self.passwords = vec![hex(parts[1])],
            "error" => panic!("scenario could not describe its own result: {m}"),
            _ => {
                self.paths.insert(hex(parts[1]), Some(m.to_string()));
            }
        }
    }

    fn in_flight(&self) -> BTreeSet<String> {
        self.paths
            .iter()
            .filter(|(_, f)| f.is_none())
            .map(|(p, _)| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    fn busy(&self) -> bool {
        self.paths.values().any(Option::is_none) || self.passwords.len() > 1
    }
}

#[derive(Default)]
struct Stats {
    states: usize,
    reported: usize,
    left_after_repair: usize,
}

/// fsck findings not allowed in a state with `e` in flight.
fn unexpected(report: &coffer::vault::fsck::FsckReport, e: &Expect, after_repair: bool) -> Vec<String> {
    let flight = e.in_flight();
    report
        .damage
        .iter()
        .filter(|d| d.repaired.is_none())
        .filter(|d| {
            let ok = match &d.plain_path {
                Some(p) => flight.contains(p) || flight.iter().any(|f| p.starts_with(&format!("{f}/"))),
                None => {
                    use coffer::vault::fsck::DamageKind::{OrphanSidecar, StrayTemp};
                    !after_repair && e.busy() && matches!(d.kind, OrphanSidecar | StrayTemp)
                }
            };
            !ok
        })
        .map(|d| format!("{d:?}"))
        .collect()
}

/// Checks one replayed state in `dir`.
fn check_state(dir: &Path, e: &Expect, stats: &mut Stats) -> Result<(), String> {
    let vault = e
        .passwords
        .iter()
        .find_map(|pw| Vault::unlock(dir, None, pw, false).ok())
        .ok_or_else(|| "the vault does not open with the expected password(s)".to_string())?;
    for (path, fact) in &e.paths {
        if let Some(fact) = fact {
            let now = describe(&vault, path);
            if &now != fact {
                return Err(format!(
                    "{}: expected {fact}, found {now}",
                    String::from_utf8_lossy(path)
                ));
            }
        }
    }
    let report = fsck_with(&vault, FsckOptions::new(false), &mut |_| {}).map_err(|e| format!("fsck: {e}"))?;
    let bad = unexpected(&report, e, false);
    if !bad.is_empty() {
        return Err(format!("fsck reports more than the work in flight: {bad:#?}"));
    }
    stats.reported += usize::from(!report.damage.is_empty());
    let mut opts = FsckOptions::new(true);
    opts.min_temp_age = std::time::Duration::ZERO;
    fsck_with(&vault, opts, &mut |_| {}).map_err(|e| format!("fsck --repair: {e}"))?;
    let report = fsck_with(&vault, FsckOptions::new(false), &mut |_| {}).map_err(|e| format!("fsck: {e}"))?;
    let bad = unexpected(&report, e, true);
    if !bad.is_empty() {
        return Err(format!("left after --repair: {bad:#?}"));
    }
    stats.left_after_repair += usize::from(!report.damage.is_empty());
    // Facts still hold after the repair.
    for (path, fact) in &e.paths {
        if let Some(fact) = fact {
            let now = describe(&vault, path);
            if &now != fact {
                return Err(format!(
                    "after --repair, {}: expected {fact}, found {now}",
                    String::from_utf8_lossy(path)
                ));
            }
        }
    }
    Ok(())
}

fn describe_op(op: &Op) -> String {
    match op {
        Op::Write { path, off, data } => format!("write {path} @{off} +{}", data.len()),
        other => format!("{other:?}"),
    }
}

/// Records `scenario` and checks every crash state of its log.
fn crash_states(scenario: &str) -> Stats {
    let t = tempfile::tempdir().unwrap();
    let vault = t.path().join("vault");
    std::fs::create_dir(&vault).unwrap();
    unlock::init(&vault, None, PW, &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    let base = Model::load(&vault);
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "crash_child", "--test-threads=1", "--nocapture"])
        .env("COFFER_CRASH_SCENARIO", scenario)
        .env("COFFER_CRASH_DIR", &vault);
    let ops = crashsim::record(&vault, cmd, t.path());
    assert!(
        ops.iter().any(|o| matches!(o, Op::Fsync { .. })) && ops.iter().any(|o| matches!(o, Op::Marker(_))),
        "{scenario}: the trace holds no fsync or marker: {ops:?}"
    );
    let mut model = base;
    let mut expect = Expect::new();
    let mut seen = std::collections::HashSet::new();
    let mut stats = Stats::default();
    for (k, op) in std::iter::once(None).chain(ops.iter().map(Some)).enumerate() {
        if let Some(op) = op {
            model.apply(op);
            if let Op::Marker(m) = op {
                expect.event(m);
            }
        }
        for variant in [Variant::All, Variant::SyncedData] {
            if !seen.insert((model.digest(variant), expect.paths.clone(), expect.passwords.clone())) {
                continue;
            }
            let dir = t.path().join(format!("state-{k}-{variant:?}"));
            model.materialize(&dir, variant);
            if let Err(why) = check_state(&dir, &expect, &mut stats) {
                let log: Vec<String> = ops[..k].iter().map(describe_op).collect();
                panic!(
                    "{scenario}: crash after op {k} ({variant:?}): {why}\nops so far:\n{}",
                    log.join("\n")
                );
            }
            stats.states += 1;
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    eprintln!(
        "{scenario}: {} ops, {} distinct crash states, {} with fsck findings, {} with findings left after --repair",
        ops.len(),
        stats.states,
        stats.reported,
        stats.left_after_repair
    );
    stats
}

#[test]
fn every_crash_state_opens_and_keeps_synced_data() {
    common::require_tool("strace");
    let start = Instant::now();
    for s in SCENARIOS {
        crash_states(s);
    }
    eprintln!("all scenarios in {:?}", start.elapsed());
}

#[test]
fn the_replay_catches_a_missing_fsync() {
    // A config written in place of an atomic write (no fsync before the rename) must be caught:
    // the dropped-data state holds an empty config, which does not open.
    common::require_tool("strace");
    let t = tempfile::tempdir().unwrap();
    let vault = t.path().join("v");
    std::fs::create_dir(&vault).unwrap();
    unlock::init(&vault, None, PW, &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    let conf = std::fs::read(vault.join("coffer.conf")).unwrap();
    let base = Model::load(&vault);
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("dd if=coffer.conf of=tmp status=none && mv tmp coffer.conf")
        .current_dir(&vault);
    let ops = crashsim::record(&vault, cmd, t.path());
    let mut model = base;
    for op in &ops {
        model.apply(op);
    }
    let all = t.path().join("all");
    model.materialize(&all, Variant::All);
    assert_eq!(std::fs::read(all.join("coffer.conf")).unwrap(), conf);
    let lost = t.path().join("lost");
    model.materialize(&lost, Variant::SyncedData);
    assert_eq!(std::fs::read(lost.join("coffer.conf")).unwrap(), b"", "{ops:?}");
    assert!(Vault::unlock(&lost, None, PW, false).is_err());
}

/// FORMAT.md G30: a crash that tears the first block of a write starting two blocks past the
/// old end leaves a never-written hole as the last complete block. `fsck --repair` cuts the
/// torn tail, seals that hole as a final zero block and says what it did; the file then reads
/// as its old bytes followed by zeros, and fsck is clean.
#[test]
fn repair_seals_a_hole_left_as_the_last_block() {
    let tmp = tempfile::tempdir().unwrap();
    unlock::init(tmp.path(), None, PW, &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    let v = Vault::unlock(tmp.path(), None, PW, false).unwrap();
    let root = v.root_dir().unwrap();
    let (f, cn) = v.create_file(&root, b"gap", 0o600).unwrap();
    let old = data(5, 100);
    f.write_at(&old, 0).unwrap();
    f.write_at(&data(6, 200), 12288).unwrap();
    drop(f);
    let backing = tmp
        .path()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&cn.entry));
    let file = std::fs::OpenOptions::new().write(true).open(&backing).unwrap();
    file.set_len(18 + 3 * 4128 + 5).unwrap();
    drop(file);

    let before = fsck_with(&v, FsckOptions::new(false), &mut |_| {}).unwrap();
    assert!(!before.is_clean(), "{before:?}");
    let repaired = fsck_with(&v, FsckOptions::new(true), &mut |_| {}).unwrap();
    let what: Vec<_> = repaired.damage.iter().filter_map(|d| d.repaired.clone()).collect();
    assert!(what.iter().any(|w| w.contains("torn")), "{repaired:?}");
    assert!(what.iter().any(|w| w.contains("never-written gap")), "{repaired:?}");
    assert!(repaired.is_clean(), "{repaired:?}");
    let after = fsck_with(&v, FsckOptions::new(false), &mut |_| {}).unwrap();
    assert!(after.is_clean() && after.damage.is_empty(), "{after:?}");

    let f = v.open_file(&root, &cn.entry, false).unwrap();
    assert_eq!(f.plain_len().unwrap(), 12288);
    let mut all = vec![0xFFu8; 12288];
    assert_eq!(f.read_at(&mut all, 0).unwrap(), 12288);
    assert_eq!(all[..100], old[..]);
    assert!(all[100..].iter().all(|&b| b == 0));
}
