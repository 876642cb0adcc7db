//! Key epochs of config version 2 (docs/FORMAT.md §15.2, §15.5): their IDs, the layouts their
//! objects use, the list the config authenticates, and the associated data that seals an
//! older epoch's key under the newest. Pure.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::FormatError;

/// Bytes of an epoch ID.
pub const EPOCH_ID_LEN: usize = 4;
/// Bytes of a vault ID.
pub const VAULT_ID_LEN: usize = 8;
/// Most epochs a config may list (each old one costs a lookup per name until `--finish`).
pub const MAX_EPOCHS: usize = 16;
/// Bytes of an older epoch's sealed key: nonce (16) | key (32) | tag (16).
pub const SEALED_EPOCH_KEY_LEN: usize = 16 + 32 + 16;
/// Associated-data prefix of a sealed older epoch key.
const SEALED_KEY_AAD: &[u8] = b"coffer epoch key v3";

/// A 4-byte epoch ID: random, unique within its vault; the first bytes of every file ID,
/// symlink nonce and xattr nonce sealed under the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EpochId(pub [u8; EPOCH_ID_LEN]);

impl EpochId {
    /// The 8 lowercase hex digits the config spells it with.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 8 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; EPOCH_ID_LEN];
        hex_into(s, &mut out).then_some(EpochId(out))
    }
}

/// The 8-byte ID a vault keeps for its whole life (through every rekey and password change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VaultId(pub [u8; VAULT_ID_LEN]);

impl VaultId {
    /// The 16 lowercase hex digits the config spells it with.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 16 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; VAULT_ID_LEN];
        hex_into(s, &mut out).then_some(VaultId(out))
    }
}

/// Lowercase hex of exactly `out.len()` bytes into `out`.
fn hex_into(s: &str, out: &mut [u8]) -> bool {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let b = s.as_bytes();
    if b.len() != 2 * out.len() {
        return false;
    }
    for (i, o) in out.iter_mut().enumerate() {
        match (digit(b[2 * i]), digit(b[2 * i + 1])) {
            (Some(h), Some(l)) => *o = h << 4 | l,
            _ => return false,
        }
    }
    true
}

/// How the objects of an epoch are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A config-version-1 vault's master key: file header versions 1 and 2, the `coffer v1`
    /// info strings, symlinks and xattrs with 16 random nonce bytes (§2–§8).
    V1,
    /// File header version 3, per-file keys, masked sessions, `coffer v3` info strings (§15).
    V3,
}

impl Layout {
    /// The number the config and its canonical encoding use.
    pub fn number(self) -> u8 {
        match self {
            Layout::V1 => 1,
            Layout::V3 => 3,
        }
    }

    /// The layout numbered `n`.
    pub fn from_number(n: u8) -> Option<Self> {
        match n {
            1 => Some(Layout::V1),
            3 => Some(Layout::V3),
            _ => None,
        }
    }
}

/// One entry of the config's `epochs` array, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochEntry {
    /// 8 hex digits.
    pub id: String,
    /// Sequence number: 0 for the first epoch, one more per rekey.
    pub seq: u32,
    /// 1 or 3 ([`Layout`]).
    pub layout: u8,
    /// The key sealed under the newest epoch (base64); absent for the newest itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A checked epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    /// Its ID.
    pub id: EpochId,
    /// Its sequence number.
    pub seq: u32,
    /// Its objects' layout.
    pub layout: Layout,
    /// Its key sealed under the newest epoch; `None` for the newest.
    pub sealed_key: Option<[u8; SEALED_EPOCH_KEY_LEN]>,
}

fn bad(why: impl Into<String>) -> FormatError {
    FormatError::BadValue {
        field: "epochs",
        why: why.into(),
    }
}

