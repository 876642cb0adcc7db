//! coffer: an encrypted filesystem for folders kept in cloud sync.
//!
//! Layers, each depending only on those before it: [`crypto`] → [`format`] → [`vault`] → `fs` → `cli`.
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod crypto;
pub mod format;
pub mod fs;
pub mod vault;
