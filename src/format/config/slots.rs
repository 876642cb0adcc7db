//! The key slots of config version 3 (docs/FORMAT.md §16): each slot holds the newest epoch's
//! key wrapped for one way in (a password, a key file, an age or SSH public key, an age
//! plugin) and a sealed description (label, date, recipient) that only the key opens. What
//! anyone sees without the key: each slot's ID and kind, a password slot's KDF cost and
//! salt, a key-file slot's salt, and the wrapped key itself (age stanzas and a sealed key).

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{put_str, KdfSection, KDF_ARGON2ID};
use crate::format::FormatError;

/// Most slots a config may list (checked before any KDF runs).
pub const MAX_SLOTS: usize = 32;
/// Most IDs of removed slots a config remembers (for merging conflict copies).
pub const MAX_REMOVED: usize = 256;
/// Most bytes of a slot's wrapped key (age stanzas and the sealed key: an RSA-4096 stanza is ~550).
pub const MAX_WRAPPED_LEN: usize = 4096;
/// Most bytes of a slot's sealed description.
pub const MAX_SEALED_LEN: usize = 4096;
/// The total Argon2id cost (memory x passes, summed over password slots) an unlock may have
/// to pay: 4x the default of one slot (64 MiB x 6 passes).
pub const MAX_TOTAL_KDF_COST: u64 = 4 * 64 * 1024 * 6;
/// Length of a slot ID.
pub const SLOT_ID_LEN: usize = 4;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    /// A password: Argon2id gives an X25519 identity.
    Password,
    /// A key file: HKDF-SHA256 of its bytes gives an X25519 identity.
    KeyFile,
    /// An age X25519 recipient (`age1…`).
    Age,
    /// An SSH ed25519 public key.
    SshEd25519,
    /// An SSH RSA public key.
    SshRsa,
    /// An age plugin recipient (`age1NAME1…`).
    Plugin,
}

impl SlotKind {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotKind::Password => "password",
            SlotKind::KeyFile => "keyfile",
            SlotKind::Age => "age",
            SlotKind::SshEd25519 => "ssh-ed25519",
            SlotKind::SshRsa => "ssh-rsa",
            SlotKind::Plugin => "plugin",
        }
    }

    /// Parses a kind; `None` for an unknown one.
    pub fn from_name(s: &str) -> Option<SlotKind> {
        [
            SlotKind::Password,
            SlotKind::KeyFile,
            SlotKind::Age,
            SlotKind::SshEd25519,
            SlotKind::SshRsa,
            SlotKind::Plugin,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether an identity file (`--identity`) can open it.
    pub fn takes_identity(self) -> bool {
        !matches!(self, SlotKind::Password | SlotKind::KeyFile)
    }
}

/// A slot's ID: 4 random bytes, 8 hex digits in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub [u8; SLOT_ID_LEN]);

impl SlotId {
    /// 8 lowercase hex digits.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 8 lowercase hex digits.
    pub fn from_hex(s: &str) -> Option<SlotId> {
        if s.len() != 2 * SLOT_ID_LEN || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let mut id = [0u8; SLOT_ID_LEN];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(SlotId(id))
    }
}

/// One entry of the config's `slots` array, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotEntry {
    /// 8 hex digits, unique in the config.
    pub id: String,
    /// [`SlotKind::as_str`].
    pub kind: String,
    /// Password slots: the Argon2id cost and salt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfSection>,
    /// Key-file slots: the HKDF salt (base64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salt: Option<String>,
    /// The newest epoch's key wrapped for this slot: age stanzas and the sealed key (base64).
    pub wrapped: String,
    /// The slot's description sealed under the newest epoch's key (base64, [`SlotInfo`]).
    pub sealed: String,
}

