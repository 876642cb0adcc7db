//! Tests of the `coffer` command line that need no mount, one binary: errors and their
//! hints, export, fsck, passwd, recovery, the generated docs, and FORMAT.md's code names.

#[path = "../support/mod.rs"]
mod support;

mod docs;
mod docs_tokens;
mod errors;
mod export;
mod fsck;
mod passwd;
mod prompt;
mod recovery;
