//! Per-file keys of file header version 3 (docs/FORMAT.md §15).
//!
//! Each file's blocks are sealed under a key of its own, so that a repeated random nonce can
//! only matter within one file: the key comes from the epoch's file-key root and the file ID
//! by HKDF-Expand. A second per-file key masks the write session carried in each block nonce,
//! so that raw nonces tell an observer nothing about the order in which blocks were written.

use std::fmt;

use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
use aes::Aes256;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

use super::keys::{info, key_box};
use super::{BlockCipher, MasterKey, SubKey};

/// Length of a file ID (the 16 bytes after the header version).
pub const FILE_ID_LEN: usize = 16;
/// Random bytes at the start of a block nonce that carries a write session.
pub const SESSION_NONCE_RANDOM_LEN: usize = 12;

/// The root of an epoch's per-file keys: HKDF-SHA256(epoch key, info `coffer v3 file keys`).
pub struct FileKeyRoot(SubKey<32>);

impl fmt::Debug for FileKeyRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKeyRoot(..)")
    }
}

impl FileKeyRoot {
    /// The root of the per-file keys of the epoch whose key is `epoch_key`.
    pub fn derive(epoch_key: &MasterKey) -> Self {
        FileKeyRoot(epoch_key.derive::<32>(info::V3_FILE_KEYS))
    }

    /// The keys of file `file_id`: HKDF-Expand(PRK = root, info = `coffer v3 file ` | file ID,
    /// 64 bytes); the first 32 key the file's blocks (AES-256-EAX), the last 32 mask the write
    /// sessions in its nonces (AES-256). One HMAC-SHA256 pair and two key schedules per call:
    /// callers derive once per open file, not per block.
    pub fn file_keys(&self, file_id: &[u8; FILE_ID_LEN]) -> FileKeys {
        let mut okm = key_box::<64>();
        let mut label = [0u8; info::V3_FILE.len() + FILE_ID_LEN];
        label[..info::V3_FILE.len()].copy_from_slice(info::V3_FILE.as_bytes());
        label[info::V3_FILE.len()..].copy_from_slice(file_id);
        // The root is a uniformly random 32-byte key, so it serves as the PRK directly
        // (RFC 5869 §3.3); 64 bytes are far below HKDF-SHA256's limit.
        let Ok(hk) = Hkdf::<Sha256>::from_prk(self.0.expose()) else {
            unreachable!("a 32-byte PRK is valid for HKDF-SHA256");
        };
        if hk.expand(&label, &mut okm[..]).is_err() {
            unreachable!("64 bytes are within HKDF-SHA256's output limit");
        }
        let mut content = key_box::<32>();
        content.copy_from_slice(&okm[..32]);
        let mut mask = key_box::<32>();
        mask.copy_from_slice(&okm[32..]);
        label.zeroize();
        FileKeys {
            content: BlockCipher::new(&content),
            mask: SessionMask(Aes256::new((&**mask).into())),
        }
    }
}

/// The two keys of one file of header version 3.
#[derive(Clone)]
pub struct FileKeys {
    /// Seals and opens the file's blocks.
    pub content: BlockCipher,
    /// Masks the write sessions in the file's block nonces.
    pub mask: SessionMask,
}

impl fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKeys(..)")
    }
}

/// AES-256 under a file's mask key: the 32-bit mask XORed onto the write session of a nonce is
/// the first 4 bytes of AES-256(mask key, the nonce's 12 random bytes | 00 00 00 00).
#[derive(Clone)]
pub struct SessionMask(Aes256);

impl fmt::Debug for SessionMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionMask(..)")
    }
}

impl SessionMask {
    /// The mask for a nonce whose random part is `random`.
    pub fn mask(&self, random: &[u8; SESSION_NONCE_RANDOM_LEN]) -> u32 {
        let mut block = [0u8; 16];
        block[..SESSION_NONCE_RANDOM_LEN].copy_from_slice(random);
        let mut a = Array(block);
        self.0.encrypt_block(&mut a);
        u32::from_be_bytes([a.0[0], a.0[1], a.0[2], a.0[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Known answers computed independently with Python's hmac/hashlib (HKDF) and
    /// pycryptodome (AES-256 ECB, AES-256 EAX): see docs/FORMAT.md §15.
    #[test]
    fn file_keys_are_pinned() {
        let master = MasterKey::from_bytes(std::array::from_fn(|i| i as u8));
        let root = FileKeyRoot::derive(&master);
        assert_eq!(hex(root.0.expose()), ROOT);
        let id: [u8; 16] = std::array::from_fn(|i| 0xf0 + i as u8);
        let keys = root.file_keys(&id);
        let random: [u8; 12] = std::array::from_fn(|i| 0xa0 + i as u8);
        assert_eq!(keys.mask.mask(&random), MASK);
        let sealed = keys
            .content
            .seal_with_nonce_to_vec(&[0x5a; 16], b"aad", b"coffer v3 per-file key");
        assert_eq!(hex(&sealed), SEALED);
    }

    #[test]
    fn each_file_has_its_own_keys() {
        let root = FileKeyRoot::derive(&MasterKey::from_bytes([9; 32]));
        let a = root.file_keys(&[1; 16]);
        let b = root.file_keys(&[2; 16]);
        let again = root.file_keys(&[1; 16]);
        let nonce = [3u8; 16];
        let seal = |k: &FileKeys| k.content.seal_with_nonce_to_vec(&nonce, b"", b"same plaintext");
        assert_eq!(seal(&a), seal(&again));
        assert_ne!(seal(&a), seal(&b));
        let r = [4u8; 12];
        assert_eq!(a.mask.mask(&r), again.mask.mask(&r));
        assert_ne!(a.mask.mask(&r), b.mask.mask(&r));
        // The root differs from the v1 content key of the same master key.
        let v1 = MasterKey::from_bytes([9; 32]).derive::<32>(info::CONTENT);
        assert_ne!(root.0.expose(), v1.expose());
    }

    #[test]
    fn debug_prints_no_bytes() {
        let root = FileKeyRoot::derive(&MasterKey::from_bytes([0xab; 32]));
        let keys = root.file_keys(&[0xcd; 16]);
        for s in [format!("{root:?}"), format!("{keys:?}"), format!("{:?}", keys.mask)] {
            assert!(!s.contains("ab") && !s.contains("cd"), "{s}");
        }
    }

    const ROOT: &str = "6edffdca64d6f785f3e147034c40c0004b7f30e9b6757a98d756d62cad9bcf20";
    const MASK: u32 = 0x995f_2486;
    const SEALED: &str =
        "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5ab4b0fe28027e52a9a051fc919c7d8d8438c14a50cf8d5b249f6c13f96b0e502ee0cdcff9e7dc";
}
