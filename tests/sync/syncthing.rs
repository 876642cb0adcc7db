//! The Syncthing test bed in CI: runs scripts/sync-test (two loopback-only Syncthing instances
//! sharing CIPHERDIR-A <-> CIPHERDIR-B, the vault mounted on each side; about 40 s) and fails
//! with its output if any check fails. Needs `syncthing` (Debian: apt-get install -y syncthing;
//! scripts/test installs it when run as root) and python3.

use crate::support::common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole run must finish within this (it takes about 40 s).
const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn syncthing_between_two_replicas_loses_nothing() {
    if !common::fuse_available() {
        return;
    }
    common::require_tool("syncthing");
    common::require_tool("python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sync-test");
    let mut child = Command::new(script)
        .env("COFFER_BIN", env!("CARGO_BIN_EXE_coffer"))
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/sync-test");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break Some(st);
        }
        if start.elapsed() > LIMIT {
            // SIGTERM: the script stops what it started (by PID) before exiting.
            // SAFETY: kill(2) on our own child's PID.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    eprintln!("{stdout}");
    match status {
        Some(st) => assert!(st.success(), "scripts/sync-test failed ({st}):\n{stdout}\n{stderr}"),
        None => panic!("scripts/sync-test took longer than {LIMIT:?}:\n{stdout}\n{stderr}"),
    }
    assert!(stdout.contains("PASS: every check passed"), "{stdout}");
}
