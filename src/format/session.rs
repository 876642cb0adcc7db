//! Write sessions of header-version-2 files: the nonce layout that carries them and the rule
//! that ties blocks to one version of a file (docs/FORMAT.md §5.8). Pure.
//!
//! A v2 block nonce is `random [12] | session u32 BE`. EAX authenticates the nonce, so the
//! session cannot be changed without failing the block. Rule: no block of a file may carry a
//! session above its last block's. Every write session first gives the last block a session
//! above all others, so a copy of the file that is rewritten in place block by block in
//! ascending order (rsync --inplace) holds, until its last block arrives, new blocks above the
//! old last block: a reader that learns the last block's session *before* reading other blocks
//! sees either blocks of one version or a violation, never an authenticated mix.
//!
//! Header version 3 keeps the rule and hides the session: nonce bytes 12..16 hold it XORed with
//! a per-file mask (FORMAT.md §15.3). Content code reads and writes sessions only through the
//! block codec (`vault::codec`), which applies the layout of the file's version.

use crate::crypto::NONCE_LEN;

/// Random bytes at the start of a v2 nonce (96 bits: nonce collisions are negligible up to
/// 2^40 blocks sealed with one session number under one key).
pub const NONCE_RANDOM_LEN: usize = 12;

/// The first session of a file (0 is never sealed: holes read as session 0).
pub const FIRST_SESSION: u32 = 1;

/// The write session carried by a v2 block nonce.
pub fn session_of(nonce: &[u8; NONCE_LEN]) -> u32 {
    u32::from_be_bytes([nonce[12], nonce[13], nonce[14], nonce[15]])
}

/// Writes `session` into the last 4 bytes of `nonce` (the first 12 stay random).
pub fn set_nonce_session(nonce: &mut [u8; NONCE_LEN], session: u32) {
    nonce[NONCE_RANDOM_LEN..].copy_from_slice(&session.to_be_bytes());
}

/// The highest session: a file whose last block carries it has used up its sessions.
pub const LAST_SESSION: u32 = u32::MAX;

/// The session after `s`. It saturates at [`LAST_SESSION`]: a file that used up 2^32 sessions
/// keeps the last, and its later versions can no longer be told apart. Never silently: fsck
/// reports such a file (`sessions_exhausted`) and the mount logs a write that starts a session
/// there; a copy of the file gets a new file ID and starts again at [`FIRST_SESSION`].
pub fn next(s: u32) -> u32 {
    s.saturating_add(1).max(FIRST_SESSION)
}

/// Whether a file whose last block carries `last` has no session left above it.
pub fn exhausted(last: u32) -> bool {
    last == LAST_SESSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let mut n = [0xaa; NONCE_LEN];
        set_nonce_session(&mut n, 0x0102_0304);
        assert_eq!(n[..12], [0xaa; 12]);
        assert_eq!(n[12..], [1, 2, 3, 4]);
        assert_eq!(session_of(&n), 0x0102_0304);
        assert_eq!(next(0), 1);
        assert_eq!(next(7), 8);
        assert_eq!(next(u32::MAX), u32::MAX);
        assert_eq!(next(LAST_SESSION - 1), LAST_SESSION);
        assert!(exhausted(next(LAST_SESSION - 1)));
        assert!(!exhausted(LAST_SESSION - 1));
    }
}
