//! HMAC-SHA256: the config MAC over the canonical config encoding (keyed by an HKDF subkey of
//! the master key), and the plain function that reverse mode's PRFs build on.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{CryptoError, SubKey};

/// Config MAC length (bytes).
pub const MAC_LEN: usize = 32;

/// HMAC-SHA256(key, data).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; MAC_LEN] {
    hmac_sha256_parts(key, &[data])
}

/// HMAC-SHA256(key, the concatenation of `parts`), without copying them into one buffer.
pub fn hmac_sha256_parts(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut m = match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// HMAC-SHA256(key, canonical).
pub fn config_mac(key: &SubKey<32>, canonical: &[u8]) -> [u8; MAC_LEN] {
    hmac_sha256(key.expose(), canonical)
}

/// Constant-time check of a stored MAC.
pub fn verify_config_mac(key: &SubKey<32>, canonical: &[u8], mac: &[u8]) -> Result<(), CryptoError> {
    let want = config_mac(key, canonical);
    if mac.len() == MAC_LEN && bool::from(want.ct_eq(mac)) {
        Ok(())
    } else {
        Err(CryptoError::Auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn rfc4231_test_case_1() {
        let mac = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex(&mac),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn rfc4231_test_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn parts_are_concatenated() {
        let key = [7u8; 32];
        assert_eq!(
            hmac_sha256_parts(&key, &[b"what do ", b"", b"ya want"]),
            hmac_sha256(&key, b"what do ya want")
        );
    }
}