/// A slot's description, sealed in [`SlotEntry::sealed`]: shown only after an unlock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotInfo {
    /// The user's name for it (`--label`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// When it was added, seconds since the Unix epoch.
    pub created: u64,
    /// What its key is wrapped for (an `age1…` recipient, an SSH public key line). A new
    /// epoch's key is wrapped for it without the slot's secret.
    pub recipient: String,
}

/// A checked slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Its ID.
    pub id: SlotId,
    /// Its kind.
    pub kind: SlotKind,
    /// Password slots: the cost and salt.
    pub kdf: Option<KdfSection>,
    /// Key-file slots: the salt.
    pub salt: Option<Vec<u8>>,
    /// The wrapped key (age stanzas and the sealed key).
    pub wrapped: Vec<u8>,
    /// The sealed description.
    pub sealed: Vec<u8>,
}

fn bad(field: &'static str, why: impl Into<String>) -> FormatError {
    FormatError::BadValue { field, why: why.into() }
}

fn b64(field: &'static str, s: &str, max: usize) -> Result<Vec<u8>, FormatError> {
    let v = B64.decode(s).map_err(|_| bad(field, "not base64"))?;
    if v.is_empty() || v.len() > max {
        return Err(bad(field, format!("{} bytes, need 1..={max}", v.len())));
    }
    Ok(v)
}

impl SlotEntry {
    /// The checked slot.
    pub fn check(&self) -> Result<Slot, FormatError> {
        let id =
            SlotId::from_hex(&self.id).ok_or_else(|| bad("slots.id", format!("`{}` is not 8 hex digits", self.id)))?;
        let kind =
            SlotKind::from_name(&self.kind).ok_or_else(|| bad("slots.kind", format!("`{}` is unknown", self.kind)))?;
        let kdf = match (&self.kdf, kind) {
            (Some(k), SlotKind::Password) => {
                if k.algorithm != KDF_ARGON2ID {
                    return Err(bad("slots.kdf.algorithm", format!("`{}` is unknown", k.algorithm)));
                }
                b64("slots.kdf.salt", &k.salt, 255)?;
                Some(k.clone())
            }
            (None, SlotKind::Password) => return Err(bad("slots.kdf", "a password slot needs one")),
            (Some(_), _) => return Err(bad("slots.kdf", format!("a {} slot has none", kind.as_str()))),
            (None, _) => None,
        };
        let salt = match (&self.salt, kind) {
            (Some(s), SlotKind::KeyFile) => Some(b64("slots.salt", s, 255)?),
            (None, SlotKind::KeyFile) => return Err(bad("slots.salt", "a key-file slot needs one")),
            (Some(_), _) => return Err(bad("slots.salt", format!("a {} slot has none", kind.as_str()))),
            (None, _) => None,
        };
        Ok(Slot {
            id,
            kind,
            kdf,
            salt,
            wrapped: b64("slots.wrapped", &self.wrapped, MAX_WRAPPED_LEN)?,
            sealed: b64("slots.sealed", &self.sealed, MAX_SEALED_LEN)?,
        })
    }
}

impl Slot {
    /// As stored.
    pub fn to_entry(&self) -> SlotEntry {
        SlotEntry {
            id: self.id.to_hex(),
            kind: self.kind.as_str().to_string(),
            kdf: self.kdf.clone(),
            salt: self.salt.as_ref().map(|s| B64.encode(s)),
            wrapped: B64.encode(&self.wrapped),
            sealed: B64.encode(&self.sealed),
        }
    }

