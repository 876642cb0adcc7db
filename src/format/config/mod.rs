//! `coffer.conf`: the JSON config, its validation, and the canonical binary encoding that the
//! master-key wrap and the config MAC authenticate.
//! Parsing and validating the JSON is in `parse`.

pub mod lineage;
mod parse;
pub mod slots;

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::epochs::{EpochEntry, Epochs, VaultId};
use super::names::{NameEncoding, DEFAULT_LONG_NAME_LIMIT, MAX_LONG_NAME_LIMIT};
use super::{FormatError, CONFIG_V1, CONFIG_V2, CONFIG_V3};
use slots::{SlotEntry, Slots};

/// File name of the config at the root of CIPHERDIR.
pub const CONFIG_NAME: &str = "coffer.conf";

/// Feature flags this build understands. A config naming any other flag is refused.
pub const KNOWN_FLAGS: &[&str] = &[FLAG_BLOCK_SESSIONS, FLAG_REVERSE, FLAG_XATTR_PACKS];
/// The vault was made by reverse mode: its ciphers use the reverse key set.
pub const FLAG_REVERSE: &str = "reverse";
/// New files are written with file header version 2: every block's nonce carries the number of the
/// write session that sealed it, and no block may be newer than the last block
/// (docs/FORMAT.md §5.8). Set by `init`; vaults made without it keep writing file header version 1.
pub const FLAG_BLOCK_SESSIONS: &str = "block_sessions";
/// Objects may hold packed user xattrs (`user.coffer.pack`, docs/FORMAT.md §8.1), which a build
/// without this flag would not read. Set by `init`; a vault made before it gains the flag the
/// first time a mount that can rewrite the config writes a pack (`vault::flags`).
pub const FLAG_XATTR_PACKS: &str = "xattr_packs";

/// The only KDF of config version 1.
pub const KDF_ARGON2ID: &str = "argon2id";

/// Domain separator that starts the canonical encoding.
const CANONICAL_MAGIC: &[u8] = b"coffer config\0";

/// Password-KDF section of the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfSection {
    /// Always `argon2id` in config version 1.
    pub algorithm: String,
    /// Memory cost in KiB.
    pub m_kib: u32,
    /// Time cost (passes).
    pub t: u32,
    /// Parallelism (lanes).
    pub p: u32,
    /// Salt, standard base64 without padding.
    pub salt: String,
}

/// The config as stored (field order is the JSON order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Human hint; not parsed.
    pub comment: String,
    /// Config version ([`CONFIG_V1`] or [`CONFIG_V2`]); not the file header version.
    pub format_version: u16,
    /// Sorted, unique feature flags.
    pub feature_flags: Vec<String>,
    /// Encoded names longer than this many bytes use the long-name scheme.
    pub long_name_limit: u16,
    /// Name encoding; `base64url` by default.
    pub name_encoding: String,
    /// Password KDF (config versions 1 and 2; version 3 has one per password slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kdf: Option<KdfSection>,
    /// Config version 2: the vault's ID, 16 hex digits (absent in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_id: Option<String>,
    /// Config version 2: the key epochs, oldest first (absent in version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epochs: Option<Vec<EpochEntry>>,
    /// Config version 3: the key slots (absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Vec<SlotEntry>>,
    /// Config version 3: IDs of removed slots (absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_slots: Option<Vec<String>>,
    /// Config version 3: each rekey's new epoch signed by the one before (absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Vec<lineage::LinkEntry>>,
    /// `nonce | EAX(kek, master key) | tag`, base64; AAD = canonical encoding. In config
    /// version 2 the wrapped key is the newest epoch's. Absent in version 3 (the slots wrap it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_master_key: Option<String>,
    /// HMAC-SHA256(config-MAC subkey, canonical encoding), base64.
    pub config_mac: String,
}

/// Everything in the config except the wrapped key and the MAC: what the recovery key also carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultParams {
    /// Feature flags (sorted, unique, all known).
    pub feature_flags: Vec<String>,
    /// Long-name limit.
    pub long_name_limit: u16,
    /// Spelling of encrypted names.
    pub name_encoding: NameEncoding,
}

