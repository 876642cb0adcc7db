//! HMAC-SHA256 over the canonical config encoding, keyed by an HKDF subkey of the master key.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{CryptoError, SubKey};

/// Config MAC length (bytes).
pub const MAC_LEN: usize = 32;

/// HMAC-SHA256(key, canonical).
pub fn config_mac(key: &SubKey<32>, canonical: &[u8]) -> [u8; MAC_LEN] {
    let mut m = match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.expose()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes any key length"),
    };
    m.update(canonical);
    m.finalize().into_bytes().into()
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
