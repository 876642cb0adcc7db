//! Key newtypes (zeroized on drop, Debug without bytes) and the HKDF subkey hierarchy.
//!
//! Info strings are part of the format (docs/FORMAT.md, "Key hierarchy"); never change them.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{BlockCipher, CryptoError, FileKeyRoot, NameCipher};

/// Length of the master key in bytes.
pub const MASTER_KEY_LEN: usize = 32;

/// The vault's 32-byte master key. Every other key derives from it.
pub struct MasterKey(Box<Zeroizing<[u8; MASTER_KEY_LEN]>>);

/// A zeroed key buffer on the heap: keys are written into it in place, and moving the owner
/// moves only the pointer, so no stack copy of the key is left behind by a move.
pub(super) fn key_box<const N: usize>() -> Box<Zeroizing<[u8; N]>> {
    Box::new(Zeroizing::new([0u8; N]))
}

impl Clone for MasterKey {
    fn clone(&self) -> Self {
        let mut k = key_box();
        k.copy_from_slice(&self.0[..]);
        MasterKey(k)
    }
}

impl MasterKey {
    /// Wraps raw key bytes (from the config unwrap or a recovery key).
    pub fn from_bytes(bytes: [u8; MASTER_KEY_LEN]) -> Self {
        let mut k = key_box::<MASTER_KEY_LEN>();
        k.copy_from_slice(&bytes);
        let mut bytes = bytes;
        zeroize::Zeroize::zeroize(&mut bytes);
        MasterKey(k)
    }

    /// The key in `bytes`, copied straight into its zeroized home (no stack copy); `None`
    /// unless `bytes` is exactly [`MASTER_KEY_LEN`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != MASTER_KEY_LEN {
            return None;
        }
        let mut k = key_box::<MASTER_KEY_LEN>();
        k.copy_from_slice(bytes);
        Some(MasterKey(k))
    }

    /// A fresh random master key.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut k = key_box::<MASTER_KEY_LEN>();
        super::random_bytes(&mut k[..])?;
        Ok(MasterKey(k))
    }

    /// The raw bytes, for wrapping and for printing the recovery key only.
    pub fn expose(&self) -> &[u8; MASTER_KEY_LEN] {
        &self.0
    }

    /// HKDF-SHA256(ikm = master key, salt = none, info) expanded to `N` bytes.
    pub fn derive<const N: usize>(&self, info: &str) -> SubKey<N> {
        let hk = Hkdf::<Sha256>::new(None, &self.0[..]);
        let mut out = key_box::<N>();
        // N is at most 64 here, far below HKDF-SHA256's 255*32 limit.
        if hk.expand(info.as_bytes(), &mut out[..]).is_err() {
            unreachable!("HKDF output length {N} is within limits");
        }
        SubKey(out)
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// A derived key of `N` bytes.
pub struct SubKey<const N: usize>(Box<Zeroizing<[u8; N]>>);

impl<const N: usize> SubKey<N> {
    /// The raw bytes, handed to a cipher constructor.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for SubKey<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubKey<{N}>(..)")
    }
}

/// The key derived from the password, used only to wrap the master key.
pub struct Kek(pub(super) Box<Zeroizing<[u8; 32]>>);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// The wrap cipher for this key.
    pub fn cipher(&self) -> BlockCipher {
        BlockCipher::new(&self.0)
    }
}

/// HKDF info strings, one per purpose (their `v1` is part of the string, not a version field).
/// Reverse vaults use the `reverse` set.
pub mod info {
    /// File content blocks (AES-256-EAX).
    pub const CONTENT: &str = "coffer v1 file content";
    /// File and directory names (AES-256-SIV, 64-byte key).
    pub const NAMES: &str = "coffer v1 file names";
    /// Symlink targets (AES-256-EAX).
    pub const SYMLINKS: &str = "coffer v1 symlink targets";
    /// xattr names (AES-256-SIV, 64-byte key).
    pub const XATTR_NAMES: &str = "coffer v1 xattr names";
    /// xattr values (AES-256-EAX).
    pub const XATTR_VALUES: &str = "coffer v1 xattr values";
    /// HMAC-SHA256 over the canonical config encoding.
    pub const CONFIG_MAC: &str = "coffer v1 config mac";
    /// File header version 3: the root of an epoch's per-file keys (`crypto::FileKeyRoot`).
    pub const V3_FILE_KEYS: &str = "coffer v3 file keys";
    /// File header version 3: the info prefix of one file's keys, followed by its 16-byte ID.
    pub const V3_FILE: &str = "coffer v3 file ";
    /// File header version 3 epochs: file and directory names (AES-256-SIV, 64-byte key).
    pub const V3_NAMES: &str = "coffer v3 file names";
    /// File header version 3 epochs: symlink targets (AES-256-EAX).
    pub const V3_SYMLINKS: &str = "coffer v3 symlink targets";
    /// File header version 3 epochs: xattr names (AES-256-SIV, 64-byte key).
    pub const V3_XATTR_NAMES: &str = "coffer v3 xattr names";
    /// File header version 3 epochs: xattr values and packs (AES-256-EAX).
    pub const V3_XATTR_VALUES: &str = "coffer v3 xattr values";
    /// Config version 2: HMAC-SHA256 over the canonical config encoding, under the newest epoch.
    pub const V3_CONFIG_MAC: &str = "coffer v3 config mac";
    /// Config version 2: seals older epochs' keys under the newest epoch (AES-256-EAX).
    pub const V3_EPOCH_KEYS: &str = "coffer v3 epoch keys";
    /// Key slots' sealed descriptions (AES-256-EAX, config version 3).
    pub const V3_SLOT_INFO: &str = "coffer v3 slot info";
    /// Prefix added to every info string of a reverse-mode vault.
    pub const REVERSE_PREFIX: &str = "reverse ";
    /// Reverse mode: keyed PRF that derives block nonces from (file ID, block number, plaintext).
    pub const REVERSE_NONCE_PRF: &str = "reverse coffer v1 nonce prf";
    /// Reverse mode: keyed PRF that derives file IDs and directory IVs from relative paths.
    pub const REVERSE_PATH_PRF: &str = "reverse coffer v1 path prf";
}

