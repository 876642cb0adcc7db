//! Tests of the `coffer` command line, one binary: errors and their hints, export, fsck,
//! passwd, recovery, the generated docs, FORMAT.md's code names, and `coffer mount` itself
//! (background and foreground mounts, --idle, the mount.fuse.coffer form; needs /dev/fuse).

#[path = "../support/mod.rs"]
mod support;

mod docs;
mod docs_tokens;
mod errors;
mod export;
mod fsck;
mod info;
mod keys;
mod mount;
mod passwd;
mod prompt;
mod recovery;
mod rekey;
mod rekey_elsewhere;
mod rekey_online;
mod rekey_race;
