//! The file header: `version u16 BE | file id [16]`, at offset 0 of every non-empty backing file.

use super::epochs::EpochId;

/// Header length in bytes.
pub const HEADER_LEN: usize = 2 + 16; // version u16 BE | file id [16]

/// Header version 1: block nonces are 16 random bytes.
pub const FILE_V1: u16 = 1;
/// Header version 2: block nonces carry their write session (`format::session`); written in
/// vaults with the `block_sessions` flag.
pub const FILE_V2: u16 = 2;
/// Header version 3 (docs/FORMAT.md §15.3): the file ID starts with the ID of the key epoch
/// that sealed the file, blocks are sealed under per-file keys, and the write session in each
/// nonce is masked; written in vaults whose newest epoch has layout 3.
pub const FILE_V3: u16 = 3;

/// Why a file header does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderFault {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("{len} bytes, need {HEADER_LEN}")]
    Short {
        /// Bytes there are.
        len: usize,
    },
    /// A version other than [`FILE_V1`], [`FILE_V2`] and [`FILE_V3`].
    #[error("version {version}, expected {FILE_V1}, {FILE_V2} or {FILE_V3}")]
    Version {
        /// The version found.
        version: u16,
    },
    /// The file ID is all zeros (never drawn by coffer).
    #[error("all-zero file id")]
    ZeroFileId,
}

/// A parsed file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// [`FILE_V1`], [`FILE_V2`] or [`FILE_V3`]; bound into every block's associated data.
    pub version: u16,
    /// Per-file ID, bound into every block's associated data: 16 random bytes, or for
    /// [`FILE_V3`] `epoch ID [4] | random [12]`.
    pub file_id: [u8; 16],
}

impl FileHeader {
    /// Whether block nonces carry write sessions (versions 2 and 3).
    pub fn has_sessions(&self) -> bool {
        self.version == FILE_V2 || self.version == FILE_V3
    }

    /// The key epoch that sealed the file (version 3: the first 4 bytes of the file ID).
    pub fn epoch_id(&self) -> Option<EpochId> {
        (self.version == FILE_V3).then(|| EpochId([self.file_id[0], self.file_id[1], self.file_id[2], self.file_id[3]]))
    }

    /// Serializes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&self.version.to_be_bytes());
        out[2..].copy_from_slice(&self.file_id);
        out
    }

    /// Parses a header; refuses short input, unknown versions and an all-zero file ID.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderFault> {
        if bytes.len() < HEADER_LEN {
            return Err(HeaderFault::Short { len: bytes.len() });
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        if ![FILE_V1, FILE_V2, FILE_V3].contains(&version) {
            return Err(HeaderFault::Version { version });
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&bytes[2..HEADER_LEN]);
        if file_id == [0u8; 16] {
            return Err(HeaderFault::ZeroFileId);
        }
        Ok(FileHeader { version, file_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        for version in [FILE_V1, FILE_V2, FILE_V3] {
            let h = FileHeader {
                version,
                file_id: [5; 16],
            };
            assert_eq!(FileHeader::decode(&h.encode()).unwrap(), h);
            assert_eq!(h.encode()[0..2], [0, version as u8]);
            assert_eq!(
                FileHeader::decode(&h.encode()[..17]),
                Err(HeaderFault::Short { len: 17 })
            );
        }
        let mut bad = FileHeader {
            version: FILE_V1,
            file_id: [5; 16],
        }
        .encode();
        bad[1] = 4;
        assert_eq!(FileHeader::decode(&bad), Err(HeaderFault::Version { version: 4 }));
        bad[1] = 0;
        assert_eq!(FileHeader::decode(&bad), Err(HeaderFault::Version { version: 0 }));
        assert_eq!(
            FileHeader::decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(HeaderFault::ZeroFileId)
        );
        // The texts damage reports give.
        assert_eq!(HeaderFault::Short { len: 10 }.to_string(), "10 bytes, need 18");
        assert_eq!(
            HeaderFault::Version { version: 4 }.to_string(),
            "version 4, expected 1, 2 or 3"
        );
        assert_eq!(HeaderFault::ZeroFileId.to_string(), "all-zero file id");
    }

    #[test]
    fn version_3_names_its_epoch() {
        let mut file_id = [0xf4; 16];
        file_id[..4].copy_from_slice(&[0xe0, 0xe1, 0xe2, 0xe3]);
        let v3 = FileHeader {
            version: FILE_V3,
            file_id,
        };
        assert_eq!(v3.encode()[..6], [0, 3, 0xe0, 0xe1, 0xe2, 0xe3]);
        assert_eq!(v3.encode().len(), HEADER_LEN);
        assert_eq!(v3.epoch_id(), Some(EpochId([0xe0, 0xe1, 0xe2, 0xe3])));
        assert!(v3.has_sessions());
        let v2 = FileHeader {
            version: FILE_V2,
            file_id,
        };
        assert_eq!((v2.epoch_id(), v2.has_sessions()), (None, true));
        let v1 = FileHeader {
            version: FILE_V1,
            file_id,
        };
        assert_eq!((v1.epoch_id(), v1.has_sessions()), (None, false));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let _ = FileHeader::decode(&bytes);
        }
    }
}