impl Epoch {
    /// Checks one stored entry.
    pub fn from_entry(e: &EpochEntry) -> Result<Self, FormatError> {
        let id = EpochId::from_hex(&e.id).ok_or_else(|| bad(format!("id `{}` is not 8 lowercase hex digits", e.id)))?;
        let layout = Layout::from_number(e.layout).ok_or_else(|| bad(format!("layout {} is unknown", e.layout)))?;
        let sealed_key = match &e.key {
            None => None,
            Some(k) => {
                let raw = B64
                    .decode(k)
                    .map_err(|_| bad(format!("key of epoch {} is not base64", e.id)))?;
                let arr: [u8; SEALED_EPOCH_KEY_LEN] = raw.as_slice().try_into().map_err(|_| {
                    bad(format!(
                        "key of epoch {} has {} bytes, need {SEALED_EPOCH_KEY_LEN}",
                        e.id,
                        raw.len()
                    ))
                })?;
                Some(arr)
            }
        };
        Ok(Epoch {
            id,
            seq: e.seq,
            layout,
            sealed_key,
        })
    }

    /// The entry that stores this epoch.
    pub fn to_entry(&self) -> EpochEntry {
        EpochEntry {
            id: self.id.to_hex(),
            seq: self.seq,
            layout: self.layout.number(),
            key: self.sealed_key.map(|k| B64.encode(k)),
        }
    }
}

/// A config's epochs, checked: 1..=[`MAX_EPOCHS`] of them, unique IDs, strictly rising
/// sequence numbers (oldest first), the last one (the newest) of layout 3 with no sealed key,
/// every other one with a sealed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epochs(Vec<Epoch>);

impl Epochs {
    /// Checks the stored list.
    pub fn from_entries(entries: &[EpochEntry]) -> Result<Self, FormatError> {
        let list = entries.iter().map(Epoch::from_entry).collect::<Result<Vec<_>, _>>()?;
        Epochs::new(list)
    }

    /// Checks a list of epochs, oldest first.
    pub fn new(list: Vec<Epoch>) -> Result<Self, FormatError> {
        if list.is_empty() || list.len() > MAX_EPOCHS {
            return Err(bad(format!("{} epochs, need 1..={MAX_EPOCHS}", list.len())));
        }
        for (i, e) in list.iter().enumerate() {
            if list[..i].iter().any(|o| o.id == e.id) {
                return Err(bad(format!("epoch {} listed twice", e.id.to_hex())));
            }
            if i > 0 && e.seq <= list[i - 1].seq {
                return Err(bad("sequence numbers do not rise"));
            }
            let newest = i + 1 == list.len();
            if newest && e.layout != Layout::V3 {
                return Err(bad("the newest epoch must have layout 3"));
            }
            if newest == e.sealed_key.is_some() {
                return Err(bad(if newest {
                    "the newest epoch's key is the wrapped master key, not a sealed one"
                } else {
                    "an older epoch has no sealed key"
                }));
            }
        }
        Ok(Epochs(list))
    }

    /// Oldest first.
    pub fn all(&self) -> &[Epoch] {
        &self.0
    }

    /// The epoch that seals everything written now.
    pub fn newest(&self) -> &Epoch {
        // `new` refuses an empty list.
        &self.0[self.0.len() - 1]
    }

    /// The epoch with this ID.
    pub fn get(&self, id: EpochId) -> Option<&Epoch> {
        self.0.iter().find(|e| e.id == id)
    }

    /// The stored entries.
    pub fn to_entries(&self) -> Vec<EpochEntry> {
        self.0.iter().map(Epoch::to_entry).collect()
    }

    /// The epochs' part of the canonical config encoding: `vault_id (8) | count u8 | per
    /// epoch: id (4) | seq u32 | layout u8 | sealed length u8 | sealed key`.
    pub fn canonical_into(&self, vault: VaultId, out: &mut Vec<u8>) {
        out.extend_from_slice(&vault.0);
        // `new` bounds the count by MAX_EPOCHS.
        out.push(self.0.len() as u8);
        for e in &self.0 {
            out.extend_from_slice(&e.id.0);
            out.extend_from_slice(&e.seq.to_be_bytes());
            out.push(e.layout.number());
            match &e.sealed_key {
                Some(k) => {
                    out.push(SEALED_EPOCH_KEY_LEN as u8);
                    out.extend_from_slice(k);
                }
                None => out.push(0),
            }
        }
    }
}

