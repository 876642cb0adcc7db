//! `coffer unmount`: `umount2` as root, else `fusermount3 -u` (or `fusermount -u`); then waits
//! (briefly) for the background process that served the mount to exit, so that an immediate
//! `coffer mount` of the same vault does not find it still holding the vault's lock.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use coffer::fs::mounts::unescape;

use super::args::UnmountArgs;
use super::error::{code, strip_os_error, CliError, CliResult};

/// Runs `unmount`.
pub fn run(args: &UnmountArgs) -> CliResult {
    let mp = super::mount::absolute(&args.mountpoint)?;
    let source = mount_source(&mp);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        umount_as_root(&mp)?;
    } else {
        fusermount(&mp)?;
    }
    if let Some(cipherdir) = source {
        wait_for_daemon_exit(cipherdir.as_bytes(), &mp);
    }
    Ok(())
}

/// The source (CIPHERDIR) of a coffer mount at `mp`, from /proc/self/mounts.
fn mount_source(mp: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        // "fuse.coffer", or plain "fuse" when the kernel mount was made without the subtype.
        let is_coffer = f.get(2).is_some_and(|t| *t == "fuse.coffer" || *t == "fuse");
        (is_coffer && f.get(1).map(|m| unescape(m)) == Some(mp.as_os_str().as_bytes().to_vec()))
            .then(|| String::from_utf8_lossy(&unescape(f[0])).into_owned())
    })
}

/// Waits up to 5 s for our own background mount process of `cipherdir` at `mp` to exit.
fn wait_for_daemon_exit(cipherdir: &[u8], mp: &Path) {
    let is_ours = |cmdline: &[u8]| {
        let args: Vec<&[u8]> = cmdline.split(|&c| c == 0).collect();
        args.contains(&&b"--daemon-child"[..]) && args.contains(&cipherdir) && args.contains(&mp.as_os_str().as_bytes())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        let running = procs.flatten().any(|p| {
            let pid_dir = p.path();
            p.file_name().as_bytes().iter().all(u8::is_ascii_digit)
                && std::fs::read(pid_dir.join("cmdline")).is_ok_and(|c| is_ours(&c))
        });
        if !running {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log::warn!("the mount process of {} is still running", mp.display());
}

fn umount_as_root(mp: &Path) -> CliResult {
    let c = CString::new(mp.as_os_str().as_bytes())
        .map_err(|_| CliError::new(code::USAGE, "the mountpoint contains a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    let msg = match e.raw_os_error() {
        Some(libc::EINVAL) => format!("{}: not mounted", mp.display()),
        Some(libc::EBUSY) => {
            return Err(CliError::new(
                code::OTHER,
                format!("{}: busy (a process still uses the mount)", mp.display()),
            )
            .hint(format!(
                "close the programs using it (see `fuser -vm {}`), then retry",
                mp.display()
            )))
        }
        _ => format!("{}: {}", mp.display(), strip_os_error(&e)),
    };
    Err(CliError::new(code::OTHER, msg))
}

fn fusermount(mp: &Path) -> CliResult {
    for tool in ["fusermount3", "fusermount"] {
        match Command::new(tool).arg("-u").arg(mp).status() {
            Ok(s) if s.success() => return Ok(()),
            Ok(_) => {
                return Err(CliError::new(
                    code::OTHER,
                    format!("{}: {tool} -u failed", mp.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(CliError::new(
                    code::OTHER,
                    format!("cannot run {tool}: {}", strip_os_error(&e)),
                ))
            }
        }
    }
    Err(CliError::new(code::OTHER, "fusermount3 not found").hint("install it: apt-get install fuse3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_proc_mounts() {
        assert_eq!(unescape(r"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape(r"/plain"), b"/plain");
        assert_eq!(unescape(r"/end\04"), b"/end\\04");
    }
}
