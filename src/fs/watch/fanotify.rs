//! fanotify as the watch of CIPHERDIR's directories. Like an inotify watch, each mark is on
//! one directory and reports changes to the names in it, but every event also names the
//! process that made it: the mount's own changes are told from a sync client's exactly, with
//! no stat and no record (see [`own`](super::own) for what inotify needs instead). Linux 5.13
//! and later let an unprivileged process do this; the mount falls back to inotify where
//! fanotify cannot be set up.
//!
//! Events identify their directory by file handle, not by a watch descriptor: each marked
//! directory is known by its [`DirKey`], taken with `name_to_handle_at` when it is marked.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The events a directory mark asks for: those of the inotify watch, for the directory's
/// entries (`FAN_EVENT_ON_CHILD`) and for subdirectories and the directory itself
/// (`FAN_ONDIR`).
const MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MODIFY
    | libc::FAN_ATTRIB
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_DELETE_SELF
    | libc::FAN_MOVE_SELF
    | libc::FAN_EVENT_ON_CHILD
    | libc::FAN_ONDIR;

/// The kinds of change an event reports, in the bits inotify uses for the same kinds (the
/// two APIs share them), so that a batch merges events of either.
const CHANGE_BITS: u64 = libc::FAN_MODIFY
    | libc::FAN_ATTRIB
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_DELETE_SELF
    | libc::FAN_MOVE_SELF;

/// Largest file handle (MAX_HANDLE_SZ).
const MAX_HANDLE: usize = 128;

/// What identifies a marked directory in events: its file system id, handle type and handle
/// bytes, as an event's directory record carries them.
pub type DirKey = Vec<u8>;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A fanotify group reporting directory handles and entry names.
#[derive(Debug)]
pub struct Fanotify {
    fd: OwnedFd,
}

