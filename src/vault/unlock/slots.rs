//! Config version 3 (docs/FORMAT.md §16): unlocking through key slots, and making, rewrapping
//! and describing them. Every slot wraps the newest epoch's key for one X25519, SSH or plugin
//! recipient; password and key-file slots derive their own X25519 identity, so a new epoch's
//! key reaches every slot from the recipients in the slots' sealed descriptions alone.

use std::path::Path;

use crate::crypto::{self, info, BlockCipher, DerivedIdentity, KdfParams, MasterKey, NoCallbacks, SlotRecipient};
use crate::format::config::lineage::Link;
use crate::format::config::slots::{slot_info_aad, Slot, SlotId, SlotInfo, SlotKind, Slots};
use crate::format::config::{Config, KdfSection, VaultParams, KDF_ARGON2ID};
use crate::format::epochs::{Epochs, VaultId};

use super::{check_mac, write_config, KdfCost};
use crate::vault::epochs::mac_key;
use crate::vault::error::{Result, VaultError};

/// A way in, as the user gave it.
pub enum Credential<'a> {
    /// A password (tried against every password slot).
    Password(&'a [u8]),
    /// The bytes of a key file (tried against every key-file slot).
    KeyFile(&'a [u8]),
    /// Identities read from an age identity file or an SSH private key.
    Identities(&'a [Box<dyn age::Identity>]),
}

impl Credential<'_> {
    /// What the user gave, for messages.
    pub fn what(&self) -> &'static str {
        match self {
            Credential::Password(_) => "password",
            Credential::KeyFile(_) => "key file",
            Credential::Identities(_) => "identity",
        }
    }
}

/// What [`unlock_slots`] opened.
pub struct Opened {
    /// The newest epoch's key.
    pub key: MasterKey,
    /// The slot that gave it.
    pub slot: SlotId,
}

fn tampered(e: impl std::fmt::Display) -> VaultError {
    VaultError::ConfigTampered(e.to_string())
}

fn slot_error(e: impl std::fmt::Display) -> VaultError {
    VaultError::KeySlot(e.to_string())
}

/// The checked slots of a version-3 config.
pub fn slots_of(cfg: &Config) -> Result<Slots> {
    cfg.slots()
        .map_err(tampered)?
        .ok_or_else(|| tampered("config version 3 without key slots"))
}

/// The vault ID of a config version 2 or 3.
pub fn vault_of(cfg: &Config) -> Result<VaultId> {
    cfg.vault_id().ok_or_else(|| tampered("no valid vault_id"))
}

/// The Argon2id parameters a KDF section names (a config's or a password slot's).
pub(super) fn kdf_params(k: &KdfSection) -> Result<KdfParams> {
    use base64::Engine;
    let salt = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&k.salt)
        .map_err(tampered)?;
    Ok(KdfParams {
        m_kib: k.m_kib,
        t: k.t,
        p: k.p,
        salt,
    })
}

/// The identity a password or key file derives for `slot`; `None` when `cred` is not of the
/// slot's kind.
fn derived_for(slot: &Slot, cred: &Credential) -> Result<Option<DerivedIdentity>> {
    Ok(match (slot.kind, cred) {
        (SlotKind::Password, Credential::Password(pw)) => {
            let k = slot.kdf.as_ref().ok_or_else(|| tampered("password slot without KDF"))?;
            Some(DerivedIdentity::from_password(pw, &kdf_params(k)?)?)
        }
        (SlotKind::KeyFile, Credential::KeyFile(bytes)) => {
            let salt = slot
                .salt
                .as_ref()
                .ok_or_else(|| tampered("key-file slot without salt"))?;
            Some(DerivedIdentity::from_key_file(bytes, salt)?)
        }
        _ => None,
    })
}

