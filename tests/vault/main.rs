//! Vault-level tests, one binary: the block codec and known answers, vault entries and
//! sessions, conflict names, the model and fuzz proptests, tampered CIPHERDIRs, the frozen
//! format fixtures (opened through the library and once through a mount) and fsck against the
//! committed broken vaults; names, symlink targets and xattrs under key epochs.

#[path = "../support/mod.rs"]
mod support;

mod conflicts;
mod content_batch;
mod eax_diff;
mod entries;
mod fixture;
mod fsck_fixtures;
mod fuzz;
mod kat;
mod migrate;
mod model;
mod sessions;
mod tamper;
mod v3;
mod v3names;