    /// Appends the slot to the canonical encoding the config MAC covers:
    /// `id[4] | len u8 | kind | (password: len u8 | algorithm | m_kib u32 | t u32 | p u32 |
    /// len u8 | salt) | (key file: len u8 | salt) | len u16 | wrapped | len u16 | sealed`.
    fn canonical_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.0);
        put_str(out, self.kind.as_str());
        if let Some(k) = &self.kdf {
            put_str(out, &k.algorithm);
            out.extend_from_slice(&k.m_kib.to_be_bytes());
            out.extend_from_slice(&k.t.to_be_bytes());
            out.extend_from_slice(&k.p.to_be_bytes());
            // Checked by `SlotEntry::check` (base64, at most 255 bytes).
            let salt = B64.decode(&k.salt).unwrap_or_default();
            out.push(salt.len().min(255) as u8);
            out.extend_from_slice(&salt[..salt.len().min(255)]);
        }
        if let Some(s) = &self.salt {
            out.push(s.len().min(255) as u8);
            out.extend_from_slice(&s[..s.len().min(255)]);
        }
        for part in [&self.wrapped, &self.sealed] {
            // Bounded by MAX_WRAPPED_LEN / MAX_SEALED_LEN.
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
    }

    /// The Argon2id cost this slot adds to an unlock with a password (memory KiB x passes).
    pub fn kdf_cost(&self) -> u64 {
        self.kdf.as_ref().map_or(0, |k| u64::from(k.m_kib) * u64::from(k.t))
    }
}

/// The checked slots and removed-slot IDs of a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slots {
    /// The slots, in config order.
    pub slots: Vec<Slot>,
    /// IDs of slots removed from this vault (never to come back in a merge).
    pub removed: Vec<SlotId>,
}

