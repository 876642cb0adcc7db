//! `coffer cat`: decrypt one file of a vault to stdout.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use coffer::vault::{CryptFile, Vault, VaultError};

use super::args::CatArgs;
use super::error::{code, CliError, CliResult};
use super::open::open_vault;

/// Read size for streaming.
const CHUNK: usize = 1 << 20;

/// Runs `cat`.
pub fn run(args: &CatArgs) -> CliResult {
    let vault = open_vault(&args.cipherdir, &args.open, true)?;
    let shown = args.path.to_string_lossy();
    let file = open_plain_file(&vault, args.path.as_bytes(), &shown)?;
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; CHUNK];
    let mut off = 0u64;
    loop {
        let n = file.read_at(&mut buf, off)?;
        if n == 0 {
            break;
        }
        match out.write_all(&buf[..n]) {
            Ok(()) => {}
            // `coffer cat ... | head`: the reader has gone, which is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => {
                return Err(CliError::new(
                    code::OTHER,
                    format!("stdout: {}", super::error::strip_os_error(&e)),
                ))
            }
        }
        off += n as u64;
    }
    match out.flush() {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(CliError::new(
            code::OTHER,
            format!("stdout: {}", super::error::strip_os_error(&e)),
        )),
        _ => Ok(()),
    }
}

/// Opens the file at a plaintext path (conflict copies included), with a clear message for a
/// directory, a symlink or a missing path.
fn open_plain_file(vault: &Vault, path: &[u8], shown: &str) -> CliResult<CryptFile> {
    let (parent, name) = match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let dir = vault.open_dir_path(parent).map_err(|e| not_found_in_vault(e, shown))?;
    let cname = vault.resolve(&dir, name).map_err(|e| not_found_in_vault(e, shown))?;
    let st = dir
        .fd
        .stat(&cname.entry)
        .map_err(|e| not_found_in_vault(VaultError::io(dir.rel_child(&cname.entry), e), shown))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => Ok(vault.open_file(&dir, &cname.entry, false)?),
        libc::S_IFDIR => Err(CliError::new(code::OTHER, format!("{shown}: is a directory"))),
        libc::S_IFLNK => Err(CliError::new(code::OTHER, format!("{shown}: is a symlink"))),
        _ => Err(CliError::new(code::OTHER, format!("{shown}: not a regular file"))),
    }
}

/// A missing plaintext path is reported by its plaintext name, not its backing name.
pub fn not_found_in_vault(e: VaultError, shown: &str) -> CliError {
    use coffer::format::FormatError;
    match &e {
        VaultError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => {
            CliError::new(code::OTHER, format!("{shown}: no such file or directory in the vault"))
        }
        VaultError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOTDIR) => {
            CliError::new(code::OTHER, format!("{shown}: a parent is not a directory"))
        }
        VaultError::Name(FormatError::InvalidName) => CliError::new(code::USAGE, format!("{shown}: invalid path")),
        _ => e.into(),
    }
}
