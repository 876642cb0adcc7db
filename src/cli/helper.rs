//! `mount.coffer` / `mount.fuse.coffer`: the mount(8) helper form, for /etc/fstab lines like
//! `/data/vault /mnt/private fuse.coffer passfile=/root/pw,allow_other,nofail 0 0`.
//! It translates `SOURCE TARGET [-o OPTS]` into `coffer mount` arguments.
//!
//! mount(8) consumes the options that only clear a kernel flag (`dev`, `suid`, `exec`,
//! `atime`) and hands the helper the rest (`mount -o dev,suid,noatime` runs `mount.coffer SRC
//! DIR -o rw,noatime`). For mount(8) the missing `nodev` means dev, but coffer mounts are
//! `nosuid,nodev` unless asked (mode bits and device nodes come unauthenticated from
//! CIPHERDIR), so `dev` / `suid` are taken from where the user wrote them: the `-o` options
//! when the helper is run by hand, else the mount's fstab line (see `fstab`). An explicit
//! `nodev` / `nosuid` (mount(8) adds them to `user` mounts) always wins. `remount` is refused
//! with a line that says what to do.

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
    dev: Option<bool>,
    suid: Option<bool>,
    atime: &'static str,
    nodiratime: bool,
}

impl Flags {
    /// Handles `opt` when it is one of these flags.
    fn set(&mut self, opt: &str) -> bool {
        match opt {
            "dev" | "nodev" => self.dev = Some(opt == "dev"),
            "suid" | "nosuid" => self.suid = Some(opt == "suid"),
            // `atime` only clears `noatime`: the kernel's default, relatime, again.
            "atime" | "relatime" => self.atime = "relatime",
            "noatime" | "strictatime" => self.atime = if opt == "noatime" { "noatime" } else { "strictatime" },
            "nodiratime" | "diratime" => self.nodiratime = opt == "nodiratime",
            _ => return false,
        }
        true
    }

    /// Fills in `dev` / `suid` that `-o` left open from `fstab_opts` (the mount's fstab line).
    fn complete(&mut self, fstab_opts: &[String]) {
        let last = |yes: &str, no: &str| {
            fstab_opts
                .iter()
                .rev()
                .find(|o| *o == yes || *o == no)
                .map(|o| o == yes)
        };
        self.dev = self.dev.or_else(|| last("dev", "nodev"));
        self.suid = self.suid.or_else(|| last("suid", "nosuid"));
    }

    fn args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        if self.dev == Some(true) {
            out.push("--dev".into());
        }
        if self.suid == Some(true) {
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
    translate_with(argv, super::fstab::options_of)
}

/// [`translate`], with `fstab(SOURCE, TARGET)` giving the options of the mount's fstab line.
fn translate_with(
    argv: &[OsString],
    fstab: impl Fn(&std::path::Path, &std::path::Path) -> Option<Vec<String>>,
) -> CliResult<Vec<OsString>> {
    let usage = || CliError::new(code::USAGE, "usage: mount.coffer CIPHERDIR MOUNTPOINT [-o OPTIONS]");
    let mut out: Vec<OsString> = vec!["coffer".into(), "mount".into()];
    let mut positional = Vec::new();
    let mut flags = Flags {
        dev: None,
        suid: None,
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
    if flags.dev.is_none() || flags.suid.is_none() {
        flags.complete(&fstab(source.as_ref(), target.as_ref()).unwrap_or_default());
    }
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
        "identity" => valued("--identity")?,
        "keyfile" => valued("--keyfile")?,
        "config" => valued("--config")?,
        "idle" => valued("--idle")?,
        "kernel_cache" => valued("--kernel-cache")?,
        "watcher" => valued("--watcher")?,
        "log" => valued("--log")?,
        "ro" => flag("--ro")?,
        "allow_other" => flag("--allow-other")?,
        "nonempty" => flag("--nonempty")?,
        "writeback_cache" => flag("--writeback-cache")?,
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

    fn with_fstab(fstab_opts: &str, args: &[&str]) -> CliResult<Vec<String>> {
        let v: Vec<OsString> = args.iter().map(OsString::from).collect();
        let fstab = |_: &std::path::Path, _: &std::path::Path| {
            (!fstab_opts.is_empty()).then(|| fstab_opts.split(',').map(str::to_string).collect())
        };
        translate_with(&v, fstab).map(|o| o.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    fn t(args: &[&str]) -> CliResult<Vec<String>> {
        with_fstab("", args)
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
        // mount(8) passes nothing for `dev,suid`: they come from the fstab line; an explicit
        // nodev/nosuid (as mount(8) adds to `user` mounts) wins.
        let tail = |fstab: &str, opts: &str| {
            let got = with_fstab(fstab, &["mount.coffer", "/v", "/m", "-o", opts]).unwrap();
            got[2..got.len() - 3].join(" ")
        };
        assert_eq!(tail("", "rw"), "");
        assert_eq!(
            tail("", "rw,kernel_cache=off,writeback_cache"),
            "--kernel-cache off --writeback-cache"
        );
        assert_eq!(
            tail("dev,suid,passfile=/p", "rw,passfile=/p"),
            "--passfile /p --dev --suid"
        );
        assert_eq!(
            tail("", "rw,identity=/root/.ssh/id_ed25519,keyfile=/media/k"),
            "--identity /root/.ssh/id_ed25519 --keyfile /media/k"
        );
        assert_eq!(tail("suid,nosuid,nodev,dev", "rw"), "--dev");
        assert_eq!(tail("user,dev,suid", "rw,nosuid,nodev,noexec,user"), "");
        assert_eq!(tail("", "nodev,dev,nosuid"), "--dev");
        assert_eq!(tail("", "noatime"), "--atime noatime");
        assert_eq!(tail("", "noatime,relatime,nodiratime,nodev"), "--nodiratime");
        assert_eq!(tail("", "strictatime"), "--atime strictatime");
        assert_eq!(tail("", "noatime,atime"), "");
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
