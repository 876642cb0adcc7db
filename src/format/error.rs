//! The format layer's error type.

/// A byte layout that does not parse, or a value outside what the format allows.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The config is not valid JSON or misses a field.
    #[error("config is not valid: {0}")]
    ConfigSyntax(String),
    /// The config holds a key this version does not know.
    #[error("config has unknown field `{0}` (made by a newer coffer?)")]
    UnknownField(String),
    /// The config asks for a feature this version does not know.
    #[error("config needs unknown feature flag `{0}`; upgrade coffer")]
    UnknownFlag(String),
    /// The vault's config version is newer than this build's.
    #[error("vault format version {found} is newer than this coffer supports ({supported}); upgrade coffer")]
    NewerVersion {
        /// Version in the file.
        found: u64,
        /// Highest version this build reads.
        supported: u16,
    },
    /// A config value outside its allowed range.
    #[error("config field `{field}` is invalid: {why}")]
    BadValue {
        /// Field name.
        field: &'static str,
        /// Why it is refused.
        why: String,
    },
    /// A backing file whose size cannot come from any plaintext size.
    #[error("backing size {0} is not a valid coffer file size (torn or truncated write)")]
    BadCipherSize(u64),
    /// A plaintext name coffer refuses to encrypt (empty, `.`, `..`, contains `/` or NUL).
    #[error("invalid file name")]
    InvalidName,
    /// A plaintext name longer than 255 bytes.
    #[error("file name too long")]
    NameTooLong,
    /// A backing name that is not valid base64url or has the wrong shape.
    #[error("backing name is not a coffer name")]
    BadEncoding,
    /// A recovery key that does not parse or fails its checksum.
    #[error("recovery key is malformed: {0}")]
    BadRecoveryKey(&'static str),
}