/// The associated data that seals epoch `old`'s key under the newest epoch `newest`:
/// `"coffer epoch key v3" | vault_id | newest ID | old ID | old seq u32 | old layout u8`.
pub fn sealed_key_aad(vault: VaultId, newest: EpochId, old: EpochId, seq: u32, layout: Layout) -> Vec<u8> {
    let mut aad = Vec::with_capacity(SEALED_KEY_AAD.len() + VAULT_ID_LEN + 2 * EPOCH_ID_LEN + 5);
    aad.extend_from_slice(SEALED_KEY_AAD);
    aad.extend_from_slice(&vault.0);
    aad.extend_from_slice(&newest.0);
    aad.extend_from_slice(&old.0);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad.push(layout.number());
    aad
}

/// Name of the copy of the epoch list kept in CIPHERDIR's root (docs/FORMAT.md §15.5).
pub const EPOCHS_NAME: &str = "coffer.epochs";

/// `coffer.epochs`: the vault ID and the epoch list of the config, older keys sealed under the
/// newest, so that the newest recovery key reaches every older epoch when `coffer.conf` is
/// lost. Each sealed key is authenticated on its own (its AAD names the vault, the newest
/// epoch and itself); the file as a whole is not, and is never a source of truth while the
/// config is readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochsFile {
    /// 16 hex digits.
    pub vault_id: String,
    /// As the config's `epochs`.
    pub epochs: Vec<EpochEntry>,
}

impl EpochsFile {
    /// The copy of a vault's epochs.
    pub fn new(vault: VaultId, epochs: &Epochs) -> Self {
        EpochsFile {
            vault_id: vault.to_hex(),
            epochs: epochs.to_entries(),
        }
    }

