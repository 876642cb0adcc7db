//! `coffer encrypt-name` / `coffer decrypt-name`: translate paths between the plaintext view
//! and CIPHERDIR (support tools: find the backing file behind an error, or the reverse).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::args::NameArgs;
use super::cat::not_found_in_vault;
use super::error::{code, CliError, CliResult};
use super::open::open_vault;

/// The non-empty components of a `/`-separated byte path.
fn components(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&c| c == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect()
}

fn print_line(bytes: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
        .map_err(|e| CliError::new(code::OTHER, format!("stdout: {}", super::error::strip_os_error(&e))))
}

/// Runs `encrypt-name`: prints the backing path (relative to CIPHERDIR) of a plaintext path.
/// The last component need not exist; its parent must.
pub fn encrypt(args: &NameArgs) -> CliResult {
    let vault = open_vault(&args.cipherdir, &args.open, true)?;
    let shown = args.path.to_string_lossy();
    let comps = components(args.path.as_bytes());
    let Some((last, parents)) = comps.split_last() else {
        return Err(CliError::new(
            code::USAGE,
            "give a path inside the vault, e.g. docs/a.txt",
        ));
    };
    let parent = vault
        .open_dir_path(&parents.join(&b'/'))
        .map_err(|e| not_found_in_vault(e, &shown))?;
    let name = vault
        .cipher_name_existing(&parent, last)
        .map_err(|e| not_found_in_vault(e, &shown))?;
    print_line(parent.rel_child(&name.entry).as_os_str().as_bytes())?;
    if let Some(long) = name.long {
        eprintln!(
            "coffer: long name: the encrypted name is stored in {}",
            parent.rel_child(&long.sidecar).display()
        );
    }
    Ok(())
}

/// Runs `decrypt-name`: prints the plaintext path of a backing path (relative to CIPHERDIR, or
/// absolute under it).
pub fn decrypt(args: &NameArgs) -> CliResult {
    let vault = open_vault(&args.cipherdir, &args.open, true)?;
    let raw = Path::new(&args.path);
    let rel = match raw.strip_prefix(&args.cipherdir) {
        Ok(r) if raw.is_absolute() => r,
        _ => raw,
    };
    let comps = components(rel.as_os_str().as_bytes());
    if comps.is_empty() {
        return Err(CliError::new(code::USAGE, "give a backing path relative to CIPHERDIR"));
    }
    let mut dir = vault.root_dir()?;
    let mut plain: Vec<Vec<u8>> = Vec::with_capacity(comps.len());
    for (i, comp) in comps.iter().enumerate() {
        let shown = String::from_utf8_lossy(comp);
        match vault.plain_name(&dir, comp)? {
            Some(p) => plain.push(p),
            None => {
                return Err(CliError::new(
                    code::OTHER,
                    format!("{shown}: coffer's own file (directory IV, sidecar or temporary file), not a vault entry"),
                ))
            }
        }
        if i + 1 < comps.len() {
            dir = dir.open_child(&vault, comp)?;
        }
    }
    print_line(&plain.join(&b'/'))
}
