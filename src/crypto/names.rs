//! Deterministic AES-256-SIV (RFC 5297, crate `aes-siv`) for file and xattr names.

use std::fmt;

use aes_siv::aead::KeyInit;
use aes_siv::siv::Aes256Siv;

use super::CryptoError;

/// SIV tag length prepended to every encrypted name.
pub const SIV_TAG_LEN: usize = 16;
/// Names are padded to a multiple of this many bytes before encryption.
pub const NAME_PAD: usize = 16;

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

    /// Encrypts a name padded to a multiple of 16 bytes (PKCS#7: 1..=16 bytes of value n), so
    /// the backing name reveals the length only to 16 bytes — as gocryptfs does.
    pub fn encrypt_name(&self, ad: &[u8], name: &[u8]) -> Vec<u8> {
        let pad = NAME_PAD - name.len() % NAME_PAD;
        let mut padded = zeroize::Zeroizing::new(Vec::with_capacity(name.len() + pad));
        padded.extend_from_slice(name);
        padded.resize(name.len() + pad, pad as u8);
        self.encrypt(ad, &padded)
    }

    /// Inverse of [`encrypt_name`](Self::encrypt_name): authenticates, then checks and strips
    /// the padding.
    pub fn decrypt_name(&self, ad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut plain = self.decrypt(ad, sealed)?;
        let pad = usize::from(*plain.last().ok_or(CryptoError::Length("empty padded name"))?);
        if pad == 0
            || pad > NAME_PAD
            || pad > plain.len()
            || plain[plain.len() - pad..].iter().any(|&b| usize::from(b) != pad)
        {
            return Err(CryptoError::Length("bad name padding"));
        }
        plain.truncate(plain.len() - pad);
        Ok(plain)
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
    fn padded_names() {
        let c = NameCipher::new(&[3; 64]);
        for n in 0..=40usize {
            let name = vec![b'x'; n];
            let sealed = c.encrypt_name(b"iv", &name);
            assert_eq!(sealed.len(), SIV_TAG_LEN + (n / 16 + 1) * 16, "{n}");
            assert_eq!(c.decrypt_name(b"iv", &sealed).unwrap(), name);
        }
        // Valid SIV, invalid padding: refused.
        let raw = c.encrypt(b"iv", b"abc\x05");
        assert!(c.decrypt_name(b"iv", &raw).is_err());
        let raw = c.encrypt(b"iv", b"");
        assert!(c.decrypt_name(b"iv", &raw).is_err());
    }

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
