//! In-memory storage for tests: a backing file held in a vector that can run out of space at
//! a chosen byte, tear its next write, fail a reservation, record its changes (to replay any
//! prefix of them, as a kill -9 or a power loss would leave it), and let a rewriter change it
//! while a read is under way.

use std::fmt;
use std::io;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::storage::{ChangeStamp, Storage, StorageStat};

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemOp {
    /// Bytes written at an offset.
    Write { off: u64, bytes: Vec<u8> },
    /// The length set.
    SetLen(u64),
}

impl MemOp {
    /// Applies this change to `bytes`; a write keeps only its first `keep` bytes when given
    /// (a write torn by a crash).
    pub fn apply(&self, bytes: &mut Vec<u8>, keep: Option<usize>) {
        match self {
            MemOp::Write { off, bytes: data } => {
                let data = &data[..keep.unwrap_or(data.len()).min(data.len())];
                let off = *off as usize;
                if bytes.len() < off + data.len() {
                    bytes.resize(off + data.len(), 0);
                }
                bytes[off..off + data.len()].copy_from_slice(data);
            }
            MemOp::SetLen(len) => bytes.resize(*len as usize, 0),
        }
    }
}

/// Called before each read with the number of reads so far and the bytes; returns whether it
/// changed them.
type Rewriter = Box<dyn FnMut(u64, &mut Vec<u8>) -> bool + Send>;

#[derive(Default)]
struct MemState {
    bytes: Vec<u8>,
    /// Bumped by every change: the change stamp.
    generation: u64,
    modified: Option<SystemTime>,
    /// Bytes at or past this offset cannot be written (ENOSPC).
    space_end: Option<u64>,
    /// The next write stores only this many bytes, then fails with EIO.
    tear_next: Option<usize>,
    /// Reservations fail with this errno.
    reserve_errno: Option<i32>,
    /// What `free_bytes` says.
    free: u64,
    /// Changes recorded since `record` (None: not recording).
    ops: Option<Vec<MemOp>>,
    reads: u64,
    rewriter: Option<Rewriter>,
}

/// A backing file in memory.
pub struct MemStorage {
    state: Mutex<MemState>,
}

impl fmt::Debug for MemStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemStorage")
            .field("len", &self.lock().bytes.len())
            .finish_non_exhaustive()
    }
}

impl MemStorage {
    /// Storage holding `bytes`, with plenty of free space.
    pub fn new(bytes: Vec<u8>) -> Self {
        MemStorage {
            state: Mutex::new(MemState {
                bytes,
                free: u64::MAX / 2,
                ..MemState::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bytes now.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().bytes.clone()
    }

    /// Replaces the bytes (another program writing the whole file).
    pub fn replace(&self, bytes: Vec<u8>) {
        let mut st = self.lock();
        st.bytes = bytes;
        st.touch();
    }

    /// Replaces the bytes without moving the change stamp (another program's write within the
    /// granularity of the file system's clock).
    pub fn replace_unstamped(&self, bytes: Vec<u8>) {
        self.lock().bytes = bytes;
    }

    /// Writes past byte `end` fail with ENOSPC (after storing the bytes before it).
    pub fn run_out_at(&self, end: Option<u64>) {
        self.lock().space_end = end;
    }

    /// The next write stores only its first `keep` bytes, then fails with EIO.
    pub fn tear_next_write(&self, keep: usize) {
        self.lock().tear_next = Some(keep);
    }

    /// The file was last modified at `when` (`None`: unknown), as a file at rest says.
    pub fn set_modified(&self, when: Option<SystemTime>) {
        self.lock().modified = when;
    }

    /// Reservations fail with `errno` (None: they succeed unless past the space end).
    pub fn fail_reserve(&self, errno: Option<i32>) {
        self.lock().reserve_errno = errno;
    }

    /// What the free-space query answers.
    pub fn set_free(&self, free: u64) {
        self.lock().free = free;
    }

    /// Starts recording changes (dropping any recorded before).
    pub fn record(&self) {
        self.lock().ops = Some(Vec::new());
    }

    /// The changes recorded since `record`.
    pub fn recorded(&self) -> Vec<MemOp> {
        self.lock().ops.clone().unwrap_or_default()
    }

    /// Runs `rewriter` before every read from now on (see [`Rewriter`]).
    pub fn rewrite_during_reads(&self, rewriter: impl FnMut(u64, &mut Vec<u8>) -> bool + Send + 'static) {
        let mut st = self.lock();
        st.reads = 0;
        st.rewriter = Some(Box::new(rewriter));
    }
}

impl MemState {
    fn touch(&mut self) {
        self.generation += 1;
        self.modified = Some(SystemTime::now());
    }

    fn log(&mut self, op: MemOp) {
        if let Some(ops) = self.ops.as_mut() {
            ops.push(op);
        }
    }
}

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl Storage for MemStorage {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        let mut st = self.lock();
        let reads = st.reads;
        st.reads += 1;
        if let Some(mut rw) = st.rewriter.take() {
            if rw(reads, &mut st.bytes) {
                st.touch();
            }
            st.rewriter = Some(rw);
        }
        let Some(src) = usize::try_from(off).ok().and_then(|o| st.bytes.get(o..)) else {
            return Ok(0);
        };
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        let mut st = self.lock();
        let room = st
            .space_end
            .map_or(buf.len() as u64, |end| end.saturating_sub(off).min(buf.len() as u64)) as usize;
        let (keep, err) = match st.tear_next.take() {
            Some(keep) if keep < room => (keep, Some(libc::EIO)),
            _ if room < buf.len() => (room, Some(libc::ENOSPC)),
            _ => (buf.len(), None),
        };
        if keep > 0 || err.is_none() {
            let op = MemOp::Write {
                off,
                bytes: buf[..keep].to_vec(),
            };
            op.apply(&mut st.bytes, None);
            st.log(op);
            st.touch();
        }
        err.map_or(Ok(()), |e| Err(errno(e)))
    }

    fn stat(&self) -> io::Result<StorageStat> {
        let st = self.lock();
        let len = st.bytes.len() as u64;
        let generation = i64::try_from(st.generation).unwrap_or(i64::MAX);
        Ok(StorageStat {
            dev: 0,
            len,
            change: ChangeStamp {
                len,
                mtime: (generation, 0),
                ctime: (generation, 0),
            },
            modified: st.modified,
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.lock();
        let op = MemOp::SetLen(len);
        op.apply(&mut st.bytes, None);
        st.log(op);
        st.touch();
        Ok(())
    }

    fn sync(&self, _data_only: bool) -> io::Result<()> {
        Ok(())
    }

    fn reserve(&self, off: u64, len: u64) -> io::Result<()> {
        let st = self.lock();
        if let Some(e) = st.reserve_errno {
            return Err(errno(e));
        }
        if st.space_end.is_some_and(|end| off.saturating_add(len) > end) {
            return Err(errno(libc::ENOSPC));
        }
        Ok(())
    }

    fn free_bytes(&self) -> u64 {
        self.lock().free
    }

    fn seek(&self, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        // No holes: every byte is data.
        let len = self.lock().bytes.len() as u64;
        Ok((off < len).then_some(if whence == libc::SEEK_HOLE { len } else { off }))
    }

    fn start_writeback(&self, _off: u64, _len: u64) -> io::Result<()> {
        Ok(())
    }
}
