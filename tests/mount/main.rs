//! Forward-mount tests through FUSE, one binary: basic behaviour, every operation against a plain
//! directory, concurrency, fast paths, real programs, a randomized differential run, sessions and
//! mount flags, a sparse file past 4 GiB, no plaintext in CIPHERDIR, and fsck beside a mount.
//! Suites that change process-wide state (umask, signal handlers, descriptor limits) or switch
//! users keep binaries of their own: mount_semantics, mount_signal, mount_harsh, mount_nonroot.

#[path = "../support/mod.rs"]
mod support;

mod basic;
mod concurrency;
mod fastpaths;
mod fsck;
mod leak;
mod ops;
mod programs;
mod random;
mod session;
mod sparse;
mod v3;
