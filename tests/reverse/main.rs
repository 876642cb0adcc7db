//! Reverse-mode tests, one binary: the read-only encrypted view of a plain tree, its CLI, live
//! changes of the plain tree under a mount, and backups of the view with rsync.

#[path = "../support/mod.rs"]
mod support;

mod changes;
mod cli;
mod live;
mod mount;
