//! The ciphers of key slots (docs/FORMAT.md §16): an epoch key wrapped for one recipient
//! through an age file key (the `age` crate makes the stanzas: X25519, SSH ed25519 and RSA,
//! plugins; nothing hand-rolled),
//! and the X25519 identities that password and key-file slots derive (Argon2id of the
//! password, HKDF-SHA256 of the key file), so that a new epoch's key can be wrapped for every
//! slot from public keys alone.

use std::str::FromStr;

use age::secrecy::SecretString;
use bech32::ToBase32;
use zeroize::Zeroizing;

use super::kdf::KdfParams;
use super::keys::{key_box, MasterKey};
use super::CryptoError;

/// What a public-key slot wraps for, parsed from its text.
#[derive(Clone)]
pub enum SlotRecipient {
    /// `age1…`: an age X25519 recipient (also what password and key-file slots derive).
    X25519(age::x25519::Recipient),
    /// `ssh-ed25519 …` or `ssh-rsa …`: an SSH public key.
    Ssh(age::ssh::Recipient),
    /// `age1NAME1…`: a recipient of the plugin `age-plugin-NAME`.
    Plugin(age::plugin::Recipient),
}

/// Why a recipient's text was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecipientError {
    /// A FIDO (`sk-`) SSH key: its private half never leaves the token, so age cannot unwrap with it.
    #[error(
        "`{0}` keys (FIDO security keys) cannot unlock a vault: use an ed25519 or RSA key, or age-plugin-fido2-hmac"
    )]
    SshSecurityKey(String),
    /// Another SSH key type.
    #[error("SSH keys of type `{0}` are not supported: use ssh-ed25519 or ssh-rsa")]
    SshUnsupported(String),
    /// Not a recipient coffer knows how to read.
    #[error("not an age recipient (age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …): {0}")]
    Malformed(String),
}

impl SlotRecipient {
    /// Parses one recipient: `age1…` (X25519 or plugin), or one line of an SSH `.pub` file.
    pub fn parse(text: &str) -> Result<SlotRecipient, RecipientError> {
        let text = text.trim();
        let first = text.split_whitespace().next().unwrap_or("");
        if first.starts_with("sk-") {
            return Err(RecipientError::SshSecurityKey(first.to_string()));
        }
        if first.starts_with("ssh-") || first.starts_with("ecdsa-") {
            return match age::ssh::Recipient::from_str(text) {
                Ok(r) => Ok(SlotRecipient::Ssh(r)),
                Err(age::ssh::ParseRecipientKeyError::Unsupported(t)) => Err(RecipientError::SshUnsupported(t)),
                Err(age::ssh::ParseRecipientKeyError::RsaModulusTooSmall) => Err(RecipientError::SshUnsupported(
                    "ssh-rsa with a modulus under 2048 bits".into(),
                )),
                Err(age::ssh::ParseRecipientKeyError::RsaModulusTooLarge) => Err(RecipientError::SshUnsupported(
                    "ssh-rsa with a modulus over 4096 bits".into(),
                )),
                Err(_) => Err(RecipientError::Malformed(shorten(text))),
            };
        }
        if let Ok(r) = age::x25519::Recipient::from_str(text) {
            return Ok(SlotRecipient::X25519(r));
        }
        if let Ok(r) = age::plugin::Recipient::from_str(text) {
            return Ok(SlotRecipient::Plugin(r));
        }
        Err(RecipientError::Malformed(shorten(text)))
    }

    /// The slot kind this recipient makes: `age`, `ssh-ed25519`, `ssh-rsa` or `plugin`.
    pub fn kind(&self) -> &'static str {
        match self {
            SlotRecipient::X25519(_) => "age",
            SlotRecipient::Ssh(age::ssh::Recipient::SshEd25519(..)) => "ssh-ed25519",
            SlotRecipient::Ssh(age::ssh::Recipient::SshRsa(..)) => "ssh-rsa",
            SlotRecipient::Plugin(_) => "plugin",
        }
    }

    /// The plugin's name (`yubikey` for `age1yubikey1…`), for a plugin recipient.
    pub fn plugin_name(&self) -> Option<&str> {
        match self {
            SlotRecipient::Plugin(p) => Some(p.plugin()),
            _ => None,
        }
    }

    /// The recipient's text, as `parse` reads it back.
    pub fn to_text(&self) -> String {
        match self {
            SlotRecipient::X25519(r) => r.to_string(),
            SlotRecipient::Ssh(r) => r.to_string(),
            SlotRecipient::Plugin(r) => r.to_string(),
        }
    }
}

