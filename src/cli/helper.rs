//! `mount.coffer` / `mount.fuse.coffer`: the mount(8) helper form, for /etc/fstab lines like
//! `/data/vault /mnt/private fuse.coffer passfile=/root/pw,allow_other,nofail 0 0`.
//! It translates `SOURCE TARGET [-o OPTS]` into `coffer mount` arguments.
//!
//! mount(8) consumes the options that only clear a flag (`dev`, `suid`, `exec`, `atime`, ...)
//! and hands the helper the rest (`mount -o dev,suid,noatime` runs `mount.coffer SRC DIR -o
//! rw,noatime`), so here as for mount(8) and libfuse's mount.fuse the absence of `nodev` /
//! `nosuid` means dev / suid; a `user` mount gets `nosuid,nodev` added by mount(8) itself.
//! `remount` is refused with a line that says what to do.

use std::ffi::OsString;

use super::error::{code, CliError, CliResult};

/// mount(8) options that mean nothing to coffer (or are its defaults) and are skipped.
const IGNORED: &[&str] = &[
    "defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "nofail", "_netdev", "rw", "exec",
    "noexec", "async", "sync", "silent", "loud",
];

/// Whether the program was started under a helper name.
pub fn is_helper_name(argv0: &std::ffi::OsStr) -> bool {
    let name = std::path::Path::new(argv0)
        .file_name()
        .map(|n| n.as_encoded_bytes())
        .unwrap_or_default();
    name == b"mount.coffer" || name == b"mount.fuse.coffer"
}

/// The flags whose last mention wins (`nodev` after `dev`, `noatime` after `relatime`).
struct Flags {
    dev: bool,
    suid: bool,
    atime: &'static str,
    nodiratime: bool,
}

impl Flags {
    /// Handles `opt` when it is one of these flags.
    fn set(&mut self, opt: &str) -> bool {
        match opt {
            "dev" | "nodev" => self.dev = opt == "dev",
            "suid" | "nosuid" => self.suid = opt == "suid",
            // `atime` only clears `noatime`: the kernel's default, relatime, again.
            "atime" | "relatime" => self.atime = "relatime",
            "noatime" | "strictatime" => self.atime = if opt == "noatime" { "noatime" } else { "strictatime" },
            "nodiratime" | "diratime" => self.nodiratime = opt == "nodiratime",
            _ => return false,
        }
        true
    }

    fn args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        if self.dev {
            out.push("--dev".into());
        }
        if self.suid {
            out.push("--suid".into());
        }
        if self.atime != "relatime" {
            out.extend(["--atime".into(), self.atime.into()]);
        }
        if self.nodiratime {
            out.push("--nodiratime".into());
        }
        out
    }
}

/// `mount.coffer SOURCE TARGET [-o opts] [-n] [-s] [-f] [-v]` → `coffer mount ...`.
pub fn translate(argv: &[OsString]) -> CliResult<Vec<OsString>> {
    let usage = || CliError::new(code::USAGE, "usage: mount.coffer CIPHERDIR MOUNTPOINT [-o OPTIONS]");
    let mut out: Vec<OsString> = vec!["coffer".into(), "mount".into()];
    let mut positional = Vec::new();
    let mut flags = Flags {
        dev: true,
        suid: true,
        atime: "relatime",
        nodiratime: false,
    };
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-o") => {
                let opts = it.next().ok_or_else(usage)?;
                let opts = opts
                    .to_str()
                    .ok_or_else(|| CliError::new(code::USAGE, "mount options must be valid UTF-8"))?;
                let opts: Vec<&str> = opts.split(',').filter(|o| !o.is_empty()).collect();
                refuse_remount(&opts)?;
                for opt in opts {
                    if !flags.set(opt) {
                        option(opt, &mut out)?;
                    }
                }
            }
            // -n (no mtab), -s (sloppy), -v (verbose), -f (fake) from mount(8): nothing to do.
            Some("-n" | "-s" | "-v" | "-f") => {}
            Some("-t") => {
                it.next();
            }
            _ => positional.push(a.clone()),
        }
    }
    let [source, target] = <[OsString; 2]>::try_from(positional).map_err(|_| usage())?;
    out.extend(flags.args());
    out.push("--".into());
    out.push(source);
    out.push(target);
    Ok(out)
}