impl Default for VaultParams {
    fn default() -> Self {
        VaultParams {
            feature_flags: vec![FLAG_BLOCK_SESSIONS.into(), FLAG_XATTR_PACKS.into()],
            long_name_limit: DEFAULT_LONG_NAME_LIMIT,
            name_encoding: NameEncoding::Base64Url,
        }
    }
}

impl VaultParams {
    /// Whether a feature flag is set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.feature_flags.iter().any(|f| f == flag)
    }

    /// Checks flags and the long-name limit.
    pub fn validate(&self) -> Result<(), FormatError> {
        let mut seen = BTreeSet::new();
        for f in &self.feature_flags {
            if !KNOWN_FLAGS.contains(&f.as_str()) {
                return Err(FormatError::UnknownFlag(f.clone()));
            }
            if !seen.insert(f) {
                return Err(FormatError::BadValue {
                    field: "feature_flags",
                    why: format!("`{f}` repeated"),
                });
            }
        }
        let min = self.name_encoding.min_long_name_limit();
        if !(min..=MAX_LONG_NAME_LIMIT).contains(&self.long_name_limit) {
            return Err(FormatError::BadValue {
                field: "long_name_limit",
                why: format!("{} is outside {min}..={MAX_LONG_NAME_LIMIT}", self.long_name_limit),
            });
        }
        Ok(())
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Every string here is validated to be at most 255 bytes before encoding.
    out.push(s.len().min(255) as u8);
    out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
}

impl Config {
    /// The vault parameters this config describes.
    pub fn params(&self) -> VaultParams {
        VaultParams {
            feature_flags: self.feature_flags.clone(),
            long_name_limit: self.long_name_limit,
            // validate() has refused unknown encodings; the default is never reached for a parsed config.
            name_encoding: NameEncoding::from_name(&self.name_encoding).unwrap_or_default(),
        }
    }

    /// The password KDF section (config versions 1 and 2).
    pub fn kdf(&self) -> Result<&KdfSection, FormatError> {
        self.kdf
            .as_ref()
            .ok_or_else(|| FormatError::ConfigSyntax("missing field `kdf`".into()))
    }

    /// The decoded salt.
    pub fn salt(&self) -> Result<Vec<u8>, FormatError> {
        B64.decode(&self.kdf()?.salt).map_err(|_| FormatError::BadValue {
            field: "kdf.salt",
            why: "not base64".into(),
        })
    }

    /// The decoded wrapped master key (`nonce | ciphertext | tag`).
    pub fn wrapped_key(&self) -> Result<Vec<u8>, FormatError> {
        let text = self
            .wrapped_master_key
            .as_deref()
            .ok_or_else(|| FormatError::ConfigSyntax("missing field `wrapped_master_key`".into()))?;
        let v = B64.decode(text).map_err(|_| FormatError::BadValue {
            field: "wrapped_master_key",
            why: "not base64".into(),
        })?;
        if v.len() != 16 + 32 + 16 {
            return Err(FormatError::BadValue {
                field: "wrapped_master_key",
                why: format!("{} bytes, need 64", v.len()),
            });
        }
        Ok(v)
    }

    /// The decoded config MAC.
    pub fn mac(&self) -> Result<Vec<u8>, FormatError> {
        B64.decode(&self.config_mac).map_err(|_| FormatError::BadValue {
            field: "config_mac",
            why: "not base64".into(),
        })
    }

    /// Sets the wrapped key field from raw bytes.
    pub fn set_wrapped_key(&mut self, sealed: &[u8]) {
        self.wrapped_master_key = Some(B64.encode(sealed));
    }

    /// Sets the MAC field from raw bytes.
    pub fn set_mac(&mut self, mac: &[u8]) {
        self.config_mac = B64.encode(mac);
    }

