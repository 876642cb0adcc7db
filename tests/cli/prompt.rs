//! The password prompt on a real terminal (a pseudo-terminal whose slave is coffer's
//! controlling terminal): nothing typed is echoed, erase and kill keys edit the line, and
//! Ctrl-C ends coffer by SIGINT with the terminal's echo back on.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A pseudo-terminal pair: the test types into `master`, coffer's stdio is `slave`.
struct Pty {
    master: File,
    slave: File,
    seen: Vec<u8>,
}

impl Pty {
    fn open() -> Pty {
        // SAFETY: plain libc calls on fds this function owns; results are checked.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            assert_eq!(libc::grantpt(m), 0);
            assert_eq!(libc::unlockpt(m), 0);
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(s >= 0, "open slave: {}", std::io::Error::last_os_error());
            let fl = libc::fcntl(m, libc::F_GETFL);
            libc::fcntl(m, libc::F_SETFL, fl | libc::O_NONBLOCK);
            Pty {
                master: File::from_raw_fd(m),
                slave: File::from_raw_fd(s),
                seen: Vec::new(),
            }
        }
    }

    /// Starts coffer in a new session whose controlling terminal is the slave.
    fn spawn(&self, args: &[&str]) -> Child {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_coffer"));
        cmd.args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::from(self.slave.try_clone().unwrap()))
            .stdout(Stdio::from(self.slave.try_clone().unwrap()))
            .stderr(Stdio::from(self.slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // As from an interactive shell: a test run started in the background of a
                // script inherits SIGINT ignored, and coffer would then end by its error path.
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.spawn().unwrap()
    }

    /// Reads what coffer wrote until `text` has appeared (after what earlier calls consumed).
    fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(i) = find(&self.seen, text.as_bytes()) {
                self.seen.drain(..i + text.len());
                return;
            }
            let mut buf = [0u8; 4096];
            match self.master.read(&mut buf) {
                Ok(n) if n > 0 => self.seen.extend_from_slice(&buf[..n]),
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} on the terminal; it shows {:?}",
                String::from_utf8_lossy(&self.seen)
            );
        }
    }

    /// Everything coffer wrote that is not consumed yet, once it has exited.
    fn rest(&mut self) -> String {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.master.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Types `keys`, waiting while the terminal's input queue is full.
    fn typed(&mut self, mut keys: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !keys.is_empty() {
            match self.master.write(keys) {
                Ok(n) => keys = &keys[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "coffer stopped reading keys");
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("typing: {e}"),
            }
        }
    }

    /// The slave's local modes (ECHO, ICANON, ISIG ...).
    fn lflag(&self) -> libc::tcflag_t {
        // SAFETY: an all-zero termios is valid for tcgetattr to fill; the fd is open.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) }, 0);
        t.c_lflag
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        assert!(Instant::now() < deadline, "coffer did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_typed_password_is_not_echoed_and_can_be_edited() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let mut pty = Pty::open();
    let mut child = pty.spawn(&["init", "--insecure-fast-kdf", v.to_str().unwrap()]);
    pty.expect("New password: ");
    // A typo erased with backspace (DEL), then the real password.
    pty.typed(b"typed-secretX\x7f\r");
    pty.expect("Repeat new password: ");
    // A wrong start killed with Ctrl-U, then the password again, with a mid-line erase.
    pty.typed(b"wrong\x15typed-secrex\x7ft\n");
    let status = wait(&mut child);
    let shown = pty.rest();
    assert!(status.success(), "init failed: {shown}");
    assert!(!shown.contains("typed-secret"), "the password was echoed: {shown}");
    assert!(!shown.contains("wrong"), "the password was echoed: {shown}");
    coffer::vault::Vault::unlock(&v, None, b"typed-secret", false).expect("the edited password opens the vault");
    // The terminal is as before: echo and line editing on.
    let l = pty.lflag();
    assert_ne!(l & libc::ECHO, 0);
    assert_ne!(l & libc::ICANON, 0);
}

#[test]
fn ctrl_c_at_the_prompt_ends_coffer_and_restores_echo() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let mut pty = Pty::open();
    let before = pty.lflag();
    assert_ne!(before & libc::ECHO, 0, "a new terminal echoes");
    let mut child = pty.spawn(&["init", "--insecure-fast-kdf", v.to_str().unwrap()]);
    pty.expect("New password: ");
    assert_eq!(pty.lflag() & libc::ECHO, 0, "no echo while the password is typed");
    pty.typed(b"half-typ\x03");
    let status = wait(&mut child);
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}: {}", pty.rest());
    assert_eq!(pty.lflag(), before, "the terminal's modes are back as they were");
    assert!(!v.join("coffer.conf").exists(), "no vault made");
}

#[test]
fn an_over_long_typed_password_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let mut pty = Pty::open();
    let mut child = pty.spawn(&["init", "--insecure-fast-kdf", v.to_str().unwrap()]);
    pty.expect("New password: ");
    // Canonical-mode limits do not apply: coffer reads key by key.
    let mut keys = vec![b'k'; 5000];
    keys.push(b'\r');
    pty.typed(&keys);
    let status = wait(&mut child);
    let shown = pty.rest();
    assert_eq!(status.code(), Some(5), "{shown}");
    assert!(shown.contains("longer than 4096 bytes refused"), "{shown}");
}
