//! Shared helpers of the CLI tests: run the `coffer` binary, make vaults with the cheap KDF.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use coffer::format::config::VaultParams;
use coffer::vault::{unlock, KdfCost, Vault};

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
    let mut child = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(args)
        .env_remove("RUST_LOG")
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

/// Deterministic pseudo-random bytes.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Whether `mp` is a mountpoint right now.
pub fn is_mounted(mp: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let want = mp.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(want))
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

/// Waits up to `secs` for `cond`.
pub fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    cond()
}