/// Opens the newest epoch's key of version-3 config `cfg` with `cred` (every slot of its kind
/// tried, in config order) and checks the config MAC under it.
pub fn unlock_slots(cfg: &Config, cred: &Credential) -> Result<Opened> {
    let slots = slots_of(cfg)?;
    for slot in &slots.slots {
        let got = match cred {
            Credential::Identities(ids) if slot.kind.takes_identity() => {
                let refs: Vec<&dyn age::Identity> = ids.iter().map(|b| b.as_ref()).collect();
                crypto::unwrap_slot(&slot.wrapped, &refs)
            }
            Credential::Identities(_) => continue,
            _ => match derived_for(slot, cred)? {
                Some(id) => crypto::unwrap_slot(&slot.wrapped, &[id.as_identity()]),
                None => continue,
            },
        };
        match got {
            Ok(Some(key)) => {
                check_mac(cfg, &key)?;
                return Ok(Opened { key, slot: slot.id });
            }
            Ok(None) => {}
            Err(crypto::SlotCryptoError::Plugin(why)) => return Err(VaultError::KeySlot(format!("age plugin: {why}"))),
            Err(e) => {
                log::warn!("key slot {}: {e}", slot.id.to_hex());
            }
        }
    }
    Err(match cred {
        Credential::Password(_) => VaultError::WrongPassword,
        other => VaultError::NoSlotAccepts(other.what()),
    })
}

