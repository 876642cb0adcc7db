//! Reverse mode over FUSE: a read-only mount of the encrypted view of a plain directory
//! ([`ReverseVault`](crate::vault::reverse::ReverseVault)), served through the shared adapter
//! and mounted by [`fs::mount`](super::mount). Every write operation fails with EROFS; xattrs
//! are not exposed.
//!
//! Reuses the forward mount's pieces: the inode table ([`Inodes`](super::inodes::Inodes)),
//! stat conversion ([`to_attr`](super::attr::to_attr)), handle tables. Files: `nodes` (what
//! each inode stands for), `ops` (the [`Ops`](super::ops::Ops) it serves).

mod nodes;
mod ops;

pub use nodes::ReverseFs;
