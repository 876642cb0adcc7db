//! Epoch signing keys (docs/FORMAT.md §16.2): each key epoch has an Ed25519 key pair derived
//! from its key (HKDF info `coffer v3 epoch signing`). A rekey signs the new epoch's public key
//! with the old epoch's private key; a machine that pinned an epoch's public key follows those
//! signatures to the newest epoch, and refuses a config whose key no epoch it knows signed.

use ed25519_dalek::{Signer, Verifier};

use super::keys::MasterKey;

/// Length of an epoch's public (verifying) key.
pub const VERIFY_KEY_LEN: usize = 32;
/// Length of a signature.
pub const SIGNATURE_LEN: usize = 64;
/// HKDF info of an epoch's signing key.
const SIGNING_INFO: &str = "coffer v3 epoch signing";

fn signing_key(epoch_key: &MasterKey) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(epoch_key.derive::<32>(SIGNING_INFO).expose())
}

/// The public key of the epoch whose key is `epoch_key`.
pub fn epoch_verify_key(epoch_key: &MasterKey) -> [u8; VERIFY_KEY_LEN] {
    signing_key(epoch_key).verifying_key().to_bytes()
}

/// `msg` signed by the epoch whose key is `epoch_key`.
pub fn epoch_sign(epoch_key: &MasterKey, msg: &[u8]) -> [u8; SIGNATURE_LEN] {
    signing_key(epoch_key).sign(msg).to_bytes()
}

/// Whether `sig` is the epoch with public key `vk`'s signature of `msg`.
pub fn epoch_verify(vk: &[u8; VERIFY_KEY_LEN], msg: &[u8], sig: &[u8; SIGNATURE_LEN]) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(vk) else {
        return false;
    };
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
        .is_ok()
        && vk.verify(msg, &ed25519_dalek::Signature::from_bytes(sig)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_under_its_epoch_only() {
        let a = MasterKey::from_bytes([1; 32]);
        let b = MasterKey::from_bytes([2; 32]);
        let sig = epoch_sign(&a, b"next epoch");
        assert!(epoch_verify(&epoch_verify_key(&a), b"next epoch", &sig));
        assert!(!epoch_verify(&epoch_verify_key(&b), b"next epoch", &sig));
        assert!(!epoch_verify(&epoch_verify_key(&a), b"another epoch", &sig));
        assert_eq!(epoch_verify_key(&a), epoch_verify_key(&MasterKey::from_bytes([1; 32])));
    }
}
