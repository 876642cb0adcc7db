//! `coffer export`: decrypt a whole vault into a plain tree (the restore path for backups and
//! machines without FUSE). Damaged items are reported and skipped (damaged blocks become zeros);
//! everything else is exported.

mod copy;
mod walk;

use std::path::{Path, PathBuf};

use coffer::format::names::NameEncoding;
use coffer::vault::walk::{walk_fd_budget, DirChain};
use coffer::vault::{classify_backing, plain_size_for, BackingName, DirFd, RawEntry, Vault};

use super::args::ExportArgs;
use super::error::{code, CliError, CliResult};
use super::open::open_vault;
use super::progress::Progress;

/// What the walk found.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    dirs: u64,
    links: u64,
    bytes: u64,
    damaged: u64,
    failed: u64,
}

/// Shared state of one export.
struct Export<'a> {
    vault: &'a Vault,
    progress: Progress,
    tally: Tally,
    as_root: bool,
    /// The directories being exported, the root first: the walk is a loop over this stack,
    /// not a recursion, so that a tree of any depth fits in the stack; their descriptors (in
    /// the vault and in OUTDIR) are in two [`DirChain`]s.
    frames: Vec<Frame>,
    /// Plaintext path of the top directory.
    plain: Vec<u8>,
}

/// A directory whose entries are being exported.
struct Frame {
    /// Its backing entries, in listing order.
    entries: Vec<RawEntry>,
    /// The next entry to export.
    next: usize,
    /// Backing path, for messages.
    rel: PathBuf,
    /// Length of the parent's plaintext path.
    parent_len: usize,
    /// A subdirectory's backing stat (its output's owner, mode and times are set once its
    /// children are done); `None` for the root.
    meta: Option<libc::stat>,
}

/// Runs `export`.
pub fn run(args: &ExportArgs) -> CliResult {
    prepare_outdir(&args.outdir, args.force)?;
    let vault = open_vault(&args.cipherdir, &args.open, true)?;
    let out = DirFd::open_path(&args.outdir).map_err(|e| CliError::io(&args.outdir, &e))?;
    let root = vault.root_dir()?;
    let budget = walk_fd_budget() / 2;
    let total = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        backing_bytes(&root.fd, vault.params().name_encoding, budget)
    } else {
        0
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut ex = Export {
        vault: &vault,
        progress: Progress::bytes(total),
        tally: Tally::default(),
        as_root,
        frames: Vec::new(),
        plain: Vec::new(),
    };
    let mut src = DirChain::new(root, budget).map_err(|e| CliError::io(&args.cipherdir, &e))?;
    let mut dst = DirChain::new(out, budget).map_err(|e| CliError::io(&args.outdir, &e))?;
    ex.walk(&mut src, &mut dst);
    ex.progress.finish();
    let t = &ex.tally;
    eprintln!(
        "coffer: exported {} files, {} directories, {} symlinks ({} bytes) to {}",
        t.files,
        t.dirs,
        t.links,
        t.bytes,
        args.outdir.display()
    );
    if t.failed > 0 {
        return Err(CliError::new(
            code::OTHER,
            format!("{} items could not be written; see the lines above", t.failed),
        ));
    }
    if t.damaged > 0 {
        return Err(CliError::new(
            code::DAMAGED,
            format!(
                "{} damaged items (listed above); everything else was exported",
                t.damaged
            ),
        ));
    }
    Ok(())
}

/// Creates OUTDIR if missing; refuses a non-empty one unless `force`.
fn prepare_outdir(outdir: &Path, force: bool) -> CliResult {
    match std::fs::read_dir(outdir) {
        Ok(mut it) => {
            if it.next().is_some() && !force {
                return Err(
                    CliError::new(code::TARGET, format!("{}: directory is not empty", outdir.display()))
                        .hint("use an empty directory, or --force to export into it anyway"),
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(outdir).map_err(|e| CliError::io(outdir, &e))
        }
        Err(e) => Err(CliError::io(outdir, &e)),
    }
}

/// Sum of plaintext file sizes, from backing sizes alone (for the progress bar). Directories
/// that cannot be opened count nothing.
fn backing_bytes(root: &DirFd, enc: NameEncoding, max_fds: usize) -> u64 {
    let Ok(mut chain) = root.try_clone().and_then(|r| DirChain::new(r, max_fds)) else {
        return 0;
    };
    // The entries of each directory on the path, each with the next one to look at.
    let mut stack = vec![(chain.top().and_then(|d| d.list()).unwrap_or_default(), 0usize)];
    let mut sum = 0;
    while let Some((entries, next)) = stack.last_mut() {
        let Some(e) = entries.get(*next) else {
            stack.pop();
            chain.pop();
            continue;
        };
        *next += 1;
        if !matches!(
            classify_backing(&e.name, enc),
            BackingName::Short(_) | BackingName::Long(_) | BackingName::Other
        ) {
            continue;
        }
        let name = e.name.clone();
        let Ok(dir) = chain.top() else {
            *next = entries.len();
            continue;
        };
        let Ok(st) = dir.stat(&name) else { continue };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => sum += plain_size_for(st.st_size as u64),
            libc::S_IFDIR => {
                let Ok(child) = dir.open_dir(&name) else { continue };
                let entries = child.list().unwrap_or_default();
                if chain.push(&name, child).is_ok() {
                    stack.push((entries, 0));
                }
            }
            _ => {}
        }
    }
    sum
}

impl Export<'_> {
    fn damaged(&mut self, what: &[u8], why: impl std::fmt::Display) {
        self.tally.damaged += 1;
        self.progress
            .println(&format!("coffer: damaged: {}: {why}", String::from_utf8_lossy(what)));
    }

    fn failed(&mut self, what: &[u8], why: impl std::fmt::Display) {
        self.tally.failed += 1;
        self.progress.println(&format!(
            "coffer: cannot export {}: {why}",
            String::from_utf8_lossy(what)
        ));
    }

    fn warn(&self, what: &[u8], why: impl std::fmt::Display) {
        self.progress
            .println(&format!("coffer: warning: {}: {why}", String::from_utf8_lossy(what)));
    }
}
