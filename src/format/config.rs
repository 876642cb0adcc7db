//! `coffer.conf`: the JSON config, its validation, and the canonical binary encoding that the
//! master-key wrap and the config MAC authenticate.

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::names::{NameEncoding, DEFAULT_LONG_NAME_LIMIT, MAX_LONG_NAME_LIMIT};
use super::{FormatError, FORMAT_VERSION};

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
    /// Config version (`FORMAT_VERSION`); not the file header version.
    pub format_version: u16,
    /// Sorted, unique feature flags.
    pub feature_flags: Vec<String>,
    /// Encoded names longer than this many bytes use the long-name scheme.
    pub long_name_limit: u16,
    /// Name encoding; `base64url` by default.
    pub name_encoding: String,
    /// Password KDF.
    pub kdf: KdfSection,
    /// `nonce | EAX(kek, master key) | tag`, base64; AAD = canonical encoding.
    pub wrapped_master_key: String,
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

    /// The decoded salt.
    pub fn salt(&self) -> Result<Vec<u8>, FormatError> {
        B64.decode(&self.kdf.salt).map_err(|_| FormatError::BadValue {
            field: "kdf.salt",
            why: "not base64".into(),
        })
    }

    /// The decoded wrapped master key (`nonce | ciphertext | tag`).
    pub fn wrapped_key(&self) -> Result<Vec<u8>, FormatError> {
        let v = B64
            .decode(&self.wrapped_master_key)
            .map_err(|_| FormatError::BadValue {
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
        self.wrapped_master_key = B64.encode(sealed);
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
            format_version: FORMAT_VERSION,
            feature_flags: flags,
            long_name_limit: params.long_name_limit,
            name_encoding: params.name_encoding.as_str().into(),
            kdf: KdfSection {
                algorithm: KDF_ARGON2ID.into(),
                m_kib,
                t,
                p,
                salt: B64.encode(salt),
            },
            wrapped_master_key: String::new(),
            config_mac: String::new(),
        }
    }

    /// Parses and validates `coffer.conf`: newer versions, unknown keys, unknown flags are refused
    /// with a message that names them.
    pub fn parse(text: &[u8]) -> Result<Self, FormatError> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| FormatError::ConfigSyntax(e.to_string()))?;
        let obj = value
            .as_object()
            .ok_or_else(|| FormatError::ConfigSyntax("not a JSON object".into()))?;
        // Version first: a newer format may add fields, and its message is the useful one.
        match obj.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v > u64::from(FORMAT_VERSION) => {
                return Err(FormatError::NewerVersion {
                    found: v,
                    supported: FORMAT_VERSION,
                })
            }
            Some(v) if v < u64::from(FORMAT_VERSION) => {
                return Err(FormatError::BadValue {
                    field: "format_version",
                    why: format!("{v} is not a coffer format"),
                })
            }
            Some(_) => {}
            None => {
                return Err(FormatError::ConfigSyntax(
                    "missing or non-numeric `format_version`".into(),
                ))
            }
        }
        let known = [
            "comment",
            "format_version",
            "feature_flags",
            "long_name_limit",
            "name_encoding",
            "kdf",
            "wrapped_master_key",
            "config_mac",
        ];
        if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(FormatError::UnknownField(k.clone()));
        }
        if let Some(kdf) = obj.get("kdf").and_then(|k| k.as_object()) {
            let known_kdf = ["algorithm", "m_kib", "t", "p", "salt"];
            if let Some(k) = kdf.keys().find(|k| !known_kdf.contains(&k.as_str())) {
                return Err(FormatError::UnknownField(format!("kdf.{k}")));
            }
        }
        let cfg: Config = serde_json::from_value(value).map_err(|e| FormatError::ConfigSyntax(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every field that can be checked without keys.
    pub fn validate(&self) -> Result<(), FormatError> {
        if NameEncoding::from_name(&self.name_encoding).is_none() {
            return Err(FormatError::BadValue {
                field: "name_encoding",
                why: format!("`{}` is unknown (expected `base64url` or `base32`)", self.name_encoding),
            });
        }
        self.params().validate()?;
        let mut sorted = self.feature_flags.clone();
        sorted.sort();
        if sorted != self.feature_flags {
            return Err(FormatError::BadValue {
                field: "feature_flags",
                why: "not sorted".into(),
            });
        }
        if self.kdf.algorithm != KDF_ARGON2ID {
            return Err(FormatError::BadValue {
                field: "kdf.algorithm",
                why: format!("`{}` is unknown (expected `{KDF_ARGON2ID}`)", self.kdf.algorithm),
            });
        }
        let salt = self.salt()?;
        if salt.len() > 255 {
            return Err(FormatError::BadValue {
                field: "kdf.salt",
                why: "longer than 255 bytes".into(),
            });
        }
        self.wrapped_key()?;
        self.mac()?;
        Ok(())
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
        put_str(&mut out, &self.kdf.algorithm);
        out.extend_from_slice(&self.kdf.m_kib.to_be_bytes());
        out.extend_from_slice(&self.kdf.t.to_be_bytes());
        out.extend_from_slice(&self.kdf.p.to_be_bytes());
        let salt = self.salt()?;
        if salt.len() > 255 {
            return Err(FormatError::BadValue {
                field: "kdf.salt",
                why: "longer than 255 bytes".into(),
            });
        }
        out.push(salt.len() as u8);
        out.extend_from_slice(&salt);
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
        v["format_version"] = 2.into();
        v["newthing"] = 1.into();
        let e = Config::parse(v.to_string().as_bytes()).unwrap_err();
        assert!(matches!(e, FormatError::NewerVersion { found: 2, .. }), "{e}");

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
            Box::new(|c| c.format_version = 7),
            Box::new(|c| c.feature_flags = vec![FLAG_REVERSE.into()]),
            Box::new(|c| c.long_name_limit = 100),
            Box::new(|c| c.name_encoding = "base32".into()),
            Box::new(|c| c.kdf.algorithm = "scrypt".into()),
            Box::new(|c| c.kdf.m_kib = 8),
            Box::new(|c| c.kdf.t = 1),
            Box::new(|c| c.kdf.p = 2),
            Box::new(|c| c.kdf.salt = B64.encode([9u8; 32])),
        ];
        for (i, e) in edits.iter().enumerate() {
            let mut c = sample();
            e(&mut c);
            assert_ne!(c.canonical().unwrap(), base, "edit {i}");
        }
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