/// `mount -o remount,...` reaches the helper as `-o ro,remount` (or `rw,remount`): a coffer
/// mount cannot change its options in place.
fn refuse_remount(opts: &[&str]) -> CliResult {
    if !opts.contains(&"remount") {
        return Ok(());
    }
    let what = if opts.contains(&"ro") {
        "mount again with -o ro"
    } else {
        "mount again with the new options"
    };
    Err(CliError::new(
        code::USAGE,
        format!("remount is not supported; unmount and {what}"),
    ))
}

fn option(opt: &str, out: &mut Vec<OsString>) -> CliResult {
    let (key, value) = match opt.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (opt, None),
    };
    let flag = |name: &str| -> CliResult<Vec<OsString>> {
        match value {
            None => Ok(vec![name.into()]),
            Some(_) => Err(CliError::new(
                code::USAGE,
                format!("mount option `{key}` takes no value"),
            )),
        }
    };
    let valued = |name: &str| -> CliResult<Vec<OsString>> {
        match value {
            Some(v) if !v.is_empty() => Ok(vec![name.into(), v.into()]),
            _ => Err(CliError::new(
                code::USAGE,
                format!("mount option `{key}` needs a value ({key}=...)"),
            )),
        }
    };
    let args = match key {
        "passfile" => valued("--passfile")?,
        "config" => valued("--config")?,
        "idle" => valued("--idle")?,
        "log" => valued("--log")?,
        "ro" => flag("--ro")?,
        "allow_other" => flag("--allow-other")?,
        "nonempty" => flag("--nonempty")?,
        "fg" => flag("--fg")?,
        k if IGNORED.contains(&k) || k.starts_with("x-") || k == "comment" => Vec::new(),
        _ => return Err(CliError::new(code::USAGE, format!("unknown mount option `{opt}`"))),
    };
    out.extend(args);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(args: &[&str]) -> CliResult<Vec<String>> {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        translate(&v).map(|o| o.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn fstab_options() {
        let got = t(&[
            "mount.fuse.coffer",
            "/v",
            "/m",
            "-o",
            "rw,passfile=/root/pw,allow_other,ro,nofail,x-systemd.automount",
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                "coffer",
                "mount",
                "--passfile",
                "/root/pw",
                "--allow-other",
                "--ro",
                "--dev",
                "--suid",
                "--",
                "/v",
                "/m"
            ]
        );
        assert!(t(&["mount.coffer", "/v", "/m", "-o", "bogus"])
            .unwrap_err()
            .message
            .contains("`bogus`"));
        assert!(t(&["mount.coffer", "/v"]).is_err());
        // What mount(8) leaves of `dev,suid` (nothing) and of a `user` mount (nosuid,nodev).
        let tail = |opts: &str| {
            let got = t(&["mount.coffer", "/v", "/m", "-o", opts]).unwrap();
            got[2..got.len() - 3].join(" ")
        };
        assert_eq!(tail("rw"), "--dev --suid");
        assert_eq!(tail("rw,nosuid,nodev,noexec,user"), "");
        assert_eq!(tail("nodev,dev,nosuid"), "--dev");
        assert_eq!(tail("noatime"), "--dev --suid --atime noatime");
        assert_eq!(tail("noatime,relatime,nodiratime,nodev"), "--suid --nodiratime");
        assert_eq!(tail("strictatime,nosuid,nodev"), "--atime strictatime");
        assert_eq!(tail("noatime,atime,nosuid,nodev"), "");
        let e = t(&["mount.coffer", "/v", "/m", "-o", "ro,remount,bogus"]).unwrap_err();
        assert_eq!(
            e.message,
            "remount is not supported; unmount and mount again with -o ro"
        );
        assert!(t(&["mount.coffer", "/v", "/m", "-o", "passfile"]).is_err());
        assert!(is_helper_name(std::ffi::OsStr::new("/sbin/mount.fuse.coffer")));
        assert!(!is_helper_name(std::ffi::OsStr::new("coffer")));
    }
}
