//! Deterministic AES-256-SIV (RFC 5297, crate `aes-siv`) for file and xattr names.

use std::fmt;

use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;

use super::CryptoError;

/// SIV tag length prepended to every encrypted name.
pub const SIV_TAG_LEN: usize = 16;

/// An AES-256-SIV key (64 bytes: MAC half then CTR half).
pub struct NameCipher {
    key: zeroize::Zeroizing<[u8; 64]>,
}

impl fmt::Debug for NameCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameCipher(..)")
    }
}

impl NameCipher {
    /// A cipher for the given 64-byte key.
    pub fn new(key: &[u8; 64]) -> Self {
        NameCipher {
            key: zeroize::Zeroizing::new(*key),
        }
    }

    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new((&*self.key).into())
    }

    /// `SIV tag | ciphertext` of `plain`, with the given associated-data header (e.g. the diriv).
    pub fn encrypt(&self, ad: &[u8], plain: &[u8]) -> Vec<u8> {
        match self.siv().encrypt([ad], plain) {
            Ok(v) => v,
            // aes-siv only refuses more than 126 headers; coffer passes exactly one.
            Err(_) => unreachable!("one SIV header is within limits"),
        }
    }

    /// Inverse of [`encrypt`](Self::encrypt); fails if anything was altered.
    pub fn decrypt(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < SIV_TAG_LEN {
            return Err(CryptoError::Length("SIV message shorter than its tag"));
        }
        self.siv().decrypt([ad], sealed).map_err(|_| CryptoError::Auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_ad_bound() {
        let c = NameCipher::new(&[3; 64]);
        let a = c.encrypt(b"iv1", b"name.txt");
        assert_eq!(a, c.encrypt(b"iv1", b"name.txt"));
        assert_ne!(a, c.encrypt(b"iv2", b"name.txt"));
        assert_eq!(c.decrypt(b"iv1", &a).unwrap(), b"name.txt");
        assert_eq!(c.decrypt(b"iv2", &a), Err(CryptoError::Auth));
        assert!(c.decrypt(b"iv1", &a[..10]).is_err());
    }
}
