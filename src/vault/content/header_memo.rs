//! The file header as a read last found it, kept with the backing file's change stamp of that
//! read, so that reads of a file at rest do not read its header again each time.
//!
//! A stale header cannot give wrong bytes: its file ID is bound into every block as associated
//! data, so blocks of another version fail to authenticate. A read that used a kept header and
//! met such a block reads the header afresh before it judges the damage.

use std::sync::Mutex;

use crate::format::header::FileHeader;

use super::storage::ChangeStamp;

/// The header and the change stamp it was read at.
#[derive(Debug, Default)]
pub(super) struct HeaderMemo(Mutex<Option<(ChangeStamp, FileHeader)>>);

impl HeaderMemo {
    /// The header kept for a backing file that stats as `stamp`, if that is the stamp it was
    /// read at.
    pub(super) fn get(&self, stamp: ChangeStamp) -> Option<FileHeader> {
        let kept = self.0.lock().unwrap_or_else(|p| p.into_inner());
        kept.filter(|(at, _)| *at == stamp).map(|(_, h)| h)
    }

    /// Keeps `header`, read from a backing file that statted as `stamp` just before.
    pub(super) fn keep(&self, stamp: ChangeStamp, header: FileHeader) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((stamp, header));
    }

    /// Drops the kept header.
    pub(super) fn forget(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(len: u64, ctime_ns: i64) -> ChangeStamp {
        ChangeStamp {
            len,
            mtime: (1, 0),
            ctime: (1, ctime_ns),
        }
    }

    #[test]
    fn kept_only_for_the_stamp_it_was_read_at() {
        let memo = HeaderMemo::default();
        let h = FileHeader {
            version: 2,
            file_id: [7; 16],
        };
        assert_eq!(memo.get(stamp(100, 5)), None);
        memo.keep(stamp(100, 5), h);
        assert_eq!(memo.get(stamp(100, 5)), Some(h));
        assert_eq!(memo.get(stamp(100, 6)), None, "a changed ctime");
        assert_eq!(memo.get(stamp(118, 5)), None, "a changed length");
        memo.forget();
        assert_eq!(memo.get(stamp(100, 5)), None);
    }
}
