//! `age-plugin-coffertest`: an age plugin for coffer's tests, so that plugin key slots
//! (`age1coffertest1…` recipients, `AGE-PLUGIN-COFFERTEST-1…` identities) run the real plugin
//! protocol through the `age` crate without hardware. NOT a secure plugin: its recipient is a
//! hash of its identity, and anyone who knows the recipient can unwrap what was wrapped to it.
//!
//! `age-plugin-coffertest --keygen` prints a new identity (with its recipient in a comment);
//! age runs it as `age-plugin-coffertest --age-plugin=recipient-v1|identity-v1`.

use std::collections::{HashMap, HashSet};
use std::io;

use age_core::format::{FileKey, Stanza};
use age_core::secrecy::ExposeSecret;
use age_plugin::{identity, recipient, run_state_machine, Callbacks, PluginHandler};
use sha2::{Digest, Sha256};

const NAME: &str = "coffertest";

/// The recipient of identity `secret`.
fn recipient_of(secret: &[u8]) -> [u8; 32] {
    Sha256::new_with_prefix(b"coffertest recipient")
        .chain_update(secret)
        .finalize()
        .into()
}

/// The pad a file key is XORed with for recipient `r` and nonce `n`.
fn pad(r: &[u8], n: &[u8]) -> [u8; 32] {
    Sha256::new_with_prefix(b"coffertest pad")
        .chain_update(r)
        .chain_update(n)
        .finalize()
        .into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Handler;

impl PluginHandler for Handler {
    type RecipientV1 = Wrap;
    type IdentityV1 = Unwrap;

    fn recipient_v1(self) -> io::Result<Wrap> {
        Ok(Wrap(Vec::new()))
    }

    fn identity_v1(self) -> io::Result<Unwrap> {
        Ok(Unwrap(Vec::new()))
    }
}

struct Wrap(Vec<Vec<u8>>);

impl recipient::RecipientPluginV1 for Wrap {
    fn add_recipient(&mut self, index: usize, plugin_name: &str, bytes: &[u8]) -> Result<(), recipient::Error> {
        if plugin_name != NAME || bytes.len() != 32 {
            return Err(recipient::Error::Recipient {
                index,
                message: "not a coffertest recipient".into(),
            });
        }
        self.0.push(bytes.to_vec());
        Ok(())
    }

    fn add_identity(&mut self, index: usize, _: &str, _: &[u8]) -> Result<(), recipient::Error> {
        Err(recipient::Error::Identity {
            index,
            message: "coffertest wraps to recipients only".into(),
        })
    }

    fn labels(&mut self) -> HashSet<String> {
        HashSet::new()
    }

    fn wrap_file_keys(
        &mut self,
        file_keys: Vec<FileKey>,
        _callbacks: impl Callbacks<recipient::Error>,
    ) -> io::Result<Result<Vec<Vec<Stanza>>, Vec<recipient::Error>>> {
        let mut out = Vec::with_capacity(file_keys.len());
        for fk in file_keys {
            let mut stanzas = Vec::new();
            for r in &self.0 {
                let mut nonce = [0u8; 16];
                getrandom::fill(&mut nonce).map_err(io::Error::other)?;
                let p = pad(r, &nonce);
                let body: Vec<u8> = fk.expose_secret().iter().zip(p).map(|(a, b)| a ^ b).collect();
                stanzas.push(Stanza {
                    tag: NAME.into(),
                    args: vec![hex(&r[..4]), hex(&nonce)],
                    body,
                });
            }
            out.push(stanzas);
        }
        Ok(Ok(out))
    }
}

struct Unwrap(Vec<Vec<u8>>);

impl identity::IdentityPluginV1 for Unwrap {
    fn add_identity(&mut self, index: usize, plugin_name: &str, bytes: &[u8]) -> Result<(), identity::Error> {
        if plugin_name != NAME || bytes.len() != 32 {
            return Err(identity::Error::Identity {
                index,
                message: "not a coffertest identity".into(),
            });
        }
        self.0.push(bytes.to_vec());
        Ok(())
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        mut callbacks: impl Callbacks<identity::Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<identity::Error>>>> {
        let mut out = HashMap::new();
        for (i, stanzas) in files.into_iter().enumerate() {
            for s in stanzas
                .iter()
                .filter(|s| s.tag == NAME && s.args.len() == 2 && s.body.len() == 16)
            {
                let Some(secret) = self.0.iter().find(|sec| hex(&recipient_of(sec)[..4]) == s.args[0]) else {
                    continue;
                };
                let nonce: Vec<u8> = (0..s.args[1].len() / 2)
                    .filter_map(|j| u8::from_str_radix(s.args[1].get(2 * j..2 * j + 2)?, 16).ok())
                    .collect();
                let p = pad(&recipient_of(secret), &nonce);
                let fk = FileKey::init_with_mut(|k| {
                    for (j, b) in k.iter_mut().enumerate() {
                        *b = s.body[j] ^ p[j];
                    }
                });
                let _ = callbacks.message("coffertest: unwrapped")?;
                out.insert(i, Ok(fk));
                break;
            }
        }
        Ok(out)
    }
}

fn main() -> io::Result<()> {
    let arg = std::env::args().nth(1).unwrap_or_default();
    if let Some(machine) = arg.strip_prefix("--age-plugin=") {
        return run_state_machine(machine, Handler);
    }
    if arg == "--keygen" {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(io::Error::other)?;
        age_plugin::print_new_identity(NAME, &secret, &recipient_of(&secret));
        return Ok(());
    }
    eprintln!("usage: age-plugin-coffertest --keygen");
    std::process::exit(2)
}
