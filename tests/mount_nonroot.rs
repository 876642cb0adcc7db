//! A mount made by an ordinary user (through fusermount3): that user reads and writes, the
//! kernel's permission checks apply to them, and nobody else — root included — gets in.

mod support;

use support::common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

/// Runs `sh -c script` as uid/gid 65534 with $C (cipherdir), $M (mountpoint), $P (passfile) and
/// $COFFER (the binary) set.
fn as_nobody(base: &Path, script: &str) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .current_dir(base)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("C", base.join("c"))
        .env("M", base.join("m"))
        .env("P", base.join("pw"))
        .env("COFFER", env!("CARGO_BIN_EXE_coffer"))
        .uid(NOBODY)
        .gid(NOBODY);
    // std drops root's supplementary groups itself when it switches uid.
    cmd.output().expect("spawn sh")
}

fn ok(o: &Output, what: &str) -> String {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}{}",
        o.status,
        out,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

struct Cleanup<'a>(&'a Path);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let m = self.0.join("m");
        let _ = Command::new("fusermount3").arg("-u").arg("-z").arg(&m).status();
        let _ = coffer::fs::unmount(&m, true);
    }
}

#[test]
fn a_user_mounts_through_fusermount3() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to switch to another uid; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    common::require_tool("fusermount3");
    // The test binary and the tree above it must be reachable by the user.
    let base = tempfile::Builder::new()
        .prefix("coffer-nonroot")
        .tempdir_in("/tmp")
        .unwrap();
    let b = base.path();
    std::fs::set_permissions(b, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for d in ["c", "m"] {
        std::fs::create_dir(b.join(d)).unwrap();
    }
    std::fs::write(b.join("pw"), "user password\n").unwrap();
    for p in ["c", "m", "pw"] {
        std::os::unix::fs::chown(b.join(p), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let _cleanup = Cleanup(b);
    // Debian's udev makes /dev/fuse mode 0666 so users can mount through fusermount3 (which
    // opens the device with the user's fsuid); some containers leave it 0600. Emulate the
    // standard setup for this test and put the mode back afterwards.
    let _dev = DevFuseMode::open_to_users();
    ok(
        &as_nobody(b, r#""$COFFER" init --insecure-fast-kdf --quiet --passfile "$P" "$C""#),
        "init",
    );
    ok(&as_nobody(b, r#""$COFFER" mount --passfile "$P" "$C" "$M""#), "mount");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.contains(&*b.join("m").to_string_lossy()))
        .expect("mounted");
    assert!(line.contains("user_id=65534"), "{line}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");

    // The user works normally, and modes are enforced on them: an owner-only mount has no
    // default_permissions, so the daemon (running as the user) and its backing syscalls do it.
    let out = ok(
        &as_nobody(
            b,
            r#"set -e
            echo hello > "$M/f"; mkdir "$M/d"; echo inner > "$M/d/g"; ln -s f "$M/l"
            cat "$M/f"; cat "$M/d/g"; readlink "$M/l"; stat -c '%u %g %a' "$M/f"
            chmod 000 "$M/f"
            if cat "$M/f" 2>/dev/null; then echo READ-DESPITE-000; fi
            chmod 600 "$M/f"; cat "$M/f"
            echo 12345 > "$M/wo"; chmod 200 "$M/wo"
            echo more >> "$M/wo"; printf XY | dd of="$M/wo" bs=1 seek=1 conv=notrunc status=none
            stat -c '%a' "$M/wo"; chmod 600 "$M/wo"; cat "$M/wo"
            chmod 444 "$M/f"
            if echo x >> "$M/f" 2>/dev/null; then echo WROTE-444; fi
            if [ -w "$M/f" ]; then echo ACCESS-W-444; fi
            if [ -r "$M/f" ]; then echo ACCESS-R; fi
            if [ -x "$M/f" ]; then echo ACCESS-X-444; fi
            chmod 555 "$M/d"
            if mkdir "$M/d/x" 2>/dev/null; then echo MKDIR-IN-555; fi
            if rm "$M/d/g" 2>/dev/null; then echo RM-IN-555; fi
            if echo n > "$M/d/new" 2>/dev/null; then echo CREATE-IN-555; fi
            chmod 000 "$M/d"
            if ls "$M/d" >/dev/null 2>&1; then echo LIST-000; fi
            if [ -x "$M/d" ]; then echo ACCESS-X-000; fi
            chmod 755 "$M/d"; [ -x "$M/d" ] && echo ACCESS-X-DIR
            echo s > "$M/s"; chmod 4755 "$M/s"; echo t >> "$M/s"; stat -c "%a" "$M/s"
            chmod 6755 "$M/s"; truncate -s 1 "$M/s"; stat -c '%a' "$M/s""#,
        ),
        "user operations",
    );
    // A write-only (0200) file stays writable by its owner, partial rewrites included; modes
    // refuse what they should; a write or truncate by the user clears set-ID bits.
    assert_eq!(
        out,
        "hello\ninner\nf\n65534 65534 644\nhello\n200\n1XY45\nmore\nACCESS-R\nACCESS-X-DIR\n755\n755\n"
    );

    // Nobody else gets in, not even root: the mount is owner-only without --allow-other.
    let e = std::fs::read_dir(b.join("m")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES), "root must be refused: {e}");

    // Backing files belong to the user and hold no plaintext.
    for entry in walk(&b.join("c")) {
        let md = std::fs::symlink_metadata(&entry).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), NOBODY, "{}", entry.display());
        if md.is_file() {
            let data = std::fs::read(&entry).unwrap();
            assert!(
                !data.windows(5).any(|w| w == b"hello" || w == b"inner"),
                "{}",
                entry.display()
            );
        }
    }

    ok(&as_nobody(b, r#""$COFFER" unmount "$M""#), "unmount");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&*b.join("m").to_string_lossy()), "still mounted");
}

/// Restores /dev/fuse's mode on drop.
struct DevFuseMode(Option<u32>);

impl DevFuseMode {
    fn open_to_users() -> DevFuseMode {
        use std::os::unix::fs::PermissionsExt;
        let dev = Path::new("/dev/fuse");
        let mode = std::fs::metadata(dev).unwrap().permissions().mode() & 0o7777;
        if mode & 0o006 == 0o006 {
            return DevFuseMode(None);
        }
        std::fs::set_permissions(dev, std::fs::Permissions::from_mode(0o666)).unwrap();
        DevFuseMode(Some(mode))
    }
}

impl Drop for DevFuseMode {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if let Some(mode) = self.0 {
            let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(mode));
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}
