//! A `coffer mount --fg` daemon as a separate process, for tests that kill it or fill its
//! disk: waits for the mount, arms the shared watchdog, and on kill or drop cleans the dead
//! mount up (abort the FUSE connection, lazy unmount).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::coffer;
use super::common::{is_mounted, Watchdog};

/// The test password, in a passfile next to CIPHERDIR.
pub const PASSWORD: &str = "kill nine password";

/// `coffer init --insecure-fast-kdf` of `cipher` with the passfile `pf`.
pub fn init(cipher: &Path, pf: &Path) {
    let out = coffer(
        &[
            "init".as_ref(),
            "--insecure-fast-kdf".as_ref(),
            "--quiet".as_ref(),
            "--passfile".as_ref(),
            pf.as_os_str(),
            cipher.as_os_str(),
        ],
        None,
    );
    assert_eq!(out.code, 0, "init: {}", out.stderr);
}

/// Plain (or else cipher) paths of the findings of a report.
pub fn damaged(report: &serde_json::Value) -> Vec<String> {
    report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["plain_path"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("backing:{}", d["cipher_path"].as_str().unwrap_or("")))
        })
        .collect()
}

/// A running `coffer mount --fg`.
pub struct Daemon {
    child: Option<Child>,
    /// The (canonical) mountpoint.
    pub mnt: PathBuf,
    conn: Option<u32>,
    watchdog: Option<Watchdog>,
    /// The daemon's stderr (its log).
    pub log: PathBuf,
}

impl Daemon {
    /// Mounts `cipher` at `mnt` (an existing directory) and waits for the mount.
    pub fn start(cipher: &Path, mnt: &Path, pf: &Path, watchdog: Duration) -> Daemon {
        Self::start_with(cipher, mnt, pf, watchdog, &[])
    }

    /// [`start`](Self::start) with `extra` options of `coffer mount`.
    pub fn start_with(cipher: &Path, mnt: &Path, pf: &Path, watchdog: Duration, extra: &[&str]) -> Daemon {
        let mnt = mnt.canonicalize().unwrap();
        let log = mnt.with_extension("log");
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_coffer"))
            .args(["mount", "--fg"])
            .args(extra)
            .arg("--passfile")
            .arg(pf)
            .arg(cipher)
            .arg(&mnt)
            // COFFER_TEST_DAEMON_LOG (e.g. `coffer=debug`) raises the daemons' log level.
            .env(
                "RUST_LOG",
                std::env::var("COFFER_TEST_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("XDG_STATE_HOME", super::cli::state_home())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            mnt,
            conn: None,
            watchdog: None,
            log,
        };
        let start = Instant::now();
        while !is_mounted(&d.mnt) {
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("coffer mount exited with {st}: {}", d.log_text());
            }
            assert!(start.elapsed() < Duration::from_secs(20), "mount not ready after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        d.conn = coffer::fs::connection_of(&d.mnt).ok();
        d.watchdog = Some(Watchdog::start(d.mnt.clone(), d.conn, watchdog));
        d
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident set size of the daemon in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILLs the daemon and cleans up the dead mount.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.clean_up();
    }

    /// Unmounts cleanly (SIGTERM, as on shutdown) and waits for the daemon to exit.
    pub fn stop(mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let start = Instant::now();
            while c.try_wait().unwrap().is_none() {
                if start.elapsed() > Duration::from_secs(20) {
                    let _ = c.kill();
                    let _ = c.wait();
                    self.clean_up();
                    panic!("daemon did not exit on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let st = c.wait().unwrap();
            assert!(st.success(), "daemon exited with {st}: {}", self.log_text());
        }
        self.clean_up();
    }

    /// Aborts the connection and detaches the mountpoint if it is still mounted.
    fn clean_up(&mut self) {
        if is_mounted(&self.mnt) {
            if let Some(c) = self.conn {
                let _ = coffer::fs::abort_connection(c);
            }
            let c = std::ffi::CString::new(self.mnt.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: valid C string.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
                // Not root: the mount's own user detaches it through fusermount3.
                let _ = Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(&self.mnt)
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let start = Instant::now();
        while is_mounted(&self.mnt) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!is_mounted(&self.mnt), "{} still mounted", self.mnt.display());
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(&self.mnt) || self.watchdog.is_some() {
            if let Some(c) = self.conn {
                let _ = coffer::fs::abort_connection(c);
            }
            let _ = coffer::fs::unmount(&self.mnt, true);
            if let Some(w) = self.watchdog.take() {
                w.stop();
            }
        }
    }
}