impl AsRawFd for Fanotify {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Fanotify {
    /// A new group; fails where this process may not use fanotify (an unprivileged process
    /// before Linux 5.13) or the kernel lacks name reporting (before 5.9).
    pub fn init() -> io::Result<Fanotify> {
        let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_DFID_NAME;
        let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as libc::c_uint;
        // SAFETY: plain syscall with flag arguments.
        let fd = cvt(unsafe { libc::fanotify_init(flags, event_flags) })?;
        // SAFETY: fanotify_init returned a new descriptor that nothing else owns.
        Ok(Fanotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Marks the directory open as `dir`; returns the key its events will carry.
    pub fn add(&self, dir: &impl AsRawFd) -> io::Result<DirKey> {
        let key = dir_key(dir)?;
        self.mark(libc::FAN_MARK_ADD, dir)?;
        Ok(key)
    }

    /// Removes the mark of the directory open as `dir`, if it still has the key `key` (a
    /// directory that is another one now keeps whatever mark it has).
    pub fn remove(&self, dir: &impl AsRawFd, key: &[u8]) -> io::Result<()> {
        if dir_key(dir)? != key {
            return Err(io::Error::from_raw_os_error(libc::ESTALE));
        }
        self.mark(libc::FAN_MARK_REMOVE, dir)
    }

    fn mark(&self, op: libc::c_uint, dir: &impl AsRawFd) -> io::Result<()> {
        // SAFETY: both descriptors are open for the call; a null path marks `dir` itself.
        cvt(unsafe { libc::fanotify_mark(self.fd.as_raw_fd(), op, MASK, dir.as_raw_fd(), std::ptr::null()) })?;
        Ok(())
    }

    /// Reads queued events into `buf` (WouldBlock when there are none).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// The key events carry for the directory open as `dir`.
fn dir_key(dir: &impl AsRawFd) -> io::Result<DirKey> {
    // SAFETY: statfs is plain old data; all-zero is a valid value.
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `sfs` is valid for writes for the call.
    cvt(unsafe { libc::fstatfs(dir.as_raw_fd(), &mut sfs) })?;
    const _: () = assert!(std::mem::size_of::<libc::fsid_t>() == 8);
    // SAFETY: fsid_t is two C ints, 8 bytes of plain data (asserted above).
    let fsid: [u8; 8] = unsafe { std::mem::transmute_copy(&sfs.f_fsid) };
    let (handle_type, handle) = match handle_of(dir, libc::AT_HANDLE_FID) {
        // Kernels before 6.5 know no AT_HANDLE_FID, and report the plain handle.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => handle_of(dir, 0)?,
        r => r?,
    };
    Ok(key_of(&fsid, handle_type, &handle))
}

/// The handle type and bytes of the object open as `fd`.
fn handle_of(fd: &impl AsRawFd, flags: libc::c_int) -> io::Result<(i32, Vec<u8>)> {
    // struct file_handle: handle_bytes u32 | handle_type i32 | f_handle[handle_bytes].
    let mut buf = [0u32; (8 + MAX_HANDLE) / 4];
    buf[0] = MAX_HANDLE as u32;
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `buf` is a 4-aligned struct file_handle with room for MAX_HANDLE bytes, as its
    // first field says; the empty path with AT_EMPTY_PATH names `fd` itself.
    cvt(unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut mount_id,
            libc::AT_EMPTY_PATH | flags,
        )
    })?;
    let len = (buf[0] as usize).min(MAX_HANDLE);
    let handle_type = buf[1] as i32;
    let bytes: Vec<u8> = buf[2..].iter().flat_map(|w| w.to_ne_bytes()).take(len).collect();
    Ok((handle_type, bytes))
}

fn key_of(fsid: &[u8], handle_type: i32, handle: &[u8]) -> DirKey {
    let mut key = Vec::with_capacity(12 + handle.len());
    key.extend_from_slice(fsid);
    key.extend_from_slice(&handle_type.to_ne_bytes());
    key.extend_from_slice(handle);
    key
}

/// One event, as read.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    /// The kinds of change, in inotify's bits.
    pub changes: u32,
    /// Events were lost.
    pub overflow: bool,
    /// The process that made the change (0 when it is not this one and this one may not
    /// know it).
    pub pid: i32,
    /// The key of the directory the change is in (or of the directory itself).
    pub dir: Option<DirKey>,
    /// The entry changed; None (or ".") for the directory itself.
    pub name: Option<Vec<u8>>,
}

/// The buffer holds something that is not a whole fanotify event of the version this build
/// knows.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// The events in `buf`, as `read` filled it.
pub fn parse(buf: &[u8]) -> Result<Vec<Event>, Malformed> {
    // struct fanotify_event_metadata: event_len u32 | vers u8 | reserved u8 |
    // metadata_len u16 | mask u64 | fd i32 | pid i32 (24 bytes), then info records.
    const META: usize = 24;
    let u16_at = |b: &[u8], at: usize| -> Option<u16> { Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?)) };
    let u32_at = |b: &[u8], at: usize| -> Option<u32> { Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?)) };
    let mut events = Vec::new();
    let mut off = 0;
    while off < buf.len() {
        let ev = &buf[off..];
        let event_len = u32_at(ev, 0).ok_or(Malformed)? as usize;
        let vers = *ev.get(4).ok_or(Malformed)?;
        let meta_len = u16_at(ev, 6).ok_or(Malformed)? as usize;
        if vers != libc::FANOTIFY_METADATA_VERSION || meta_len < META || event_len < meta_len || event_len > ev.len() {
            return Err(Malformed);
        }
        let ev = &ev[..event_len];
        let mask = u64::from_ne_bytes(ev[8..16].try_into().map_err(|_| Malformed)?);
        let pid = u32_at(ev, 20).ok_or(Malformed)? as i32;
        let mut dir = None;
        let mut name = None;
        let mut at = meta_len;
        while at < event_len {
            // struct fanotify_event_info_header: info_type u8 | pad u8 | len u16.
            let info_type = ev[at];
            let len = u16_at(ev, at + 2).ok_or(Malformed)? as usize;
            let rec = ev.get(at..at + len).ok_or(Malformed)?;
            if len < 4 {
                return Err(Malformed);
            }
            if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME || info_type == libc::FAN_EVENT_INFO_TYPE_DFID {
                // header (4) | fsid (8) | handle_bytes u32 | handle_type i32 | f_handle | name NUL.
                let fsid = rec.get(4..12).ok_or(Malformed)?;
                let handle_len = u32_at(rec, 12).ok_or(Malformed)? as usize;
                let handle_type = u32_at(rec, 16).ok_or(Malformed)? as i32;
                let handle_end = 20usize.checked_add(handle_len).ok_or(Malformed)?;
                let handle = rec.get(20..handle_end).ok_or(Malformed)?;
                dir = Some(key_of(fsid, handle_type, handle));
                if info_type == libc::FAN_EVENT_INFO_TYPE_DFID_NAME {
                    let rest = &rec[handle_end..];
                    let end = rest.iter().position(|&b| b == 0).ok_or(Malformed)?;
                    let n = &rest[..end];
                    name = (n != b".").then(|| n.to_vec());
                }
            }
            at += len;
        }
        events.push(Event {
            changes: (mask & CHANGE_BITS) as u32,
            overflow: mask & libc::FAN_Q_OVERFLOW != 0,
            pid,
            dir,
            name,
        });
        off += event_len;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One event as the kernel lays it out, with a directory record of `kind`.
    fn event(mask: u64, pid: i32, kind: u8, handle: &[u8], name: Option<&[u8]>) -> Vec<u8> {
        let mut rec = vec![kind, 0, 0, 0];
        rec.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        rec.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        rec.extend_from_slice(&7i32.to_ne_bytes());
        rec.extend_from_slice(handle);
        if let Some(n) = name {
            rec.extend_from_slice(n);
            rec.push(0);
        }
        while rec.len() % 4 != 0 {
            rec.push(0);
        }
        let rec_len = rec.len() as u16;
        rec[2..4].copy_from_slice(&rec_len.to_ne_bytes());
        let mut ev = Vec::new();
        ev.extend_from_slice(&((24 + rec.len()) as u32).to_ne_bytes());
        ev.push(libc::FANOTIFY_METADATA_VERSION);
        ev.push(0);
        ev.extend_from_slice(&24u16.to_ne_bytes());
        ev.extend_from_slice(&mask.to_ne_bytes());
        ev.extend_from_slice(&libc::FAN_NOFD.to_ne_bytes());
        ev.extend_from_slice(&pid.to_ne_bytes());
        ev.extend_from_slice(&rec);
        ev
    }

    #[test]
    fn events_give_their_directory_name_and_process() {
        let mut buf = event(libc::FAN_CREATE | libc::FAN_MODIFY, 0, 2, &[9; 8], Some(b"abc"));
        buf.extend(event(libc::FAN_ATTRIB | libc::FAN_ONDIR, 42, 2, &[9; 8], Some(b".")));
        buf.extend(event(libc::FAN_DELETE_SELF | libc::FAN_ONDIR, 42, 3, &[5; 12], None));
        let evs = parse(&buf).expect("parses");
        let key = key_of(&[1, 2, 3, 4, 5, 6, 7, 8], 7, &[9; 8]);
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].changes, (libc::FAN_CREATE | libc::FAN_MODIFY) as u32);
        assert_eq!(
            evs[0].changes,
            (inotify::EventMask::CREATE | inotify::EventMask::MODIFY).bits()
        );
        assert_eq!(
            (evs[0].pid, evs[0].dir.as_ref(), evs[0].name.as_deref()),
            (0, Some(&key), Some(&b"abc"[..]))
        );
        assert_eq!(
            (evs[1].pid, evs[1].name.as_deref()),
            (42, None),
            "'.' is the directory itself"
        );
        assert_eq!(evs[1].changes, libc::FAN_ATTRIB as u32, "ONDIR is not a change");
        assert_eq!(evs[2].dir, Some(key_of(&[1, 2, 3, 4, 5, 6, 7, 8], 7, &[5; 12])));
        assert!(!evs.iter().any(|e| e.overflow));
    }

    #[test]
    fn an_overflow_is_reported() {
        let mut ev = Vec::new();
        ev.extend_from_slice(&24u32.to_ne_bytes());
        ev.push(libc::FANOTIFY_METADATA_VERSION);
        ev.push(0);
        ev.extend_from_slice(&24u16.to_ne_bytes());
        ev.extend_from_slice(&libc::FAN_Q_OVERFLOW.to_ne_bytes());
        ev.extend_from_slice(&libc::FAN_NOFD.to_ne_bytes());
        ev.extend_from_slice(&0i32.to_ne_bytes());
        let evs = parse(&ev).expect("parses");
        assert!(evs[0].overflow && evs[0].dir.is_none());
    }

    #[test]
    fn every_truncation_and_corruption_is_refused_without_a_panic() {
        let good = event(libc::FAN_CREATE, 0, 2, &[9; 8], Some(b"name"));
        for cut in 1..good.len() {
            assert_eq!(parse(&good[..cut]), Err(Malformed), "cut at {cut}");
        }
        // Every single byte set to every value: parses or is refused, never panics.
        for at in 0..good.len() {
            for v in [0u8, 1, 3, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                let _ = parse(&bad);
            }
        }
        let mut wrong_version = good.clone();
        wrong_version[4] = libc::FANOTIFY_METADATA_VERSION + 1;
        assert_eq!(parse(&wrong_version), Err(Malformed));
    }

    #[test]
    fn a_marked_directorys_key_is_the_one_its_events_carry() {
        let Ok(fan) = Fanotify::init() else { return };
        let d = tempfile::tempdir().expect("tempdir");
        let dir = std::fs::File::open(d.path()).expect("open");
        let key = fan.add(&dir).expect("mark");
        std::fs::write(d.path().join("x"), b"1").expect("write");
        let mut buf = vec![0u8; 4096];
        let n = fan.read(&mut buf).expect("an event is queued");
        let evs = parse(&buf[..n]).expect("parses");
        assert!(!evs.is_empty());
        for e in &evs {
            assert_eq!(e.dir.as_ref(), Some(&key));
            assert_eq!(e.name.as_deref(), Some(&b"x"[..]));
            assert_eq!(e.pid, std::process::id() as i32, "made by this process");
        }
        fan.remove(&dir, &key).expect("unmark");
        std::fs::write(d.path().join("y"), b"1").expect("write");
        let r = fan.read(&mut buf);
        assert!(
            r.as_ref().is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
            "no event after the mark is gone: {r:?}"
        );
    }
}
