//! Layer 1: every cipher coffer uses — keys, subkeys, block AEAD, name SIV, password KDF.
//!
//! Nothing above this layer names a cipher crate; they call these functions with typed keys.

mod block;
mod eax_fast;
mod error;
mod file_keys;
mod kdf;
mod keys;
mod lineage;
mod mac;
mod names;
mod random;
mod slots;

pub use block::{BlockCipher, NONCE_LEN, TAG_LEN};
pub use eax_fast::{EaxFast, OpenJob, SealJob};
pub use error::CryptoError;
pub use file_keys::{FileKeyRoot, FileKeys, SessionMask, FILE_ID_LEN, SESSION_NONCE_RANDOM_LEN};
pub use kdf::{derive_kek, KdfParams, KDF_LIMITS};
pub use keys::{info, ContentKey, Kek, KeySet, MasterKey, SubKey, MASTER_KEY_LEN};
pub use lineage::{epoch_sign, epoch_verify, epoch_verify_key, SIGNATURE_LEN, VERIFY_KEY_LEN};
pub use mac::{config_mac, hmac_sha256, hmac_sha256_parts, verify_config_mac, MAC_LEN};
pub use names::{NameCipher, NAME_PAD, SIV_TAG_LEN};
pub use random::{random_array, random_bytes};
pub use slots::{
    read_identities, unwrap as unwrap_slot, wrap as wrap_slot, DerivedIdentity, NoCallbacks, RecipientError,
    SlotCallbacks, SlotCryptoError, SlotRecipient,
};
