//! The crypto layer's error type.

/// What can go wrong inside a cipher call.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CryptoError {
    /// The tag did not verify: the ciphertext, nonce, tag or associated data was altered,
    /// or the wrong key was used.
    #[error("authentication failed")]
    Auth,
    /// A length the cipher cannot take (e.g. a SIV ciphertext shorter than its tag).
    #[error("bad length: {0}")]
    Length(&'static str),
    /// Password-KDF parameters outside the accepted bounds.
    #[error("KDF parameter {name} = {value} is outside {min}..={max}")]
    KdfBounds {
        /// Parameter name (m_kib, t, p, salt length).
        name: &'static str,
        /// The refused value.
        value: u64,
        /// Lowest accepted value.
        min: u64,
        /// Highest accepted value.
        max: u64,
    },
    /// The KDF implementation refused its input.
    #[error("password KDF failed: {0}")]
    Kdf(String),
    /// The operating system's random source failed.
    #[error("random source failed: {0}")]
    Random(String),
}
