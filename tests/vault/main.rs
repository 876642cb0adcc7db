//! Library-level tests, one binary: the block codec and known answers, vault entries and
//! sessions, conflict names, and the model and fuzz proptests. No FUSE mount, no daemon.

#[path = "../support/mod.rs"]
mod support;

mod conflicts;
mod content_batch;
mod eax_diff;
mod entries;
mod fuzz;
mod kat;
mod model;
mod sessions;