fn shorten(text: &str) -> String {
    let mut s: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        s.push('…');
    }
    s
}

/// Overwrites the base32 digits of a secret before their buffer is freed (`u5` has no
/// `Zeroize`; volatile writes are not optimised away).
fn wipe_digits(digits: &mut [bech32::u5]) {
    let Ok(zero) = bech32::u5::try_from_u8(0) else { return };
    for d in digits.iter_mut() {
        // SAFETY: `d` is a valid, aligned, exclusive reference to a `u5`.
        unsafe { std::ptr::write_volatile(d, zero) };
    }
}

/// A password's or key file's own X25519 identity for one slot.
pub struct DerivedIdentity(age::x25519::Identity);

impl DerivedIdentity {
    /// Builds the identity from 32 secret bytes (clamped by X25519 itself).
    fn from_secret(secret: &[u8; 32]) -> Result<DerivedIdentity, CryptoError> {
        let mut digits = secret.to_base32();
        let text = bech32::encode("age-secret-key-", &digits, bech32::Variant::Bech32)
            .map(Zeroizing::new)
            .map_err(|e| CryptoError::Kdf(e.to_string()));
        wipe_digits(&mut digits);
        // Bech32 reads either case: the lowercase text parses as the identity.
        age::x25519::Identity::from_str(&text?)
            .map(DerivedIdentity)
            .map_err(|e| CryptoError::Kdf(e.to_string()))
    }

    /// The identity of a password slot: Argon2id(password, the slot's salt and cost).
    pub fn from_password(password: &[u8], kdf: &KdfParams) -> Result<DerivedIdentity, CryptoError> {
        let kek = super::derive_kek(password, kdf)?;
        let mut secret = key_box::<32>();
        secret.copy_from_slice(&kek.0[..]);
        DerivedIdentity::from_secret(&secret)
    }

    /// The identity of a key-file slot: HKDF-SHA256(salt, the key file's bytes).
    pub fn from_key_file(contents: &[u8], salt: &[u8]) -> Result<DerivedIdentity, CryptoError> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), contents);
        let mut secret = key_box::<32>();
        hk.expand(b"coffer key-file slot", &mut secret[..])
            .map_err(|_| CryptoError::Length("HKDF output"))?;
        DerivedIdentity::from_secret(&secret)
    }

    /// Its public half, for the slot's sealed description and for wrapping.
    pub fn recipient(&self) -> SlotRecipient {
        SlotRecipient::X25519(self.0.to_public())
    }

    /// As an age identity, to unwrap with.
    pub fn as_identity(&self) -> &dyn age::Identity {
        &self.0
    }
}

/// Asks the user for what an identity needs (a passphrase of an encrypted SSH key, a plugin's
/// PIN): the CLI's prompt, or nothing (non-interactive).
pub use age::Callbacks as SlotCallbacks;

/// Domain of the key that seals the epoch key under a slot's file key.
const PAYLOAD_INFO: &[u8] = b"coffer v3 slot payload";
/// Bytes of an age file key.
const FILE_KEY_LEN: usize = 16;

/// The cipher that seals the epoch key under a slot's age file key: AES-256-EAX keyed by
/// HKDF-SHA256(file key, info `coffer v3 slot payload`).
fn payload_cipher(file_key: &[u8; FILE_KEY_LEN]) -> Result<super::BlockCipher, SlotCryptoError> {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, file_key);
    let mut k = key_box::<32>();
    hk.expand(PAYLOAD_INFO, &mut k[..])
        .map_err(|_| SlotCryptoError::Wrap("HKDF output".into()))?;
    Ok(super::BlockCipher::new(&k))
}