/// A slot to add.
pub enum NewSlot<'a> {
    /// A password, at a KDF cost.
    Password {
        /// The password.
        password: &'a [u8],
        /// Its Argon2id cost.
        cost: KdfCost,
    },
    /// A key file's bytes.
    KeyFile(&'a [u8]),
    /// An age, SSH or plugin recipient.
    Recipient(SlotRecipient),
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn info_cipher(key: &MasterKey) -> BlockCipher {
    BlockCipher::new(key.derive::<32>(info::V3_SLOT_INFO).expose())
}

fn seal_info(key: &MasterKey, vault: VaultId, id: SlotId, kind: SlotKind, info: &SlotInfo) -> Result<Vec<u8>> {
    let json = zeroize::Zeroizing::new(serde_json::to_vec(info).map_err(slot_error)?);
    Ok(info_cipher(key).seal_to_vec(&slot_info_aad(&vault.0, id, kind), &json)?)
}

/// The sealed description of `slot`, opened with the newest epoch's key.
pub fn open_info(key: &MasterKey, vault: VaultId, slot: &Slot) -> Result<SlotInfo> {
    let json = info_cipher(key)
        .open_from_slice(&slot_info_aad(&vault.0, slot.id, slot.kind), &slot.sealed)
        .map_err(|_| tampered(format!("key slot {}: its description does not open", slot.id.to_hex())))?;
    serde_json::from_slice(&json).map_err(|e| tampered(format!("key slot {}: {e}", slot.id.to_hex())))
}

/// A random slot ID not in `taken`.
pub fn fresh_id(taken: &[SlotId]) -> Result<SlotId> {
    let mut id = SlotId(crypto::random_array()?);
    while taken.contains(&id) {
        id = SlotId(crypto::random_array()?);
    }
    Ok(id)
}

/// Makes slot `id` for `new`, wrapping `key`.
pub fn make_slot(key: &MasterKey, vault: VaultId, id: SlotId, new: &NewSlot, label: Option<String>) -> Result<Slot> {
    let (kind, kdf, salt, recipient) = match new {
        NewSlot::Password { password, cost } => {
            use base64::Engine;
            let salt: [u8; 32] = crypto::random_array()?;
            let section = KdfSection {
                algorithm: KDF_ARGON2ID.into(),
                m_kib: cost.m_kib,
                t: cost.t,
                p: cost.p,
                salt: base64::engine::general_purpose::STANDARD_NO_PAD.encode(salt),
            };
            let id = DerivedIdentity::from_password(password, &kdf_params(&section)?)?;
            (SlotKind::Password, Some(section), None, id.recipient())
        }
        NewSlot::KeyFile(bytes) => {
            let salt: [u8; 32] = crypto::random_array()?;
            let id = DerivedIdentity::from_key_file(bytes, &salt)?;
            (SlotKind::KeyFile, None, Some(salt.to_vec()), id.recipient())
        }
        NewSlot::Recipient(r) => {
            let kind = SlotKind::from_name(r.kind()).ok_or_else(|| slot_error("unknown recipient kind"))?;
            (kind, None, None, r.clone())
        }
    };
    let info = SlotInfo {
        label,
        created: now_secs(),
        recipient: recipient.to_text(),
    };
    Ok(Slot {
        id,
        kind,
        kdf,
        salt,
        wrapped: crypto::wrap_slot(key, &recipient, NoCallbacks).map_err(slot_error)?,
        sealed: seal_info(key, vault, id, kind, &info)?,
    })
}

/// Every slot of `slots` wrapping `new_key` instead of `old_key`: the recipients come from the
/// descriptions `old_key` opens, so no slot's secret is needed.
pub fn rewrap_all(old_key: &MasterKey, new_key: &MasterKey, vault: VaultId, slots: &Slots) -> Result<Slots> {
    let mut out = Vec::with_capacity(slots.slots.len());
    for s in &slots.slots {
        let info = open_info(old_key, vault, s)?;
        let recipient = SlotRecipient::parse(&info.recipient).map_err(slot_error)?;
        out.push(Slot {
            wrapped: crypto::wrap_slot(new_key, &recipient, NoCallbacks).map_err(slot_error)?,
            sealed: seal_info(new_key, vault, s.id, s.kind, &info)?,
            ..s.clone()
        });
    }
    Ok(Slots {
        slots: out,
        removed: slots.removed.clone(),
    })
}

/// Writes a version-3 config at `path`: `epochs` (whose newest key is `newest`), `slots`
/// (which wrap it) and the lineage `links`, MAC'd under `newest`; returns it as written.
#[allow(clippy::too_many_arguments)]
pub fn write_v3(
    path: &Path,
    params: &VaultParams,
    vault: VaultId,
    epochs: &Epochs,
    slots: &Slots,
    links: &[Link],
    newest: &MasterKey,
) -> Result<Config> {
    let mut cfg = Config::new_v3(params, vault, epochs, slots, links);
    let canonical = cfg.canonical().map_err(|source| VaultError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    cfg.set_mac(&crypto::config_mac(&mac_key(&cfg, newest), &canonical));
    // What is written must parse back (slot count, cost bound) before it replaces anything.
    cfg.validate().map_err(|source| VaultError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    write_config(path, &cfg)?;
    Ok(cfg)
}

/// How an unlock got in: through a version-1/2 config's password wrap (with the key it
/// derived, to rewrap after adding a feature flag), or through a version-3 slot.
#[derive(Debug)]
pub enum Access {
    /// The password's key-encryption key.
    Kek(crypto::Kek),
    /// The slot that opened.
    Slot(SlotId),
}

/// Opens the newest key of `cfg`, any config version, with `cred`; checks the config MAC.
pub fn unlock_any(cfg: &Config, cred: &Credential) -> Result<(MasterKey, Access)> {
    if cfg.format_version >= crate::format::CONFIG_V3 {
        let o = unlock_slots(cfg, cred)?;
        return Ok((o.key, Access::Slot(o.slot)));
    }
    match cred {
        Credential::Password(pw) => {
            let (key, kek) = super::unlock_with_password_kek(cfg, pw)?;
            Ok((key, Access::Kek(kek)))
        }
        other => Err(VaultError::KeySlot(format!(
            "this vault has a password only (config version {}): a {} needs key slots; \
             `coffer key add` with the password converts it",
            cfg.format_version,
            other.what()
        ))),
    }
}

/// A version-3 config like `cfg` (newest key `key`) with `slots` instead of its own, MAC'd
/// and written at `path`.
pub fn write_slots(path: &Path, cfg: &Config, key: &MasterKey, slots: &Slots) -> Result<Config> {
    let vault = vault_of(cfg)?;
    let epochs = cfg
        .epochs()
        .map_err(tampered)?
        .ok_or_else(|| tampered("config version 3 without epochs"))?;
    let links = cfg.links().map_err(tampered)?;
    write_v3(path, &cfg.params(), vault, &epochs, slots, &links, key)
}

/// The slots of `cfg` (newest key `key`); a version-1 or -2 config, unlocked with `password`,
/// gives one password slot for it at its own KDF cost, and its epochs (a version-1 config's
/// master key becoming a layout-1 epoch).
pub fn slots_or_converted(cfg: &Config, key: &MasterKey, password: Option<&[u8]>) -> Result<(Slots, Epochs, VaultId)> {
    if cfg.format_version >= crate::format::CONFIG_V3 {
        let epochs = cfg
            .epochs()
            .map_err(tampered)?
            .ok_or_else(|| tampered("config version 3 without epochs"))?;
        return Ok((slots_of(cfg)?, epochs, vault_of(cfg)?));
    }
    let Some(password) = password else {
        return Err(VaultError::KeySlot(
            "this vault has a password only: unlock it with the password to convert it to key slots".into(),
        ));
    };
    let (vault, epochs) = match (cfg.vault_id(), cfg.epochs().map_err(tampered)?) {
        (Some(v), Some(e)) => (v, e),
        _ => {
            use crate::format::epochs::{Epoch, EpochId, Layout};
            let epoch = Epoch {
                id: EpochId(crypto::random_array()?),
                seq: 0,
                layout: Layout::V1,
                sealed_key: None,
            };
            let list = Epochs::new(vec![epoch]).map_err(tampered)?;
            (VaultId(crypto::random_array()?), list)
        }
    };
    let new = NewSlot::Password {
        password,
        cost: KdfCost::of(cfg),
    };
    let slot = make_slot(key, vault, fresh_id(&[])?, &new, None)?;
    Ok((
        Slots {
            slots: vec![slot],
            removed: Vec::new(),
        },
        epochs,
        vault,
    ))
}

/// Adds a slot for `new` (labelled `label`) to config `cfg` at `path`, whose newest key is
/// `key` (opened with `password`, if that was the way in: a version-1/2 config is converted,
/// its password becoming a slot); written atomically. Returns the new slot's ID.
pub fn add_slot(
    path: &Path,
    cfg: &Config,
    key: &MasterKey,
    password: Option<&[u8]>,
    new: &NewSlot,
    label: Option<String>,
) -> Result<SlotId> {
    let (mut slots, epochs, vault) = slots_or_converted(cfg, key, password)?;
    if let Some(l) = &label {
        check_label(l)?;
        for s in &slots.slots {
            if open_info(key, vault, s)?.label.as_deref() == Some(l) {
                return Err(VaultError::KeySlot(format!("a key slot is labelled `{l}` already")));
            }
        }
    }
    if slots.slots.len() >= crate::format::config::slots::MAX_SLOTS {
        return Err(VaultError::KeySlot(format!(
            "this vault has {} key slots already, the most it can hold",
            slots.slots.len()
        )));
    }
    let taken: Vec<SlotId> = slots
        .slots
        .iter()
        .map(|s| s.id)
        .chain(slots.removed.iter().copied())
        .collect();
    let slot = make_slot(key, vault, fresh_id(&taken)?, new, label)?;
    let id = slot.id;
    slots.slots.push(slot);
    let links = cfg.links().map_err(tampered)?;
    write_v3(path, &cfg.params(), vault, &epochs, &slots, &links, key)?;
    Ok(id)
}

fn check_label(l: &str) -> Result<()> {
    if l.is_empty() || l.len() > 64 || l.chars().any(char::is_control) || SlotId::from_hex(l).is_some() {
        return Err(VaultError::KeySlot(format!(
            "`{l}` cannot be a label: 1 to 64 printable characters, not 8 hex digits (slot IDs look like that)"
        )));
    }
    Ok(())
}

/// One slot as `coffer key list` shows it after an unlock.
pub struct SlotView {
    /// The slot.
    pub slot: Slot,
    /// Its opened description.
    pub info: SlotInfo,
}

/// Every slot of version-3 config `cfg` with its description (newest key `key`).
pub fn describe(cfg: &Config, key: &MasterKey) -> Result<Vec<SlotView>> {
    let vault = vault_of(cfg)?;
    slots_of(cfg)?
        .slots
        .into_iter()
        .map(|slot| {
            let info = open_info(key, vault, &slot)?;
            Ok(SlotView { slot, info })
        })
        .collect()
}

/// Removes the slot whose ID or label is `which` from config `cfg` at `path` (newest key
/// `key`); refuses to remove the last slot. Its ID is remembered as removed. Returns the
/// removed slot's ID.
pub fn remove_slot(path: &Path, cfg: &Config, key: &MasterKey, which: &str) -> Result<SlotId> {
    if cfg.format_version < crate::format::CONFIG_V3 {
        return Err(VaultError::KeySlot(
            "this vault has a password only and no key slots to remove".into(),
        ));
    }
    let vault = vault_of(cfg)?;
    let mut slots = slots_of(cfg)?;
    let mut found = None;
    for (i, s) in slots.slots.iter().enumerate() {
        let label = open_info(key, vault, s)?.label;
        if s.id.to_hex() == which || label.as_deref() == Some(which) {
            found = Some(i);
            break;
        }
    }
    let Some(i) = found else {
        return Err(VaultError::KeySlot(format!(
            "no key slot has the ID or label `{which}`"
        )));
    };
    if slots.slots.len() == 1 {
        return Err(VaultError::KeySlot(
            "this is the vault's last key slot: add another way in first (only the recovery key would be left)".into(),
        ));
    }
    let removed = slots.slots.remove(i);
    if slots.removed.len() >= crate::format::config::slots::MAX_REMOVED {
        slots.removed.remove(0);
    }
    slots.removed.push(removed.id);
    write_slots(path, cfg, key, &slots)?;
    Ok(removed.id)
}

/// `coffer passwd` of a version-3 config: the password slot `old` opens gets `new` (a fresh
/// salt, `cost` or its own), keeping its ID and label.
pub fn change_slot_password(path: &Path, old: &[u8], new: &[u8], cost: Option<KdfCost>) -> Result<()> {
    let cfg = super::read_config(path)?;
    let opened = unlock_slots(&cfg, &Credential::Password(old))?;
    let vault = vault_of(&cfg)?;
    let mut slots = slots_of(&cfg)?;
    let Some(pos) = slots.slots.iter().position(|s| s.id == opened.slot) else {
        return Err(tampered("the slot that opened is not listed"));
    };
    let old_slot = &slots.slots[pos];
    let info = open_info(&opened.key, vault, old_slot)?;
    let cost = cost.unwrap_or_else(|| old_slot.kdf.as_ref().map_or_else(KdfCost::default, KdfCost::of_section));
    let fresh = make_slot(
        &opened.key,
        vault,
        opened.slot,
        &NewSlot::Password { password: new, cost },
        info.label,
    )?;
    slots.slots[pos] = fresh;
    write_slots(path, &cfg, &opened.key, &slots)?;
    Ok(())
}

/// Whether the newest epoch of version-3 config `cfg` (key `newest`) is the epoch `pinned`
/// whose public signing key is `pinned_key`, or descends from it: a chain of lineage links,
/// each signed by the epoch before, leads from it to the newest (docs/FORMAT.md §16.2). A
/// config made by someone who never held the pinned epoch's key cannot show one.
pub fn descends_from(
    cfg: &Config,
    pinned: crate::format::epochs::EpochId,
    pinned_key: &[u8; crypto::VERIFY_KEY_LEN],
    newest: &MasterKey,
) -> Result<bool> {
    use crate::format::config::lineage::link_message;
    let vault = vault_of(cfg)?;
    let newest_id = cfg
        .epochs()
        .map_err(tampered)?
        .ok_or_else(|| tampered("no epochs"))?
        .newest()
        .id;
    let newest_vk = crypto::epoch_verify_key(newest);
    let links = cfg.links().map_err(tampered)?;
    // Depth-first over the verified links (at most 64, each used once on a path).
    let mut stack = vec![(pinned, *pinned_key, 0usize)];
    while let Some((at, vk, depth)) = stack.pop() {
        if at == newest_id && vk == newest_vk {
            return Ok(true);
        }
        if depth >= links.len() {
            continue;
        }
        for l in links.iter().filter(|l| l.from == at) {
            if crypto::epoch_verify(&vk, &link_message(vault, l.from, l.to, l.seq, &l.key), &l.sig) {
                stack.push((l.to, l.key, depth + 1));
            }
        }
    }
    Ok(false)
}

/// What merging a conflict copy of the config did.
#[derive(Debug, PartialEq, Eq)]
pub enum Merged {
    /// Its slots and removals are in the config now.
    Merged {
        /// Slots it brought that the config lacked.
        added: usize,
        /// Slots of the config it had removed (its removals win).
        removed: usize,
    },
    /// It is not this vault's config, or names another key epoch (a rekey on the other
    /// replica: `coffer rekey` follows it); left as it is.
    OtherEpoch,
}

/// Merges `copy`, a sync client's conflict copy of version-3 config `cfg` (newest key `key`),
/// into `cfg` by slot ID: every slot either side has, except those either side removed (an
/// add racing a remove does not bring the removed slot back); the removals of both are kept.
/// Refused when that leaves no slot or breaks the slot bounds. Returns the merged config (not
/// written) and what was done.
pub fn merge_copy(cfg: &Config, key: &MasterKey, copy: &Config) -> Result<(Option<Slots>, Merged)> {
    if copy.format_version < crate::format::CONFIG_V3
        || copy.vault_id != cfg.vault_id
        || copy.epochs != cfg.epochs
        || check_mac(copy, key).is_err()
    {
        return Ok((None, Merged::OtherEpoch));
    }
    let ours = slots_of(cfg)?;
    let theirs = slots_of(copy)?;
    let mut removed = ours.removed.clone();
    for r in &theirs.removed {
        if !removed.contains(r) {
            removed.push(*r);
        }
    }
    if removed.len() > crate::format::config::slots::MAX_REMOVED {
        removed.drain(..removed.len() - crate::format::config::slots::MAX_REMOVED);
    }
    let mut slots: Vec<Slot> = ours
        .slots
        .iter()
        .filter(|s| !removed.contains(&s.id))
        .cloned()
        .collect();
    let dropped = ours.slots.len() - slots.len();
    let mut added = 0;
    for s in &theirs.slots {
        if !removed.contains(&s.id) && !slots.iter().any(|o| o.id == s.id) {
            slots.push(s.clone());
            added += 1;
        }
    }
    if slots.is_empty() {
        return Err(VaultError::KeySlot(
            "merging the conflict copy would leave no key slot (each side removed the other's): nothing was changed"
                .into(),
        ));
    }
    let merged = Slots { slots, removed };
    let (entries, removed_hex) = merged.to_entries();
    Slots::from_entries(&entries, &removed_hex)
        .map_err(|e| VaultError::KeySlot(format!("the merged slot list is refused: {e}")))?;
    Ok((
        Some(merged),
        Merged::Merged {
            added,
            removed: dropped,
        },
    ))
}
