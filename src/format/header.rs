//! The file header: `version u16 BE | file id [16]`, at offset 0 of every non-empty backing file.

use super::{FormatError, FORMAT_VERSION};

/// Header length in bytes.
pub const HEADER_LEN: usize = 2 + 16; // version u16 BE | file id [16]

/// A parsed file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Random per-file ID, bound into every block's associated data.
    pub file_id: [u8; 16],
}

impl FileHeader {
    /// Serializes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..2].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        out[2..].copy_from_slice(&self.file_id);
        out
    }

    /// Parses a header; refuses short input, unknown versions and an all-zero file ID.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::BadHeader(format!(
                "{} bytes, need {HEADER_LEN}",
                bytes.len()
            )));
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        if version != FORMAT_VERSION {
            return Err(FormatError::BadHeader(format!(
                "version {version}, expected {FORMAT_VERSION}"
            )));
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&bytes[2..HEADER_LEN]);
        if file_id == [0u8; 16] {
            return Err(FormatError::BadHeader("all-zero file id".into()));
        }
        Ok(FileHeader { file_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let h = FileHeader { file_id: [5; 16] };
        assert_eq!(FileHeader::decode(&h.encode()).unwrap(), h);
        assert!(FileHeader::decode(&h.encode()[..17]).is_err());
        let mut bad = h.encode();
        bad[1] = 2;
        assert!(FileHeader::decode(&bad).is_err());
        assert!(FileHeader::decode(&[0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            let _ = FileHeader::decode(&bytes);
        }
    }
}
