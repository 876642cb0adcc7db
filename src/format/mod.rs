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

/// The newest config version (`format_version` in `coffer.conf`, first field of the recovery
/// key) this build reads. Independent of the file header version (`header::FILE_V1`, `FILE_V2`, `FILE_V3`).
pub const FORMAT_VERSION: u16 = CONFIG_V3;
/// Config version 1: one master key for the vault's life (docs/FORMAT.md §3).
pub const CONFIG_V1: u16 = 1;
/// Config version 2: key epochs (docs/FORMAT.md §15.5).
pub const CONFIG_V2: u16 = 2;
/// Config version 3: key epochs and key slots (docs/FORMAT.md §16).
pub const CONFIG_V3: u16 = 3;