/// `nstanzas u8 | (len u8 | tag | nargs u8 | (len u8 | arg)* | len u16 | body)*`: what the
/// payload's seal authenticates, and how a slot keeps its age stanzas.
fn encode_stanzas(stanzas: &[age_core::format::Stanza]) -> Result<Vec<u8>, SlotCryptoError> {
    let too_long = || SlotCryptoError::Wrap("an age stanza too large for a key slot".into());
    let mut out = Vec::with_capacity(256);
    out.push(u8::try_from(stanzas.len()).map_err(|_| too_long())?);
    for s in stanzas {
        out.push(u8::try_from(s.tag.len()).map_err(|_| too_long())?);
        out.extend_from_slice(s.tag.as_bytes());
        out.push(u8::try_from(s.args.len()).map_err(|_| too_long())?);
        for a in &s.args {
            out.push(u8::try_from(a.len()).map_err(|_| too_long())?);
            out.extend_from_slice(a.as_bytes());
        }
        out.extend_from_slice(&u16::try_from(s.body.len()).map_err(|_| too_long())?.to_be_bytes());
        out.extend_from_slice(&s.body);
    }
    Ok(out)
}

/// Parses [`encode_stanzas`]; returns the stanzas and the bytes they took.
fn decode_stanzas(bytes: &[u8]) -> Result<(Vec<age_core::format::Stanza>, usize), SlotCryptoError> {
    let bad = || SlotCryptoError::Malformed("truncated or malformed age stanzas".into());
    let mut pos = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SlotCryptoError> {
        let s = bytes.get(pos..pos + n).ok_or_else(bad)?;
        pos += n;
        Ok(s)
    };
    let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_string).map_err(|_| bad());
    let n = take(1)?[0];
    let mut out = Vec::with_capacity(usize::from(n));
    for _ in 0..n {
        let tl = usize::from(take(1)?[0]);
        let tag = text(take(tl)?)?;
        let na = take(1)?[0];
        let mut args = Vec::with_capacity(usize::from(na));
        for _ in 0..na {
            let al = usize::from(take(1)?[0]);
            args.push(text(take(al)?)?);
        }
        let bl = take(2)?;
        let bl = usize::from(u16::from_be_bytes([bl[0], bl[1]]));
        let body = take(bl)?.to_vec();
        out.push(age_core::format::Stanza { tag, args, body });
    }
    Ok((out, pos))
}

