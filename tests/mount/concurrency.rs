//! Concurrency: 8 threads with separate handles on one file, writing disjoint and overlapping
//! ranges and appending through O_APPEND; the final contents are checked.

use crate::support::common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::sync::{Arc, Barrier};

use common::TestMount;

const THREADS: usize = 8;

#[test]
fn disjoint_ranges_from_eight_handles() {
    let Some(m) = TestMount::new() else { return };
    let p = m.path("shared");
    fs::write(&p, b"").unwrap();
    // Unaligned stripes so neighbours share plaintext blocks (read-modify-write races).
    let stripe = 3001usize;
    let rounds = 40;
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = p.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let f = OpenOptions::new().write(true).open(&p).unwrap();
                barrier.wait();
                for r in 0..rounds {
                    let off = ((r * THREADS + t) * stripe) as u64;
                    f.write_all_at(&vec![t as u8 + 1; stripe], off).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let data = fs::read(&p).unwrap();
    assert_eq!(data.len(), rounds * THREADS * stripe);
    for (i, chunk) in data.chunks(stripe).enumerate() {
        let want = (i % THREADS) as u8 + 1;
        assert!(chunk.iter().all(|&b| b == want), "stripe {i} corrupted (want {want})");
    }
}

#[test]
fn overlapping_writes_leave_one_writer_per_range() {
    let Some(m) = TestMount::new() else { return };
    let p = m.path("overlap");
    fs::write(&p, vec![0u8; 64 * 1024]).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = p.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
                // Read back through O_DIRECT: one READ answered by the daemon. Through the page
                // cache this read once (in one CI run; not reproduced in 36 runs here,
                // also under CPU load) saw zeros: most likely the kernel's write-through path,
                // which copies the data into an uptodate cached page and unlocks it before the
                // WRITE reaches the daemon, while auto_inval_data (another writer changed mtime)
                // drops the page and reads it again from the daemon in between. The daemon's
                // own answer must never be torn; the final check below reads afresh too.
                let direct = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(&p)
                    .unwrap();
                barrier.wait();
                for r in 0..50u64 {
                    // Every thread writes whole 1000-byte records at the same 50 offsets.
                    let off = r * 1237;
                    f.write_all_at(&vec![t as u8 + 1; 1000], off).unwrap();
                    let mut back = vec![0u8; 1000];
                    direct.read_exact_at(&mut back, off).unwrap();
                    assert!(back.iter().all(|&b| b != 0) || off == 0, "read a torn record");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let data = fs::read(&p).unwrap();
    assert_eq!(data.len(), 64 * 1024);
    // Records (1000 bytes every 1237) never overlap each other, so each must come whole from
    // exactly one writer: a mix means a torn read-modify-write.
    for r in 0..50usize {
        let off = r * 1237;
        let rec = &data[off..off + 1000];
        assert!((1..=THREADS as u8).contains(&rec[0]), "record {r} from no writer");
        assert!(rec.iter().all(|&b| b == rec[0]), "record {r} is a mix of writers");
    }
    assert!(data[61 * 1024..].iter().all(|&b| b == 0));
}

#[test]
fn o_append_from_eight_handles() {
    let Some(m) = TestMount::new() else { return };
    let p = m.path("log");
    fs::write(&p, b"").unwrap();
    let per_thread = 200;
    let barrier = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let p = p.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut f = OpenOptions::new().append(true).open(&p).unwrap();
                barrier.wait();
                for i in 0..per_thread {
                    // One write per record: appends must never interleave or overwrite.
                    let line = format!("thread {t} record {i:04} {}\n", "x".repeat(t * 13));
                    f.write_all(line.as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let text = String::from_utf8(fs::read(&p).unwrap()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), THREADS * per_thread);
    for t in 0..THREADS {
        let mine: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with(&format!("thread {t} ")))
            .collect();
        assert_eq!(mine.len(), per_thread, "thread {t} lost records");
        for (i, l) in mine.iter().enumerate() {
            assert_eq!(
                *l,
                format!("thread {t} record {i:04} {}", "x".repeat(t * 13)),
                "out of order or torn"
            );
        }
    }
}

#[test]
fn readers_and_a_truncating_writer() {
    let Some(m) = TestMount::new() else { return };
    let p = m.path("churn");
    fs::write(&p, vec![5u8; 100_000]).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..THREADS - 1)
        .map(|_| {
            let p = p.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let f = fs::File::open(&p).unwrap();
                let mut buf = vec![0u8; 50_000];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Reads see old bytes, new bytes, zeros (regrown after a truncate) or EOF;
                    // never an error (a half-written block would fail authentication).
                    let n = f.read_at(&mut buf, 1000).unwrap();
                    assert!(buf[..n].iter().all(|&b| b == 0 || b == 5 || b == 6), "read garbage");
                }
            })
        })
        .collect();
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    for i in 0..200u64 {
        f.set_len(50_000 + (i * 997) % 60_000).unwrap();
        f.write_all_at(&vec![6u8; 4096], (i * 3001) % 90_000).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
}
