//! How many requests of each kind the kernel sent a mount: counted where every request
//! arrives (the adapter), read through the control socket (`coffer stats`) to see what a
//! workload costs in FUSE round trips.

use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of FUSE request, as the adapter serves it (named as the FUSE operations are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
#[allow(missing_docs)]
pub enum Req {
    Lookup,
    Forget,
    Getattr,
    Setattr,
    Readlink,
    Mknod,
    Mkdir,
    Unlink,
    Rmdir,
    Symlink,
    Rename,
    Link,
    Open,
    Read,
    Write,
    Flush,
    Release,
    Fsync,
    Opendir,
    Readdir,
    Readdirplus,
    Releasedir,
    Fsyncdir,
    Statfs,
    Setxattr,
    Getxattr,
    Listxattr,
    Removexattr,
    Access,
    Create,
    Fallocate,
    Lseek,
}

/// The request kinds' names, in [`Req`] order.
pub const REQ_NAMES: [&str; 32] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "fallocate",
    "lseek",
];

/// Requests served so far, by kind.
#[derive(Debug)]
pub struct RequestCounts([AtomicU64; REQ_NAMES.len()]);

impl Default for RequestCounts {
    fn default() -> Self {
        RequestCounts(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl RequestCounts {
    /// Counts one request of kind `r`.
    pub fn add(&self, r: Req) {
        self.0[r as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Every kind with its count (kinds never seen included), in [`REQ_NAMES`] order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        REQ_NAMES
            .iter()
            .zip(&self.0)
            .map(|(n, c)| (*n, c.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind() {
        let c = RequestCounts::default();
        c.add(Req::Lookup);
        c.add(Req::Lookup);
        c.add(Req::Lseek);
        let s = c.snapshot();
        assert_eq!(s[0], ("lookup", 2));
        assert_eq!(s[s.len() - 1], ("lseek", 1));
        assert_eq!(s.iter().map(|(_, n)| n).sum::<u64>(), 3);
    }
}