/// Wraps `key` for `recipient`: a fresh age file key wrapped by the recipient (the `age`
/// crate makes the stanzas: X25519, SSH, or `age-plugin-NAME` from PATH with `callbacks` for
/// what it asks), then the key sealed under that file key with the stanzas as associated
/// data: `stanzas | nonce[16] | EAX(key) | tag[16]`.
pub fn wrap(
    key: &MasterKey,
    recipient: &SlotRecipient,
    callbacks: impl SlotCallbacks + 'static,
) -> Result<Vec<u8>, SlotCryptoError> {
    use age::secrecy::ExposeSecret;
    let file_key = age_core::format::FileKey::try_init_with_mut(|k| {
        super::random_bytes(k).map_err(|e| SlotCryptoError::Wrap(e.to_string()))
    })?;
    let wrapped = match recipient {
        SlotRecipient::X25519(r) => age::Recipient::wrap_file_key(r, &file_key),
        SlotRecipient::Ssh(r) => age::Recipient::wrap_file_key(r, &file_key),
        SlotRecipient::Plugin(p) => {
            let plugin = age::plugin::RecipientPluginV1::new(p.plugin(), std::slice::from_ref(p), &[], callbacks)
                .map_err(|e| match e {
                    age::EncryptError::MissingPlugin { binary_name } => missing_plugin(&binary_name),
                    other => SlotCryptoError::Plugin(one_line(&other.to_string())),
                })?;
            age::Recipient::wrap_file_key(&plugin, &file_key)
        }
    };
    let (stanzas, _) = wrapped.map_err(|e| SlotCryptoError::Wrap(one_line(&e.to_string())))?;
    let mut out = encode_stanzas(&stanzas)?;
    let sealed = payload_cipher(file_key.expose_secret())?
        .seal_to_vec(&out, key.expose())
        .map_err(|e| SlotCryptoError::Wrap(e.to_string()))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// A plugin that is not on PATH.
fn missing_plugin(binary: &str) -> SlotCryptoError {
    SlotCryptoError::Plugin(format!(
        "`{binary}` is not on PATH: install the plugin or add its directory to PATH"
    ))
}

/// age's messages, as one line without the Unicode isolation marks its translations add.
fn one_line(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{2068}' | '\u{2069}'))
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Unwraps a slot's key with any of `identities`: `Ok(None)` when none of them is the slot's.
pub fn unwrap(wrapped: &[u8], identities: &[&dyn age::Identity]) -> Result<Option<MasterKey>, SlotCryptoError> {
    use age::secrecy::ExposeSecret;
    let (stanzas, used) = decode_stanzas(wrapped)?;
    let file_key = identities.iter().find_map(|id| id.unwrap_stanzas(&stanzas));
    let file_key = match file_key {
        None => return Ok(None),
        Some(Ok(k)) => k,
        Some(Err(age::DecryptError::MissingPlugin { binary_name })) => return Err(missing_plugin(&binary_name)),
        Some(Err(e)) => return Err(SlotCryptoError::Unwrap(one_line(&e.to_string()))),
    };
    let raw = Zeroizing::new(
        payload_cipher(file_key.expose_secret())?
            .open_from_slice(&wrapped[..used], &wrapped[used..])
            .map_err(|_| SlotCryptoError::Unwrap("the sealed key does not open under the slot's file key".into()))?,
    );
    MasterKey::from_slice(&raw)
        .map(Some)
        .ok_or(SlotCryptoError::Malformed("the wrapped key is not 32 bytes".into()))
}

/// Reads identities from the text of an age identity file (`AGE-SECRET-KEY-1…`,
/// `AGE-PLUGIN-NAME-1…`, comments) or an SSH private key (OpenSSH or PEM; an encrypted one
/// asks `callbacks` for its passphrase when first used).
pub fn read_identities(
    text: &[u8],
    filename: &str,
    callbacks: impl SlotCallbacks + 'static,
) -> Result<Vec<Box<dyn age::Identity>>, SlotCryptoError> {
    let looks_ssh = text.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----")
        || text.starts_with(b"-----BEGIN RSA PRIVATE KEY-----");
    if looks_ssh {
        let id = age::ssh::Identity::from_buffer(text, Some(filename.to_string()))
            .map_err(|e| SlotCryptoError::Identity(format!("{filename}: {}", one_line(&e.to_string()))))?;
        if let age::ssh::Identity::Unsupported(k) = &id {
            let why = match k {
                age::ssh::UnsupportedKey::Type(t) if t.starts_with("sk-") => {
                    RecipientError::SshSecurityKey(t.clone()).to_string()
                }
                age::ssh::UnsupportedKey::Type(t) => RecipientError::SshUnsupported(t.clone()).to_string(),
                _ => "this SSH key is not supported (an unknown cipher or format)".to_string(),
            };
            return Err(SlotCryptoError::Identity(format!("{filename}: {why}")));
        }
        if let age::ssh::Identity::Encrypted(enc) = &id {
            // Asked once here, not once per slot the key is tried against.
            let Some(passphrase) = callbacks.request_passphrase(&format!("Passphrase for the SSH key {filename}"))
            else {
                return Err(SlotCryptoError::Identity(format!(
                    "{filename}: the SSH key is passphrase-protected and no passphrase was given"
                )));
            };
            let key = enc
                .decrypt(passphrase)
                .map_err(|_| SlotCryptoError::Identity(format!("{filename}: wrong passphrase for the SSH key")))?;
            return Ok(vec![Box::new(age::ssh::Identity::from(key))]);
        }
        return Ok(vec![Box::new(id)]);
    }
    let file = age::IdentityFile::from_buffer(text)
        .map_err(|e| {
            SlotCryptoError::Identity(format!(
                "{filename}: not an age identity file or SSH private key ({})",
                one_line(&e.to_string())
            ))
        })?
        .with_callbacks(callbacks);
    let ids = file
        .into_identities()
        .map_err(|e| SlotCryptoError::Identity(format!("{filename}: {}", one_line(&e.to_string()))))?;
    if ids.is_empty() {
        return Err(SlotCryptoError::Identity(format!("{filename}: holds no identity")));
    }
    Ok(ids)
}

/// Callbacks that answer nothing: for wrapping to recipients that need no interaction.
#[derive(Clone, Copy)]
pub struct NoCallbacks;

impl age::Callbacks for NoCallbacks {
    fn display_message(&self, message: &str) {
        log::info!("{message}");
    }
    fn confirm(&self, _: &str, _: &str, _: Option<&str>) -> Option<bool> {
        None
    }
    fn request_public_string(&self, _: &str) -> Option<String> {
        None
    }
    fn request_passphrase(&self, _: &str) -> Option<SecretString> {
        None
    }
}

/// Why a slot could not be wrapped or unwrapped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotCryptoError {
    /// age refused to wrap.
    #[error("cannot wrap the key: {0}")]
    Wrap(String),
    /// The identity matched but unwrapping failed (a tampered slot, a plugin error).
    #[error("cannot unwrap the key: {0}")]
    Unwrap(String),
    /// The slot's bytes are not age stanzas and a sealed 32-byte key.
    #[error("the slot is not a wrapped key: {0}")]
    Malformed(String),
    /// A plugin is missing or failed.
    #[error("age plugin: {0}")]
    Plugin(String),
    /// An identity file that cannot be read.
    #[error("{0}")]
    Identity(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kdf() -> KdfParams {
        KdfParams {
            m_kib: 8,
            t: 1,
            p: 1,
            salt: vec![7; 32],
        }
    }

    #[test]
    fn a_password_identity_unwraps_what_its_recipient_wrapped() {
        let key = MasterKey::from_bytes([9; 32]);
        let id = DerivedIdentity::from_password(b"pw", &kdf()).unwrap();
        let wrapped = wrap(&key, &id.recipient(), NoCallbacks).unwrap();
        assert_eq!(
            unwrap(&wrapped, &[id.as_identity()]).unwrap().unwrap().expose(),
            &[9; 32]
        );
        // The same password and salt give the same identity; another password does not match.
        let again = DerivedIdentity::from_password(b"pw", &kdf()).unwrap();
        assert_eq!(again.recipient().to_text(), id.recipient().to_text());
        let other = DerivedIdentity::from_password(b"other", &kdf()).unwrap();
        assert!(unwrap(&wrapped, &[other.as_identity()]).unwrap().is_none());
        // A flipped byte in the payload is refused, not a wrong key.
        let mut bad = wrapped.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(unwrap(&bad, &[id.as_identity()]).is_err());
    }

    #[test]
    fn key_file_identities_depend_on_file_and_salt() {
        let a = DerivedIdentity::from_key_file(b"random bytes", &[1; 32]).unwrap();
        let b = DerivedIdentity::from_key_file(b"random bytes", &[2; 32]).unwrap();
        let c = DerivedIdentity::from_key_file(b"other bytes", &[1; 32]).unwrap();
        let (ra, rb, rc) = (
            a.recipient().to_text(),
            b.recipient().to_text(),
            c.recipient().to_text(),
        );
        assert!(ra.starts_with("age1"));
        assert_ne!(ra, rb);
        assert_ne!(ra, rc);
    }

    #[test]
    fn recipients_parse_and_bad_ones_say_why() {
        let id = age::x25519::Identity::generate();
        let r = SlotRecipient::parse(&id.to_public().to_string()).unwrap();
        assert_eq!(r.kind(), "age");
        let ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
        let r = SlotRecipient::parse(ed).unwrap();
        assert_eq!(r.kind(), "ssh-ed25519");
        let sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA== x";
        assert!(matches!(
            SlotRecipient::parse(sk),
            Err(RecipientError::SshSecurityKey(_))
        ));
        assert!(matches!(
            SlotRecipient::parse("age1nope"),
            Err(RecipientError::Malformed(_))
        ));
        let p = bech32::encode("age1yubikey", [3u8; 33].to_base32(), bech32::Variant::Bech32).unwrap();
        let r = SlotRecipient::parse(&p).unwrap();
        assert_eq!((r.kind(), r.plugin_name()), ("plugin", Some("yubikey")));
    }
}
