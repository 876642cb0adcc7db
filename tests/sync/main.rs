//! Sync-client tests, one binary: conflict copies, in-place rewriters, the provider limits, the
//! frozen sync fixture, live changes under a mount, and real rclone and Syncthing runs.

#[path = "../support/mod.rs"]
mod support;

mod conflicts;
mod fixture;
mod inplace;
mod kernel_cache;
mod live;
mod provider_limits;
mod rclone;
mod syncthing;