    /// A new config with empty wrap and MAC (filled in by the vault layer).
    pub fn new(params: &VaultParams, m_kib: u32, t: u32, p: u32, salt: &[u8]) -> Self {
        let mut flags = params.feature_flags.clone();
        flags.sort();
        Config {
            comment: "coffer vault config: do not edit; every field is authenticated".into(),
            format_version: CONFIG_V1,
            feature_flags: flags,
            long_name_limit: params.long_name_limit,
            name_encoding: params.name_encoding.as_str().into(),
            kdf: Some(KdfSection {
                algorithm: KDF_ARGON2ID.into(),
                m_kib,
                t,
                p,
                salt: B64.encode(salt),
            }),
            vault_id: None,
            epochs: None,
            slots: None,
            removed_slots: None,
            lineage: None,
            wrapped_master_key: Some(String::new()),
            config_mac: String::new(),
        }
    }

    /// A new config-version-2 config with empty wrap and MAC: `epochs` must be a valid list
    /// (its newest epoch's key is what the wrap will hold).
    pub fn new_v2(
        params: &VaultParams,
        m_kib: u32,
        t: u32,
        p: u32,
        salt: &[u8],
        vault: VaultId,
        epochs: &Epochs,
    ) -> Self {
        let mut c = Config::new(params, m_kib, t, p, salt);
        c.format_version = CONFIG_V2;
        c.vault_id = Some(vault.to_hex());
        c.epochs = Some(epochs.to_entries());
        c
    }

    /// A new config-version-3 config with an empty MAC (filled in by the vault layer).
    pub fn new_v3(
        params: &VaultParams,
        vault: VaultId,
        epochs: &Epochs,
        slots: &Slots,
        links: &[lineage::Link],
    ) -> Self {
        let mut flags = params.feature_flags.clone();
        flags.sort();
        let (entries, removed) = slots.to_entries();
        Config {
            comment: "coffer vault config: do not edit; every field is authenticated".into(),
            format_version: CONFIG_V3,
            feature_flags: flags,
            long_name_limit: params.long_name_limit,
            name_encoding: params.name_encoding.as_str().into(),
            kdf: None,
            vault_id: Some(vault.to_hex()),
            epochs: Some(epochs.to_entries()),
            slots: Some(entries),
            removed_slots: Some(removed),
            lineage: Some(links.iter().map(lineage::Link::to_entry).collect()),
            wrapped_master_key: None,
            config_mac: String::new(),
        }
    }

    /// The checked key slots (config version 3; `None` before).
    pub fn slots(&self) -> Result<Option<Slots>, FormatError> {
        match &self.slots {
            Some(s) => Slots::from_entries(s, self.removed_slots.as_deref().unwrap_or(&[])).map(Some),
            None => Ok(None),
        }
    }

    /// The checked lineage (config version 3; empty before).
    pub fn links(&self) -> Result<Vec<lineage::Link>, FormatError> {
        lineage::check_links(self.lineage.as_deref().unwrap_or(&[]))
    }

    /// The vault ID (config version 2).
    pub fn vault_id(&self) -> Option<VaultId> {
        self.vault_id.as_deref().and_then(VaultId::from_hex)
    }

    /// The checked epochs (config version 2; `None` in version 1).
    pub fn epochs(&self) -> Result<Option<Epochs>, FormatError> {
        self.epochs.as_deref().map(Epochs::from_entries).transpose()
    }

