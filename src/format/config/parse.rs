//! Parsing and validating `coffer.conf`: newer versions, unknown fields and flags, bad values refused.

use super::{Config, FLAG_REVERSE, KDF_ARGON2ID};
use crate::format::epochs::VaultId;
use crate::format::names::NameEncoding;
use crate::format::{FormatError, CONFIG_V1, CONFIG_V3, FORMAT_VERSION};

impl Config {
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
            Some(v) if v < u64::from(CONFIG_V1) => {
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
            "vault_id",
            "epochs",
            "slots",
            "removed_slots",
            "lineage",
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
        if self.format_version >= CONFIG_V3 {
            self.validate_slots()?;
        } else {
            let kdf = self.kdf()?;
            if kdf.algorithm != KDF_ARGON2ID {
                return Err(FormatError::BadValue {
                    field: "kdf.algorithm",
                    why: format!("`{}` is unknown (expected `{KDF_ARGON2ID}`)", kdf.algorithm),
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
            if self.slots.is_some() {
                return Err(FormatError::UnknownField("slots".into()));
            }
            if self.removed_slots.is_some() {
                return Err(FormatError::UnknownField("removed_slots".into()));
            }
            if self.lineage.is_some() {
                return Err(FormatError::UnknownField("lineage".into()));
            }
        }
        self.mac()?;
        self.validate_epochs()
    }

    /// Version 3: slots (checked, the KDF cost bounded) instead of one password KDF and wrap.
    fn validate_slots(&self) -> Result<(), FormatError> {
        if self.kdf.is_some() {
            return Err(FormatError::UnknownField("kdf".into()));
        }
        if self.wrapped_master_key.is_some() {
            return Err(FormatError::UnknownField("wrapped_master_key".into()));
        }
        if self.slots.is_none() {
            return Err(FormatError::ConfigSyntax("missing field `slots`".into()));
        }
        self.slots()?;
        self.links()?;
        Ok(())
    }

    /// Version 1 has no epochs; version 2 has a vault ID, a valid epoch list and no `reverse`
    /// flag (reverse mode writes config version 1).
    fn validate_epochs(&self) -> Result<(), FormatError> {
        let present = |field: &str| FormatError::UnknownField(field.to_string());
        if self.format_version == CONFIG_V1 {
            if self.vault_id.is_some() {
                return Err(present("vault_id"));
            }
            if self.epochs.is_some() {
                return Err(present("epochs"));
            }
            return Ok(());
        }
        let id = self
            .vault_id
            .as_deref()
            .ok_or_else(|| FormatError::ConfigSyntax("missing field `vault_id`".into()))?;
        if VaultId::from_hex(id).is_none() {
            return Err(FormatError::BadValue {
                field: "vault_id",
                why: format!("`{id}` is not 16 lowercase hex digits"),
            });
        }
        if self.epochs.is_none() {
            return Err(FormatError::ConfigSyntax("missing field `epochs`".into()));
        }
        self.epochs()?;
        if self.feature_flags.iter().any(|f| f == FLAG_REVERSE) {
            return Err(FormatError::BadValue {
                field: "feature_flags",
                why: "`reverse` needs config version 1".into(),
            });
        }
        Ok(())
    }
}
