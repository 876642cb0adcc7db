//! A secret typed at the controlling terminal, without echo.
//!
//! The terminal is switched to non-canonical mode with echo and signal keys off, and the line
//! is edited here (erase, kill, end of file), so that every byte lands in one buffer sized up
//! front: no buffer grows and leaves a copy of the secret in freed heap. The interrupt and
//! quit keys restore the terminal first and then raise their signal, so Ctrl-C at the prompt
//! ends coffer as before but never leaves the terminal without echo.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use zeroize::Zeroizing;

/// Reads one line from `/dev/tty` without echo, after writing `prompt` there. `limit` bytes
/// are kept; a longer line keeps `limit + 1` (so the caller can refuse it) and drops the rest.
pub fn prompt_hidden(prompt: &str, limit: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let tty = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/tty")?;
    read_hidden(&tty, prompt, limit)
}

/// [`prompt_hidden`] on an open terminal.
pub fn read_hidden(tty: &File, prompt: &str, limit: usize) -> io::Result<Zeroizing<Vec<u8>>> {
    let fd = tty.as_raw_fd();
    let saved = get_attrs(fd)?;
    let mut raw = saved;
    raw.c_lflag &= !(libc::ECHO | libc::ECHONL | libc::ICANON | libc::ISIG | libc::IEXTEN);
    raw.c_cc[libc::VMIN] = 1;
    raw.c_cc[libc::VTIME] = 0;
    // Echo goes off before the prompt shows, so nothing typed after it is echoed.
    set_attrs(fd, &raw)?;
    let restore = Restore { fd, saved };
    (&*tty).write_all(prompt.as_bytes())?;
    let mut line = Zeroizing::new(Vec::with_capacity(limit + 1));
    let outcome = edit_line(tty, &saved, &mut line, limit);
    drop(restore);
    let _ = (&*tty).write_all(b"\n");
    match outcome? {
        End::Line => Ok(line),
        End::Signal(sig) => {
            // The terminal is restored: now end as the key would have ended coffer.
            // SAFETY: raise only sends a signal to this process.
            unsafe { libc::raise(sig) };
            Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted at the prompt"))
        }
    }
}

/// How a line ended.
enum End {
    /// Enter, or end of file.
    Line,
    /// The interrupt or quit key: the signal to raise once the terminal is back.
    Signal(libc::c_int),
}

/// Reads keys until Enter, applying the terminal's own erase, kill, end-of-file, interrupt and
/// quit characters. Never pushes past `line`'s capacity.
fn edit_line(tty: &File, keys: &libc::termios, line: &mut Vec<u8>, limit: usize) -> io::Result<End> {
    let cc = |i: usize| keys.c_cc[i];
    // Bytes typed past `limit + 1`: counted, not kept, so that erasing them works.
    let mut dropped = 0usize;
    loop {
        let mut b = [0u8; 1];
        // SAFETY: valid fd and a 1-byte buffer.
        let n = unsafe { libc::read(tty.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let c = b[0];
        if n == 0 || c == b'\n' || c == b'\r' {
            return Ok(End::Line);
        }
        if c == cc(libc::VINTR) {
            return Ok(End::Signal(libc::SIGINT));
        }
        if c == cc(libc::VQUIT) {
            return Ok(End::Signal(libc::SIGQUIT));
        }
        if c == cc(libc::VEOF) {
            if line.is_empty() {
                return Ok(End::Line);
            }
            continue;
        }
        if c == cc(libc::VSUSP) {
            continue; // no suspending with the terminal in this state
        }
        if c == cc(libc::VERASE) || c == 0x7f || c == 0x08 {
            if dropped > 0 {
                dropped -= 1;
            } else {
                line.pop();
            }
            continue;
        }
        if c == cc(libc::VKILL) {
            line.clear();
            dropped = 0;
            continue;
        }
        if line.len() <= limit {
            line.push(c);
        } else {
            dropped += 1;
        }
    }
}

/// Puts the terminal's saved settings back when dropped (on every path out of the read).
struct Restore {
    fd: RawFd,
    saved: libc::termios,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = set_attrs(self.fd, &self.saved);
    }
}

fn get_attrs(fd: RawFd) -> io::Result<libc::termios> {
    // SAFETY: an all-zero termios is a valid value for tcgetattr to fill.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(t)
}

fn set_attrs(fd: RawFd, t: &libc::termios) -> io::Result<()> {
    // SAFETY: valid fd and pointer.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
