//! Helpers shared by every test binary: the group binaries (tests/<group>/main.rs) and the
//! standalone ones (tests/<name>.rs) alike.
#![allow(dead_code)]

pub mod cli;
pub mod common;
pub mod crashsim;
pub mod daemon;
pub mod data;
pub mod epochs;
pub mod reverse;
pub mod sync;
pub mod vectors;

/// `dir/f`, opened read-write and created if missing (never truncated): the backing file the
/// library-level content tests hand to `CryptFile`.
pub fn backing_file(dir: &tempfile::TempDir) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join("f"))
        .unwrap()
}

/// The committed fixtures: tests/fixtures.
pub fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