    /// The vault ID and the checked list.
    pub fn checked(&self) -> Result<(VaultId, Epochs), FormatError> {
        let vault = VaultId::from_hex(&self.vault_id)
            .ok_or_else(|| FormatError::ConfigSyntax(format!("{EPOCHS_NAME}: vault_id is not 16 hex digits")))?;
        Ok((vault, Epochs::from_entries(&self.epochs)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, seq: u32, layout: u8, key: Option<[u8; SEALED_EPOCH_KEY_LEN]>) -> EpochEntry {
        EpochEntry {
            id: id.into(),
            seq,
            layout,
            key: key.map(|k| B64.encode(k)),
        }
    }

    fn two() -> Vec<EpochEntry> {
        vec![
            entry("0a0b0c0d", 0, 1, Some([5; SEALED_EPOCH_KEY_LEN])),
            entry("deadbeef", 1, 3, None),
        ]
    }

    #[test]
    fn a_valid_list_round_trips() {
        let e = Epochs::from_entries(&two()).unwrap();
        assert_eq!(e.newest().id, EpochId([0xde, 0xad, 0xbe, 0xef]));
        assert_eq!(e.all()[0].layout, Layout::V1);
        assert_eq!(e.to_entries(), two());
        assert!(e.get(EpochId([0x0a, 0x0b, 0x0c, 0x0d])).is_some());
        assert!(e.get(EpochId([0; 4])).is_none());
        let json = serde_json::to_string(&e.to_entries()).unwrap();
        assert!(!json.contains("\"key\":null"), "{json}");
    }

    #[test]
    fn bad_lists_are_refused_with_a_reason() {
        let cases: Vec<(Vec<EpochEntry>, &str)> = vec![
            (vec![], "0 epochs"),
            (vec![entry("DEADBEEF", 0, 3, None)], "not 8 lowercase hex"),
            (vec![entry("deadbee", 0, 3, None)], "not 8 lowercase hex"),
            (vec![entry("deadbeef", 0, 2, None)], "layout 2 is unknown"),
            (vec![entry("deadbeef", 0, 1, None)], "must have layout 3"),
            (
                vec![entry("deadbeef", 0, 3, Some([1; SEALED_EPOCH_KEY_LEN]))],
                "not a sealed one",
            ),
            (
                vec![entry("0a0b0c0d", 0, 1, None), entry("deadbeef", 1, 3, None)],
                "has no sealed key",
            ),
            (
                vec![
                    entry("deadbeef", 0, 3, Some([1; SEALED_EPOCH_KEY_LEN])),
                    entry("deadbeef", 1, 3, None),
                ],
                "listed twice",
            ),
            (
                vec![
                    entry("0a0b0c0d", 1, 3, Some([1; SEALED_EPOCH_KEY_LEN])),
                    entry("deadbeef", 1, 3, None),
                ],
                "do not rise",
            ),
        ];
        for (list, want) in cases {
            let e = Epochs::from_entries(&list).unwrap_err().to_string();
            assert!(e.contains(want), "{list:?}: {e}");
        }
        let mut short = two();
        short[0].key = Some(B64.encode([1u8; 10]));
        assert!(Epochs::from_entries(&short)
            .unwrap_err()
            .to_string()
            .contains("10 bytes"));
        let many: Vec<EpochEntry> = (0..=MAX_EPOCHS as u32)
            .map(|i| entry(&format!("{i:08x}"), i, 3, (i < MAX_EPOCHS as u32).then_some([1; 64])))
            .collect();
        assert!(Epochs::from_entries(&many)
            .unwrap_err()
            .to_string()
            .contains("17 epochs"));
    }

    #[test]
    fn canonical_encoding_is_pinned_and_covers_every_field() {
        let v = VaultId([1, 2, 3, 4, 5, 6, 7, 8]);
        let e = Epochs::from_entries(&two()).unwrap();
        let mut out = Vec::new();
        e.canonical_into(v, &mut out);
        let mut want = vec![1, 2, 3, 4, 5, 6, 7, 8, 2];
        want.extend_from_slice(&[0x0a, 0x0b, 0x0c, 0x0d, 0, 0, 0, 0, 1, 64]);
        want.extend_from_slice(&[5; 64]);
        want.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1, 3, 0]);
        assert_eq!(out, want);
        let mut other = two();
        other[0].seq = 0;
        other[1].seq = 2;
        let mut out2 = Vec::new();
        Epochs::from_entries(&other).unwrap().canonical_into(v, &mut out2);
        assert_ne!(out, out2);
    }

    #[test]
    fn sealed_key_aad_is_pinned() {
        let aad = sealed_key_aad(VaultId([9; 8]), EpochId([1; 4]), EpochId([2; 4]), 7, Layout::V1);
        let mut want = b"coffer epoch key v3".to_vec();
        want.extend_from_slice(&[9; 8]);
        want.extend_from_slice(&[1; 4]);
        want.extend_from_slice(&[2; 4]);
        want.extend_from_slice(&[0, 0, 0, 7, 1]);
        assert_eq!(aad, want);
    }

    #[test]
    fn ids_parse_only_lowercase_hex() {
        assert_eq!(EpochId::from_hex("00ff10ab"), Some(EpochId([0, 0xff, 0x10, 0xab])));
        assert_eq!(EpochId([0, 0xff, 0x10, 0xab]).to_hex(), "00ff10ab");
        assert_eq!(EpochId::from_hex("00FF10AB"), None);
        assert_eq!(EpochId::from_hex("00ff10a"), None);
        assert_eq!(EpochId::from_hex("00ff10ag"), None);
        assert_eq!(EpochId::from_hex("é0ff10a"), None);
        assert_eq!(
            VaultId::from_hex("0102030405060708"),
            Some(VaultId([1, 2, 3, 4, 5, 6, 7, 8]))
        );
        assert_eq!(VaultId([1, 2, 3, 4, 5, 6, 7, 8]).to_hex(), "0102030405060708");
    }
}