    /// Canonical binary encoding of every field except `comment`, the wrap and the MAC:
    ///
    /// `"coffer config\0" | version u16 | nflags u8 | (len u8 | flag)* | long_name_limit u16 |
    ///  len u8 | name_encoding | len u8 | kdf algorithm | m_kib u32 | t u32 | p u32 | len u8 | salt`
    /// (integers big-endian). The master-key wrap uses it as AAD; the config MAC covers it.
    pub fn canonical(&self) -> Result<Vec<u8>, FormatError> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(CANONICAL_MAGIC);
        out.extend_from_slice(&self.format_version.to_be_bytes());
        if self.feature_flags.len() > 255 || self.feature_flags.iter().any(|f| f.len() > 255) {
            return Err(FormatError::BadValue {
                field: "feature_flags",
                why: "too many or too long".into(),
            });
        }
        out.push(self.feature_flags.len() as u8);
        for f in &self.feature_flags {
            put_str(&mut out, f);
        }
        out.extend_from_slice(&self.long_name_limit.to_be_bytes());
        put_str(&mut out, &self.name_encoding);
        if self.format_version < CONFIG_V3 {
            let kdf = self.kdf()?;
            put_str(&mut out, &kdf.algorithm);
            out.extend_from_slice(&kdf.m_kib.to_be_bytes());
            out.extend_from_slice(&kdf.t.to_be_bytes());
            out.extend_from_slice(&kdf.p.to_be_bytes());
            let salt = self.salt()?;
            if salt.len() > 255 {
                return Err(FormatError::BadValue {
                    field: "kdf.salt",
                    why: "longer than 255 bytes".into(),
                });
            }
            out.push(salt.len() as u8);
            out.extend_from_slice(&salt);
        }
        if self.format_version >= CONFIG_V2 {
            let bad = |why: &str| FormatError::BadValue {
                field: "epochs",
                why: why.into(),
            };
            let vault = self.vault_id().ok_or_else(|| bad("no valid vault_id"))?;
            let epochs = self.epochs()?.ok_or_else(|| bad("missing"))?;
            epochs.canonical_into(vault, &mut out);
        }
        if self.format_version >= CONFIG_V3 {
            let slots = self
                .slots()?
                .ok_or_else(|| FormatError::ConfigSyntax("missing field `slots`".into()))?;
            slots.canonical_into(&mut out);
            lineage::canonical_into(&self.links()?, &mut out);
        }
        Ok(out)
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = match serde_json::to_vec_pretty(self) {
            Ok(v) => v,
            Err(_) => unreachable!("a Config of strings and integers always serializes"),
        };
        v.push(b'\n');
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Config {
        let mut c = Config::new(&VaultParams::default(), 65536, 3, 1, &[1; 32]);
        c.set_wrapped_key(&[2; 64]);
        c.set_mac(&[3; 32]);
        c
    }

    #[test]
    fn json_round_trip() {
        let c = sample();
        assert_eq!(Config::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn refuses_unknown_newer_and_bad() {
        let c = sample();
        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        v["extra"] = 1.into();
        let e = Config::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("`extra`"), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        v["format_version"] = 4.into();
        v["newthing"] = 1.into();
        let e = Config::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(e, FormatError::NewerVersion { found: 4, .. }), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        v["feature_flags"] = serde_json::json!(["time-travel"]);
        let e = Config::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("`time-travel`"), "{e}");

        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        v["long_name_limit"] = 250.into();
        assert!(Config::parse(v.to_string().as_bytes()).is_err());

        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        v["kdf"]["extra"] = 1.into();
        assert!(Config::parse(v.to_string().as_bytes())
            .unwrap_err()
            .to_string()
            .contains("kdf.extra"));
    }

    #[test]
    fn canonical_changes_with_every_field() {
        let base = sample().canonical().unwrap();
        type Edit = Box<dyn Fn(&mut Config)>;
        let edits: Vec<Edit> = vec![
            Box::new(|c| c.format_version = 0),
            Box::new(|c| c.feature_flags = vec![FLAG_REVERSE.into()]),
            Box::new(|c| c.long_name_limit = 100),
            Box::new(|c| c.name_encoding = "base32".into()),
            Box::new(|c| c.kdf.as_mut().unwrap().algorithm = "scrypt".into()),
            Box::new(|c| c.kdf.as_mut().unwrap().m_kib = 8),
            Box::new(|c| c.kdf.as_mut().unwrap().t = 1),
            Box::new(|c| c.kdf.as_mut().unwrap().p = 2),
            Box::new(|c| c.kdf.as_mut().unwrap().salt = B64.encode([9u8; 32])),
        ];
        for (i, e) in edits.iter().enumerate() {
            let mut c = sample();
            e(&mut c);
            assert_ne!(c.canonical().unwrap(), base, "edit {i}");
        }
    }

    fn sample_v2() -> Config {
        use crate::format::epochs::{Epoch, EpochId, Layout};
        let epochs = Epochs::new(vec![
            Epoch {
                id: EpochId([1, 2, 3, 4]),
                seq: 0,
                layout: Layout::V1,
                sealed_key: Some([6; 64]),
            },
            Epoch {
                id: EpochId([5, 6, 7, 8]),
                seq: 1,
                layout: Layout::V3,
                sealed_key: None,
            },
        ])
        .unwrap();
        let mut c = Config::new_v2(&VaultParams::default(), 65536, 3, 1, &[1; 32], VaultId([9; 8]), &epochs);
        c.set_wrapped_key(&[2; 64]);
        c.set_mac(&[3; 32]);
        c
    }

    #[test]
    fn version_2_round_trips_and_authenticates_its_epochs() {
        let c = sample_v2();
        let json = c.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains("\"vault_id\": \"0909090909090909\""), "{text}");
        assert!(text.contains("\"id\": \"05060708\""), "{text}");
        assert_eq!(Config::parse(&json).unwrap(), c);
        assert_eq!(c.epochs().unwrap().unwrap().newest().id.0, [5, 6, 7, 8]);
        // The v1 part of the canonical bytes, then the epochs.
        let canon = c.canonical().unwrap();
        let mut v1 = c.clone();
        v1.format_version = CONFIG_V1;
        v1.vault_id = None;
        v1.epochs = None;
        let head = v1.canonical().unwrap();
        assert_eq!(canon[..14], head[..14]);
        assert_eq!(canon[14..16], [0, 2]);
        assert_eq!(canon[16..head.len()], head[16..]);
        assert_eq!(canon[head.len()..head.len() + 8], [9; 8]);
        type Edit = Box<dyn Fn(&mut Config)>;
        let edits: Vec<Edit> = vec![
            Box::new(|c| c.vault_id = Some("0909090909090908".into())),
            Box::new(|c| c.epochs.as_mut().unwrap()[0].id = "01020305".into()),
            Box::new(|c| c.epochs.as_mut().unwrap()[0].layout = 3),
            Box::new(|c| c.epochs.as_mut().unwrap()[0].key = Some(B64.encode([7u8; 64]))),
            Box::new(|c| c.epochs.as_mut().unwrap()[1].seq = 2),
        ];
        for (i, e) in edits.iter().enumerate() {
            let mut c = sample_v2();
            e(&mut c);
            assert_ne!(c.canonical().unwrap(), canon, "edit {i}");
        }
    }

