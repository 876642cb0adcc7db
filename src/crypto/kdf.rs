//! Argon2id password KDF with bounded parameters (a tampered config cannot ask for 4 TiB).

use argon2::{Algorithm, Argon2, Params, Version};

use super::{CryptoError, Kek};

/// Argon2id parameters as stored in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
    /// Random salt (32 bytes when coffer makes it).
    pub salt: Vec<u8>,
}

/// Accepted bounds, checked before any memory is allocated.
pub struct KdfLimits {
    /// m_kib range.
    pub m_kib: (u32, u32),
    /// t range.
    pub t: (u32, u32),
    /// p range.
    pub p: (u32, u32),
    /// salt length range.
    pub salt_len: (usize, usize),
}

/// m from 8 KiB (cheap test vaults) to 256 MiB; t 1..=16; p 1..=4; salt 16..=64 bytes.
/// `init` only ever writes the default or the test cost, so anything above is either a newer
/// coffer's default or a tampered config; the upper bounds (4x the default memory) cap what a
/// tampered config can make an unlock cost before it fails: 256 MiB and a few seconds.
pub const KDF_LIMITS: KdfLimits = KdfLimits {
    m_kib: (8, 256 * 1024),
    t: (1, 16),
    p: (1, 4),
    salt_len: (16, 64),
};

impl KdfParams {
    /// Default for new vaults: m = 64 MiB, t = 6, p = 1 (measured ~0.25 s here; t = 3 took only 0.12 s).
    pub const DEFAULT_M_KIB: u32 = 64 * 1024;
    /// Default passes.
    pub const DEFAULT_T: u32 = 6;
    /// Default lanes.
    pub const DEFAULT_P: u32 = 1;

    /// Checks every parameter against [`KDF_LIMITS`].
    pub fn check(&self) -> Result<(), CryptoError> {
        let l = &KDF_LIMITS;
        let check = |name, v: u64, (min, max): (u64, u64)| {
            if v < min || v > max {
                Err(CryptoError::KdfBounds {
                    name,
                    value: v,
                    min,
                    max,
                })
            } else {
                Ok(())
            }
        };
        check("m_kib", self.m_kib.into(), (l.m_kib.0.into(), l.m_kib.1.into()))?;
        check("t", self.t.into(), (l.t.0.into(), l.t.1.into()))?;
        check("p", self.p.into(), (l.p.0.into(), l.p.1.into()))?;
        check(
            "salt length",
            self.salt.len() as u64,
            (l.salt_len.0 as u64, l.salt_len.1 as u64),
        )?;
        if self.m_kib < 8 * self.p {
            return Err(CryptoError::KdfBounds {
                name: "m_kib (must be at least 8 * p)",
                value: self.m_kib.into(),
                min: (8 * self.p).into(),
                max: l.m_kib.1.into(),
            });
        }
        Ok(())
    }
}

/// Argon2id(password, salt, m, t, p) -> 32-byte key-encryption key.
pub fn derive_kek(password: &[u8], params: &KdfParams) -> Result<Kek, CryptoError> {
    params.check()?;
    let p = Params::new(params.m_kib, params.t, params.p, Some(32)).map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
    let mut out = super::keys::key_box::<32>();
    argon
        .hash_password_into(password, &params.salt, &mut out[..])
        .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    Ok(Kek(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_refuse_huge_memory_before_allocating() {
        let p = KdfParams {
            m_kib: u32::MAX,
            t: 1,
            p: 1,
            salt: vec![0; 32],
        };
        assert!(matches!(
            derive_kek(b"pw", &p),
            Err(CryptoError::KdfBounds { name: "m_kib", .. })
        ));
        let p = KdfParams {
            m_kib: 8,
            t: 0,
            p: 1,
            salt: vec![0; 32],
        };
        assert!(matches!(
            derive_kek(b"pw", &p),
            Err(CryptoError::KdfBounds { name: "t", .. })
        ));
        let p = KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
            salt: vec![0; 3],
        };
        assert!(derive_kek(b"pw", &p).is_err());
    }

    #[test]
    fn cheap_params_work_and_differ_by_password() {
        let p = KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
            salt: vec![9; 16],
        };
        let a = derive_kek(b"pw", &p).unwrap();
        let b = derive_kek(b"pw2", &p).unwrap();
        assert_ne!(a.0[..], b.0[..]);
    }
}
