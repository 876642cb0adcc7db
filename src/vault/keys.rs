//! The keys a vault reads and writes with: one key set per key epoch (docs/FORMAT.md §15).
//!
//! A config-version-1 vault (and every reverse-mode vault) has one epoch of layout 1 and no
//! epoch ID. A config-version-2 vault lists its epochs; the newest seals everything written
//! now, the older ones are only read (objects left under them until `rekey` moves them).

use std::fmt;

use crate::crypto::{BlockCipher, CryptoError, KeySet, NONCE_LEN};
use crate::format::epochs::{EpochId, Layout};
use crate::format::sealed::NONCE_EPOCH_LEN;

/// The ciphers of one epoch.
pub struct EpochKeys {
    /// Its ID; `None` for the one epoch of a config-version-1 vault.
    pub id: Option<EpochId>,
    /// How its objects are laid out.
    pub layout: Layout,
    /// Its ciphers.
    pub set: KeySet,
}

impl fmt::Debug for EpochKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "EpochKeys {{ id: {:?}, layout: {:?} }}",
            self.id.map(|i| i.to_hex()),
            self.layout
        )
    }
}

impl EpochKeys {
    /// Seals a small object (symlink target, xattr value, pack) with `cipher`, one of this
    /// epoch's: a layout-3 epoch's nonce is its ID (4) | 12 random bytes, a layout-1 epoch's 16
    /// random bytes (docs/FORMAT.md §7, §8, §15.4).
    pub fn seal_small(&self, cipher: &BlockCipher, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce: [u8; NONCE_LEN] = crate::crypto::random_array()?;
        if let (Layout::V3, Some(id)) = (self.layout, self.id) {
            nonce[..NONCE_EPOCH_LEN].copy_from_slice(&id.0);
        }
        Ok(cipher.seal_with_nonce_to_vec(&nonce, aad, plain))
    }

    /// Whether a sealed small object may be this epoch's: a layout-3 epoch's nonces start with
    /// its ID; a layout-1 epoch's can start with anything.
    pub fn may_have_sealed(&self, sealed: &[u8]) -> bool {
        match (self.layout, self.id) {
            (Layout::V3, Some(id)) => sealed.get(..NONCE_EPOCH_LEN) == Some(&id.0[..]),
            _ => true,
        }
    }
}

impl EpochKeys {
    /// A value that tells this epoch's key apart from any other without showing it: its names
    /// key's SIV of a fixed probe (deterministic, one-way for anyone without the key).
    fn fingerprint(&self) -> Vec<u8> {
        self.set.names.encrypt(b"coffer epoch fingerprint", b"probe")
    }
}

/// Every epoch a vault can read, oldest first; never empty.
#[derive(Debug)]
pub struct VaultKeys {
    epochs: Vec<EpochKeys>,
}

impl VaultKeys {
    /// The one layout-1 key set of a config-version-1 (or reverse-mode) vault.
    pub fn single(set: KeySet) -> Self {
        VaultKeys {
            epochs: vec![EpochKeys {
                id: None,
                layout: Layout::V1,
                set,
            }],
        }
    }

    /// The epochs of a config-version-2 vault, oldest first; `None` if the list is empty.
    pub fn from_epochs(epochs: Vec<EpochKeys>) -> Option<Self> {
        (!epochs.is_empty()).then_some(VaultKeys { epochs })
    }

    /// These epochs with those of `more` that they lack (by ID) read too: `more`'s go before
    /// the newest, which stays the newest. A rekey that lost a race to another machine's keeps
    /// its own epochs readable this way until it has moved their objects.
    pub fn with_older(mut self, more: VaultKeys) -> VaultKeys {
        let at = self.epochs.len() - 1;
        let extra: Vec<EpochKeys> = more
            .epochs
            .into_iter()
            .filter(|e| e.id.is_none() || self.epochs.iter().all(|o| o.id != e.id))
            .collect();
        self.epochs.splice(at..at, extra);
        self
    }

    /// The epoch that seals everything written now.
    pub fn newest(&self) -> &EpochKeys {
        // Never empty: both constructors refuse an empty list.
        &self.epochs[self.epochs.len() - 1]
    }

    /// Every epoch, newest first: the order in which names and sealed objects are tried.
    pub fn newest_first(&self) -> impl Iterator<Item = &EpochKeys> {
        self.epochs.iter().rev()
    }

