//! Layer 2: pure byte layouts and offset math (docs/FORMAT.md). No I/O beyond what is handed in.

pub mod backing_name;
pub mod config;
pub mod conflict;
pub mod epochs;
mod error;
pub mod header;
pub mod names;
pub mod offsets;
pub mod recovery;
pub mod sealed;
pub mod session;
pub mod xattr_pack;

pub use error::FormatError;

/// The config version (`format_version` in `coffer.conf`, first field of the recovery key) this
/// build reads and writes. Independent of the file header version (`header::FILE_V1`, `FILE_V2`, `FILE_V3`).
pub const FORMAT_VERSION: u16 = 1;
