//! `coffer unmount`: `umount2` as root, else `fusermount3 -u` (or `fusermount -u`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use super::args::UnmountArgs;
use super::error::{code, strip_os_error, CliError, CliResult};

/// Runs `unmount`.
pub fn run(args: &UnmountArgs) -> CliResult {
    let mp = super::mount::absolute(&args.mountpoint)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        umount_as_root(&mp)
    } else {
        fusermount(&mp)
    }
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