    /// The layout-3 epoch with this ID.
    pub fn by_id(&self, id: EpochId) -> Option<&EpochKeys> {
        self.epochs.iter().find(|e| e.id == Some(id))
    }

    /// The layout-3 epoch whose ID a sealed small object's nonce starts with (§15.4).
    pub fn v3_epoch_of(&self, sealed: &[u8]) -> Option<&EpochKeys> {
        let id: [u8; NONCE_EPOCH_LEN] = sealed.get(..NONCE_EPOCH_LEN)?.try_into().ok()?;
        self.by_id(EpochId(id)).filter(|e| e.layout == Layout::V3)
    }

    /// The layout-1 epoch (a config-version-1 vault's key, kept until `rekey --finish`).
    pub fn layout1(&self) -> Option<&EpochKeys> {
        self.epochs.iter().find(|e| e.layout == Layout::V1)
    }

    /// Whether `newer` holds every epoch of `self` with the same key (an epoch without an ID,
    /// a config-version-1 vault's key, is found by its key alone): the check before a running
    /// mount swaps its keys for a config that a rekey wrote, so nothing it reads is lost.
    pub fn covered_by(&self, newer: &VaultKeys) -> bool {
        self.epochs.iter().all(|e| {
            let fp = e.fingerprint();
            newer
                .epochs
                .iter()
                .any(|n| (e.id.is_none() || n.id == e.id) && n.layout == e.layout && n.fingerprint() == fp)
        })
    }

    /// Whether `newer`'s newest epoch is this set's newest (same ID and key): the check before
    /// a running mount drops its older epochs after `rekey --finish`.
    pub fn same_newest(&self, newer: &VaultKeys) -> bool {
        let (a, b) = (self.newest(), newer.newest());
        a.id == b.id && a.layout == b.layout && a.fingerprint() == b.fingerprint()
    }

    /// The IDs of the epochs held, oldest first (`None`: the ID-less layout-1 key of a
    /// config-version-1 vault, which a converted config lists as its layout-1 epoch).
    pub fn ids(&self) -> Vec<Option<EpochId>> {
        self.epochs.iter().map(|e| e.id).collect()
    }

    /// How many epochs there are.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Always false (a vault has at least one epoch); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn epochs_are_found_by_id_and_newest_first() {
        let v1 = EpochKeys {
            id: Some(EpochId([1; 4])),
            layout: Layout::V1,
            set: KeySet::derive(&MasterKey::from_bytes([1; 32]), false),
        };
        let v3 = EpochKeys {
            id: Some(EpochId([3; 4])),
            layout: Layout::V3,
            set: KeySet::derive_v3(&MasterKey::from_bytes([3; 32])),
        };
        let keys = VaultKeys::from_epochs(vec![v1, v3]).unwrap();
        assert_eq!(keys.newest().id, Some(EpochId([3; 4])));
        let order: Vec<_> = keys.newest_first().map(|e| e.layout).collect();
        assert_eq!(order, [Layout::V3, Layout::V1]);
        assert_eq!(keys.by_id(EpochId([1; 4])).unwrap().layout, Layout::V1);
        assert!(keys.by_id(EpochId([2; 4])).is_none());
        assert_eq!(keys.layout1().unwrap().id, Some(EpochId([1; 4])));
        assert!(VaultKeys::from_epochs(Vec::new()).is_none());
        let single = VaultKeys::single(KeySet::derive(&MasterKey::from_bytes([1; 32]), false));
        assert_eq!(single.len(), 1);
        assert!(single.newest().id.is_none());
        assert!(format!("{keys:?}").contains("03030303"));
        assert_eq!(keys.ids(), [Some(EpochId([1; 4])), Some(EpochId([3; 4]))]);
        assert_eq!(single.ids(), [None]);
    }

    /// Another key set's epochs join as older ones; the newest stays, an epoch both have is
    /// kept once.
    #[test]
    fn older_epochs_join_below_the_newest() {
        let v3 = |b: u8| EpochKeys {
            id: Some(EpochId([b; 4])),
            layout: Layout::V3,
            set: KeySet::derive_v3(&MasterKey::from_bytes([b; 32])),
        };
        let ours = VaultKeys::from_epochs(vec![v3(1), v3(2)]).unwrap();
        let theirs = VaultKeys::from_epochs(vec![v3(1), v3(3)]).unwrap();
        let both = ours.with_older(theirs);
        let ids: Vec<_> = both.newest_first().map(|e| e.id.unwrap().0[0]).collect();
        assert_eq!(ids, [2, 3, 1]);
    }
}
