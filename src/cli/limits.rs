//! Process limits set at start: the soft descriptor limit raised to the hard one.

/// Raises the soft RLIMIT_NOFILE to the hard limit (a desktop session's soft 1024 against a
/// hard limit of 512k), so a mount or a walk of a large tree does not run out of descriptors
/// for no reason. Where the hard limit is low too, the daemon keeps within it (its directory
/// cache takes under half). Returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: lim is a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: raised is a valid rlimit; lowering nothing.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// The threshold above which glibc serves an allocation by its own mmap, fixed at 4 MiB.
/// glibc raises it by default to the size of the largest block freed so far (up to 32 MiB),
/// and fuser allocates and frees a 16 MiB request buffer per FUSE thread: after the first
/// such free every later buffer comes from an arena instead, where it is zeroed, stays
/// resident and pins the arena's top so nothing below it can be trimmed (measured: 50k files
/// touched and forgotten, daemon RSS after forget 41-46 MiB with the dynamic threshold,
/// 8-9 MiB with a fixed one). MALLOC_MMAP_THRESHOLD_ in the environment takes precedence.
const MMAP_THRESHOLD: libc::c_int = 4 << 20;

/// How much free memory at the top of the heap glibc keeps instead of returning it at once:
/// twice the mmap threshold, as glibc's own dynamic setting would make it. Fixing the mmap
/// threshold also fixes this one, at its default of 128 KiB: then every 1 MiB write buffer
/// freed at the heap top was handed back to the kernel and faulted in again for the next
/// request (measured: streaming writes 0.84x the speed before the mmap threshold was fixed,
/// 1.01x with this). Memory the kernel's forgets free is still returned: `fs::memory` calls
/// `malloc_trim`. MALLOC_TRIM_THRESHOLD_ in the environment takes precedence.
const TRIM_THRESHOLD: libc::c_int = 2 * MMAP_THRESHOLD;

/// At most two malloc arenas (unless MALLOC_ARENA_MAX says otherwise): glibc gives each
/// FUSE thread its own, and memory freed when the kernel forgets inodes stays spread over
/// eight arenas' partly used pages (measured: 50k files touched and forgotten, daemon RSS
/// 6.8 -> 30 -> 18.6 MiB with one arena per thread, 13.5 MiB with two, 10.6 MiB with one).
/// Also fixes the mmap and trim thresholds ([`MMAP_THRESHOLD`], [`TRIM_THRESHOLD`]).
pub fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    {
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
            unsafe {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
        }
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            // SAFETY: as above. Setting the threshold also turns off its dynamic adjustment.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            }
        }
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn soft_limit_reaches_the_hard_limit() {
        let soft = super::raise_nofile();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        assert_eq!(soft, lim.rlim_cur);
    }
}