/// How the blocks of files are keyed.
///
/// Each variant is boxed: an enum holding the ciphers inline has padding between its tag and
/// the 16-byte-aligned cipher, and a move into the key set's allocation can carry leftover key
/// bytes from the stack into that padding, which no cipher's wipe reaches. A box holds the
/// cipher alone, wiped whole on drop. (Codecs borrow the cipher once per file, so the pointer
/// costs nothing per block.)
pub enum ContentKey {
    /// One key seals every block of every file (file header versions 1 and 2).
    Shared(Box<BlockCipher>),
    /// Each file has keys of its own, derived from its file ID (file header version 3).
    PerFile(Box<FileKeyRoot>),
}

impl ContentKey {
    /// The shared content key, if this is one.
    pub fn shared(&self) -> Option<&BlockCipher> {
        match self {
            ContentKey::Shared(c) => Some(c),
            ContentKey::PerFile(_) => None,
        }
    }
}

/// All ciphers of one key (a vault's master key, or one epoch's key), built once.
pub struct KeySet {
    /// File content blocks.
    pub content: ContentKey,
    /// File names.
    pub names: NameCipher,
    /// Symlink targets.
    pub symlinks: BlockCipher,
    /// xattr names.
    pub xattr_names: NameCipher,
    /// xattr values.
    pub xattr_values: BlockCipher,
    /// Config MAC key.
    pub config_mac: SubKey<32>,
    reverse: bool,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySet {{ reverse: {} }}", self.reverse)
    }
}

impl KeySet {
    /// Derives every subkey. `reverse` selects the reverse-mode key set (config flag `reverse`).
    pub fn derive(master: &MasterKey, reverse: bool) -> Self {
        let name = |s: &str| {
            if reverse {
                format!("{}{s}", info::REVERSE_PREFIX)
            } else {
                s.to_string()
            }
        };
        KeySet {
            content: ContentKey::Shared(Box::new(BlockCipher::new(
                master.derive::<32>(&name(info::CONTENT)).expose(),
            ))),
            names: NameCipher::new(master.derive::<64>(&name(info::NAMES)).expose()),
            symlinks: BlockCipher::new(master.derive::<32>(&name(info::SYMLINKS)).expose()),
            xattr_names: NameCipher::new(master.derive::<64>(&name(info::XATTR_NAMES)).expose()),
            xattr_values: BlockCipher::new(master.derive::<32>(&name(info::XATTR_VALUES)).expose()),
            // The config MAC key is the same for both modes: the MAC covers the flag itself.
            config_mac: master.derive::<32>(info::CONFIG_MAC),
            reverse,
        }
    }

    /// Derives every subkey of a layout-3 epoch (config version 2): per-file content keys and
    /// the `coffer v3` info strings (docs/FORMAT.md §15.2).
    pub fn derive_v3(epoch_key: &MasterKey) -> Self {
        KeySet {
            content: ContentKey::PerFile(Box::new(FileKeyRoot::derive(epoch_key))),
            names: NameCipher::new(epoch_key.derive::<64>(info::V3_NAMES).expose()),
            symlinks: BlockCipher::new(epoch_key.derive::<32>(info::V3_SYMLINKS).expose()),
            xattr_names: NameCipher::new(epoch_key.derive::<64>(info::V3_XATTR_NAMES).expose()),
            xattr_values: BlockCipher::new(epoch_key.derive::<32>(info::V3_XATTR_VALUES).expose()),
            config_mac: epoch_key.derive::<32>(info::V3_CONFIG_MAC),
            reverse: false,
        }
    }

    /// Whether this is the reverse-mode key set.
    pub fn is_reverse(&self) -> bool {
        self.reverse
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_bytes() {
        let mk = MasterKey::from_bytes([0xab; 32]);
        assert_eq!(format!("{mk:?}"), "MasterKey(..)");
        let sk = mk.derive::<32>(info::CONTENT);
        assert_eq!(format!("{sk:?}"), "SubKey<32>(..)");
        assert!(!format!("{:?}", KeySet::derive(&mk, false)).contains("ab"));
    }

    #[test]
    fn subkeys_are_distinct_and_stable() {
        let mk = MasterKey::from_bytes([7; 32]);
        let all = [
            info::CONTENT,
            info::NAMES,
            info::SYMLINKS,
            info::XATTR_NAMES,
            info::XATTR_VALUES,
            info::CONFIG_MAC,
        ];
        let keys: Vec<[u8; 32]> = all.iter().map(|i| *mk.derive::<32>(i).expose()).collect();
        for i in 0..keys.len() {
            for j in i + 1..keys.len() {
                assert_ne!(keys[i], keys[j], "{} vs {}", all[i], all[j]);
            }
        }
        // Pinned: HKDF-SHA256(ikm=[7;32], info="coffer v1 file content").
        // Computed independently (Python hmac/hashlib HKDF-SHA256, empty salt).
        let want = "76fddb17cca61aba89dad340399f0fb413b7788ed74349fec44fc8194d2db7e6";
        let got: String = keys[0].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }
}