    #[test]
    fn version_1_has_no_epochs_and_version_2_needs_them() {
        let edit = |c: &Config, f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
            f(&mut v);
            Config::parse(v.to_string().as_bytes())
        };
        let e = edit(&sample(), &|v| v["epochs"] = serde_json::json!([])).unwrap_err();
        assert!(e.to_string().contains("unknown field `epochs`"), "{e}");
        let e = edit(&sample(), &|v| v["vault_id"] = "0909090909090909".into()).unwrap_err();
        assert!(e.to_string().contains("unknown field `vault_id`"), "{e}");
        let v2 = sample_v2();
        let e = edit(&v2, &|v| {
            v.as_object_mut().unwrap().remove("vault_id");
        })
        .unwrap_err();
        assert!(e.to_string().contains("missing field `vault_id`"), "{e}");
        let e = edit(&v2, &|v| {
            v.as_object_mut().unwrap().remove("epochs");
        })
        .unwrap_err();
        assert!(e.to_string().contains("missing field `epochs`"), "{e}");
        let e = edit(&v2, &|v| v["vault_id"] = "0909".into()).unwrap_err();
        assert!(e.to_string().contains("16 lowercase hex"), "{e}");
        let e = edit(&v2, &|v| v["epochs"][1]["layout"] = 1.into()).unwrap_err();
        assert!(e.to_string().contains("layout 3"), "{e}");
        let e = edit(&v2, &|v| v["feature_flags"] = serde_json::json!(["reverse"])).unwrap_err();
        assert!(e.to_string().contains("config version 1"), "{e}");
        let e = edit(&v2, &|v| v["epochs"][0]["extra"] = 1.into()).unwrap_err();
        assert!(e.to_string().contains("extra"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = Config::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_mutated_json(pos in 0usize..600, byte in proptest::prelude::any::<u8>()) {
            let mut j = sample().to_json();
            let n = j.len();
            j[pos % n] = byte;
            let _ = Config::parse(&j);
        }
    }
}
