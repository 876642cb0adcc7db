//! Layer 2: pure byte layouts and offset math (docs/FORMAT.md). No I/O beyond what is handed in.

pub mod backing_name;
pub mod config;
pub mod conflict;
mod error;
pub mod header;
pub mod names;
pub mod offsets;
pub mod recovery;
pub mod sealed;
pub mod session;
pub mod xattr_pack;

pub use error::FormatError;

/// The on-disk format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
