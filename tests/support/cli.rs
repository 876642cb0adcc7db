//! Shared helpers of the CLI tests: run the `coffer` binary, make vaults with the cheap KDF.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use coffer::format::config::VaultParams;
use coffer::vault::{unlock, KdfCost, Vault};

use super::common::is_mounted;

/// What a run of `coffer` produced.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `coffer ARGS` with `stdin` (or an empty stdin) and no RUST_LOG.
pub fn coffer<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: Option<&[u8]>) -> Out {
    run_coffer(args, stdin, &[])
}

/// Runs `coffer ARGS` with an empty stdin and the environment variables `env` set.
pub fn coffer_env<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &std::ffi::OsStr)]) -> Out {
    run_coffer(args, None, env)
}

fn run_coffer<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: Option<&[u8]>, env: &[(&str, &std::ffi::OsStr)]) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", state_home())
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(data) = stdin {
        // The command may exit before reading its stdin.
        let _ = input.write_all(data);
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The state directory (rollback pins) of the `coffer` runs of this test process, so that tests
/// leave nothing in the home directory. It is removed when the test process exits.
pub fn state_home() -> PathBuf {
    static REMOVE_AT_EXIT: std::sync::Once = std::sync::Once::new();
    extern "C" fn remove_state_home() {
        let _ = std::fs::remove_dir_all(state_home_path());
    }
    REMOVE_AT_EXIT.call_once(|| {
        // SAFETY: registers a function that takes nothing and touches only the file system.
        unsafe { libc::atexit(remove_state_home) };
    });
    state_home_path()
}

fn state_home_path() -> PathBuf {
    std::env::temp_dir().join(format!("coffer-test-state-{}", std::process::id()))
}

/// Runs `coffer fsck --json [extra] --passfile PF CIPHER`.
pub fn fsck_json(cipher: &Path, pf: &Path, extra: &[&str]) -> Out {
    let mut args: Vec<&std::ffi::OsStr> = vec!["fsck".as_ref(), "--json".as_ref()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend([std::ffi::OsStr::new("--passfile"), pf.as_os_str(), cipher.as_os_str()]);
    coffer(&args, None)
}

/// [`fsck_json`] that must run (exit code 0, clean, or 1, damage found): (exit code, report).
pub fn fsck_report(cipher: &Path, pf: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = fsck_json(cipher, pf, extra);
    assert!(
        out.code == 0 || out.code == 1,
        "fsck could not run ({}): {}",
        out.code,
        out.stderr
    );
    (out.code, serde_json::from_slice(&out.stdout).unwrap())
}

/// Writes a passfile holding `pw` and returns its path.
pub fn passfile(dir: &Path, name: &str, pw: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    p
}

/// `coffer init --insecure-fast-kdf` of `cipherdir` with password `pw`; returns the printed
/// recovery key.
pub fn init_cli(cipherdir: &Path, pw: &str) -> String {
    let pf = passfile(cipherdir.parent().unwrap(), "init-pass", pw);
    let out = coffer(
        &[
            "init".as_ref(),
            "--insecure-fast-kdf".as_ref(),
            "--passfile".as_ref(),
            pf.as_os_str(),
            cipherdir.as_os_str(),
        ],
        None,
    );
    assert_eq!(out.code, 0, "init failed: {}", out.stderr);
    recovery_key_from(&out.stdout_str())
}

/// The recovery key line of init's output.
pub fn recovery_key_from(stdout: &str) -> String {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with("Recovery key"));
    lines
        .find(|l| l.starts_with("    "))
        .expect("no recovery key printed")
        .trim()
        .to_string()
}

/// `coffer init --insecure-fast-kdf --config-version VERSION --passfile PF CIPHERDIR`, which
/// must succeed; returns what it printed.
pub fn init_version(cipherdir: &Path, pf: &Path, version: &str) -> Out {
    let out = coffer(
        &[
            "init".as_ref(),
            "--insecure-fast-kdf".as_ref(),
            "--config-version".as_ref(),
            version.as_ref(),
            "--passfile".as_ref(),
            pf.as_os_str(),
            cipherdir.as_os_str(),
        ],
        None,
    );
    assert_eq!(out.code, 0, "init: {}", out.stderr);
    out
}

/// Library init with the cheap KDF, then unlock.
pub fn init_lib(cipherdir: &Path, pw: &str) -> Vault {
    std::fs::create_dir_all(cipherdir).unwrap();
    unlock::init(
        cipherdir,
        None,
        pw.as_bytes(),
        &VaultParams::default(),
        KdfCost::INSECURE_TEST,
    )
    .unwrap();
    Vault::unlock(cipherdir, None, pw.as_bytes(), false).unwrap()
}

/// Writes a file at the vault root through the library.
pub fn put_file(v: &Vault, name: &[u8], data: &[u8]) {
    let root = v.root_dir().unwrap();
    let (f, _) = v.create_file(&root, name, 0o644).unwrap();
    if !data.is_empty() {
        f.write_at(data, 0).unwrap();
    }
}

/// Unmounts on drop (so a failing test never leaves a mount behind).
pub struct Unmount(pub PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = coffer(&["unmount".as_ref(), self.0.as_os_str()], None);
        }
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Runs `coffer ARGS` (empty stdin, no RUST_LOG) with RLIMIT_NOFILE soft = hard = `nofile`
/// (a machine whose hard limit is low too).
pub fn coffer_limited<S: AsRef<std::ffi::OsStr>>(args: &[S], nofile: u64) -> Out {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
    cmd.args(args)
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", state_home())
        .stdin(Stdio::null());
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A base for trees where every mkdir fsyncs: tmpfs when there is one, unless TMPDIR names a
/// file system under test.
pub fn fast_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if std::env::var_os("TMPDIR").is_none() && shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Makes `depth` nested directories `d` below the vault root (each through `Vault::mkdir`
/// on the one above) with `file` holding `content` in the deepest.
pub fn deep_vault_tree(v: &Vault, depth: usize, content: &[u8]) {
    let mut dir = v.root_dir().unwrap();
    for _ in 0..depth {
        let name = v.mkdir(&dir, b"d", 0o755).unwrap();
        dir = dir.open_child(v, &name.entry).unwrap();
    }
    let (f, _) = v.create_file(&dir, b"file", 0o644).unwrap();
    f.write_at(content, 0).unwrap();
}

/// Follows `depth` components `name` down from `top` one `openat` at a time (the path is
/// too long for one call); returns a descriptor of the deepest directory.
pub fn open_deep(top: &Path, name: &str, depth: usize) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(top.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid C strings; each descriptor is owned once returned.
    let mut fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(libc::open(c.as_ptr(), flags)) };
    for level in 0..depth {
        // SAFETY: as above.
        let next = unsafe { libc::openat(std::os::fd::AsRawFd::as_raw_fd(&fd), n.as_ptr(), flags) };
        assert!(next >= 0, "level {level}: {}", std::io::Error::last_os_error());
        // SAFETY: next is a fresh descriptor.
        fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(next) };
    }
    fd
}

/// Removes a tree of any depth without recursion (std's remove_dir_all recurses once per
/// level): every subdirectory is moved up next to `top` before its own parent is removed.
pub fn remove_tree_flat(top: &Path) {
    let base = top.with_extension("flat");
    std::fs::create_dir_all(&base).unwrap();
    let mut queue = vec![top.to_path_buf()];
    let mut n = 0u64;
    while let Some(dir) = queue.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                n += 1;
                let moved = base.join(n.to_string());
                std::fs::rename(e.path(), &moved).unwrap();
                queue.push(moved);
            } else {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
        std::fs::remove_dir(&dir).unwrap();
    }
    std::fs::remove_dir(&base).unwrap();
}
