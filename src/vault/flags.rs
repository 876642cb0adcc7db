//! Feature flags an open vault may still add to its config: a vault made before packed xattrs
//! gains `xattr_packs` the first time a write needs a pack (docs/FORMAT.md §3.4). Only a vault
//! unlocked with the password, not read-only, can rewrite its config; any other writes no new
//! packs and keeps one backing xattr per name.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::crypto::MasterKey;
use crate::format::config::{VaultParams, FLAG_XATTR_PACKS};

use super::unlock;

/// What rewriting the config takes: where it is, the master key and how it was opened (the
/// key-encryption key the password derived for a version-1/2 config, never the password
/// itself; a version-3 config needs the key alone).
#[derive(Debug)]
pub struct ConfigWriter {
    path: PathBuf,
    master: MasterKey,
    access: unlock::slots::Access,
}

impl ConfigWriter {
    /// A writer for the config at `path`, unlocked to `master` through `access`
    /// ([`unlock::slots::unlock_any`]).
    pub fn new(path: PathBuf, master: MasterKey, access: unlock::slots::Access) -> ConfigWriter {
        ConfigWriter { path, master, access }
    }
}

/// The flags a write may depend on, as they are now (set at unlock or added since).
#[derive(Debug)]
pub(super) struct LiveFlags {
    xattr_packs: AtomicBool,
    /// None: the config cannot be rewritten (recovery key, read-only, or a failed add).
    writer: Mutex<Option<ConfigWriter>>,
}

impl LiveFlags {
    pub(super) fn new(params: &VaultParams) -> LiveFlags {
        LiveFlags {
            xattr_packs: AtomicBool::new(params.has_flag(FLAG_XATTR_PACKS)),
            writer: Mutex::new(None),
        }
    }

    pub(super) fn set_writer(&mut self, writer: ConfigWriter) {
        *self.writer.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(writer);
    }

    /// Whether the config has `xattr_packs` now.
    pub(super) fn has_xattr_packs(&self) -> bool {
        self.xattr_packs.load(Ordering::Acquire)
    }

    /// Whether packs may be written: the config has `xattr_packs`, or it was added now. A
    /// config that cannot be rewritten is logged once and not tried again.
    pub(super) fn ensure_xattr_packs(&self) -> bool {
        if self.has_xattr_packs() {
            return true;
        }
        let mut writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if self.has_xattr_packs() {
            return true;
        }
        let Some(w) = writer.as_ref() else { return false };
        match unlock::add_flag(&w.path, &w.master, &w.access, FLAG_XATTR_PACKS) {
            Ok(_) => {
                log::info!(
                    "{}: feature flag `{FLAG_XATTR_PACKS}` added (first packed xattr)",
                    w.path.display()
                );
                self.xattr_packs.store(true, Ordering::Release);
                true
            }
            Err(e) => {
                log::warn!(
                    "{}: cannot add feature flag `{FLAG_XATTR_PACKS}` ({e}); xattrs stay one per backing xattr",
                    w.path.display()
                );
                *writer = None;
                false
            }
        }
    }
}