impl Slots {
    /// Checks a config's slot list: 1..=32 slots, unique IDs, no ID both present and removed,
    /// the total KDF cost bounded; all before any KDF runs.
    pub fn from_entries(entries: &[SlotEntry], removed: &[String]) -> Result<Slots, FormatError> {
        if entries.is_empty() {
            return Err(bad("slots", "no slot: nothing could open this vault"));
        }
        if entries.len() > MAX_SLOTS {
            return Err(bad("slots", format!("{} slots, at most {MAX_SLOTS}", entries.len())));
        }
        if removed.len() > MAX_REMOVED {
            return Err(bad(
                "removed_slots",
                format!("{} IDs, at most {MAX_REMOVED}", removed.len()),
            ));
        }
        let slots = entries.iter().map(SlotEntry::check).collect::<Result<Vec<_>, _>>()?;
        let removed = removed
            .iter()
            .map(|s| SlotId::from_hex(s).ok_or_else(|| bad("removed_slots", format!("`{s}` is not 8 hex digits"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        for s in &slots {
            if !seen.insert(s.id) {
                return Err(bad("slots.id", format!("`{}` repeated", s.id.to_hex())));
            }
            if removed.contains(&s.id) {
                return Err(bad("slots.id", format!("`{}` is listed as removed", s.id.to_hex())));
            }
        }
        let cost: u64 = slots.iter().map(Slot::kdf_cost).sum();
        if cost > MAX_TOTAL_KDF_COST {
            return Err(bad(
                "slots",
                format!("the password slots' KDF cost totals {cost} KiB-passes, more than 4x the default ({MAX_TOTAL_KDF_COST})"),
            ));
        }
        Ok(Slots { slots, removed })
    }

    /// As stored: (`slots`, `removed_slots`).
    pub fn to_entries(&self) -> (Vec<SlotEntry>, Vec<String>) {
        (
            self.slots.iter().map(Slot::to_entry).collect(),
            self.removed.iter().map(|r| r.to_hex()).collect(),
        )
    }

    /// Appends `nslots u8 | slot* | nremoved u16 | id[4]*` to the canonical encoding.
    pub fn canonical_into(&self, out: &mut Vec<u8>) {
        out.push(self.slots.len() as u8);
        for s in &self.slots {
            s.canonical_into(out);
        }
        out.extend_from_slice(&(self.removed.len() as u16).to_be_bytes());
        for r in &self.removed {
            out.extend_from_slice(&r.0);
        }
    }

    /// The slot with `id`.
    pub fn get(&self, id: SlotId) -> Option<&Slot> {
        self.slots.iter().find(|s| s.id == id)
    }
}

/// The associated data that seals a slot's description: `"coffer slot info" | vault ID | slot ID | kind`.
pub fn slot_info_aad(vault: &[u8], id: SlotId, kind: SlotKind) -> Vec<u8> {
    let mut aad = b"coffer slot info\0".to_vec();
    aad.extend_from_slice(vault);
    aad.extend_from_slice(&id.0);
    aad.extend_from_slice(kind.as_str().as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, kind: &str) -> SlotEntry {
        SlotEntry {
            id: id.into(),
            kind: kind.into(),
            kdf: (kind == "password").then(|| KdfSection {
                algorithm: KDF_ARGON2ID.into(),
                m_kib: 64 * 1024,
                t: 6,
                p: 1,
                salt: B64.encode([1u8; 32]),
            }),
            salt: (kind == "keyfile").then(|| B64.encode([2u8; 32])),
            wrapped: B64.encode([3u8; 200]),
            sealed: B64.encode([4u8; 60]),
        }
    }

    #[test]
    fn slots_round_trip_and_the_encoding_covers_every_field() {
        let e = vec![
            entry("00000001", "password"),
            entry("0000000a", "keyfile"),
            entry("000000ff", "ssh-ed25519"),
        ];
        let s = Slots::from_entries(&e, &["12345678".into()]).unwrap();
        assert_eq!(s.to_entries(), (e.clone(), vec!["12345678".to_string()]));
        let mut base = Vec::new();
        s.canonical_into(&mut base);
        let changed = |f: &dyn Fn(&mut Vec<SlotEntry>)| {
            let mut e2 = e.clone();
            f(&mut e2);
            let mut out = Vec::new();
            Slots::from_entries(&e2, &["12345678".into()])
                .unwrap()
                .canonical_into(&mut out);
            out != base
        };
        assert!(changed(&|e| e.swap(0, 1)), "order");
        assert!(changed(&|e| e[2].sealed = B64.encode([5u8; 60])), "description");
        assert!(changed(&|e| e[2].wrapped = B64.encode([5u8; 200])), "wrapped key");
        assert!(changed(&|e| e[0].kdf.as_mut().unwrap().t = 7), "cost");
        assert!(changed(&|e| e[1].salt = Some(B64.encode([9u8; 32]))), "salt");
        assert!(
            changed(&|e| {
                e.pop();
            }),
            "a slot removed"
        );
    }

    #[test]
    fn bad_slot_lists_are_refused_before_any_kdf() {
        assert!(Slots::from_entries(&[], &[]).is_err(), "no slot");
        let many: Vec<_> = (0..33).map(|i| entry(&format!("{i:08x}"), "age")).collect();
        assert!(Slots::from_entries(&many, &[]).is_err(), "33 slots");
        let five: Vec<_> = (0..5).map(|i| entry(&format!("{i:08x}"), "password")).collect();
        let e = Slots::from_entries(&five, &[]).unwrap_err();
        assert!(e.to_string().contains("more than 4x the default"), "{e}");
        let four: Vec<_> = (0..4).map(|i| entry(&format!("{i:08x}"), "password")).collect();
        assert!(Slots::from_entries(&four, &[]).is_ok(), "4x the default is allowed");
        let dup = vec![entry("00000001", "age"), entry("00000001", "age")];
        assert!(Slots::from_entries(&dup, &[]).is_err());
        assert!(Slots::from_entries(&[entry("00000001", "age")], &["00000001".into()]).is_err());
        assert!(Slots::from_entries(&[entry("0000000G", "age")], &[]).is_err());
        assert!(Slots::from_entries(&[entry("00000001", "fido")], &[]).is_err());
        let mut e = entry("00000001", "age");
        e.salt = Some(B64.encode([1u8; 16]));
        assert!(Slots::from_entries(&[e], &[]).is_err(), "salt on an age slot");
        let mut e = entry("00000001", "password");
        e.kdf = None;
        assert!(Slots::from_entries(&[e], &[]).is_err(), "password slot without kdf");
    }
}
