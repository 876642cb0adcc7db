//! Seal/open throughput of 4 KiB content blocks: the eax crate, coffer's EaxFast (one block, a
//! batch on one core, BlockCipher's batch on all cores) and raw AES-256-CTR as the ceiling.
//!
//! `cargo bench --bench eax_fast` (release). MB = 10^6 bytes of plaintext. Open figures include
//! copying the 4 KiB ciphertext into the work buffer first (the vault's read path does the same);
//! the copy alone is printed too. "Per core" = MB per CPU-second (thread CPU time; the machine is
//! shared, so wall time would measure the neighbours); two-thread rows also give wall MB/s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::cipher::{KeyInit, KeyIvInit, StreamCipher};
use aes::Aes256;
use coffer::crypto::{BlockCipher, EaxFast, OpenJob, SealJob};
use eax::aead::AeadInOut;
use eax::Eax;

const BLOCK: usize = 4096;
const AAD_LEN: usize = 27;
const SAMPLES: usize = 7;
const SAMPLE_TIME: Duration = Duration::from_millis(150);

/// Seconds of CPU time used so far by this thread (`thread`) or by the whole process. The
/// machine is shared, so per-core figures use CPU time, not wall time.
fn cpu_secs(thread: bool) -> f64 {
    let clock = if thread {
        libc::CLOCK_THREAD_CPUTIME_ID
    } else {
        libc::CLOCK_PROCESS_CPUTIME_ID
    };
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec we pass.
    let r = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(r, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Median MB/s of `f`, which processes `bytes` plaintext bytes per call: per CPU-second of this
/// thread, per CPU-second of the process (all threads), and per wall-clock second.
fn rates(bytes: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let t0 = Instant::now();
    let mut calls = 0u64;
    while t0.elapsed() < SAMPLE_TIME / 2 {
        f();
        calls += 1;
    }
    let per_sample = ((calls as f64 * 2.0) as u64).max(1);
    let mut samples: Vec<(f64, f64, f64)> = (0..SAMPLES)
        .map(|_| {
            let (th, pr, wall) = (cpu_secs(true), cpu_secs(false), Instant::now());
            for _ in 0..per_sample {
                f();
            }
            let mb = bytes as f64 * per_sample as f64 / 1e6;
            (
                mb / (cpu_secs(true) - th),
                mb / (cpu_secs(false) - pr),
                mb / wall.elapsed().as_secs_f64(),
            )
        })
        .collect();
    let median = |k: fn(&(f64, f64, f64)) -> f64, v: &mut Vec<(f64, f64, f64)>| {
        v.sort_by(|a, b| k(a).total_cmp(&k(b)));
        k(&v[SAMPLES / 2])
    };
    (
        median(|s| s.0, &mut samples),
        median(|s| s.1, &mut samples),
        median(|s| s.2, &mut samples),
    )
}

/// Only cases whose name contains the first non-flag argument run (`cargo bench --bench eax_fast -- open`).
fn wanted(name: &str) -> bool {
    match std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        Some(filter) => name.contains(&filter),
        None => true,
    }
}

/// Measures and prints one single-thread case: MB per CPU-second of this thread.
fn case(name: &str, bytes: usize, f: impl FnMut()) {
    if wanted(name) {
        println!("{name:<58} {:>9.0} MB/s per core", rates(bytes, f).0);
    }
}

/// Measures and prints one multi-thread case: MB per process CPU-second, and per wall second.
fn case_mt(name: &str, bytes: usize, f: impl FnMut()) {
    if wanted(name) {
        let (_, per_cpu, wall) = rates(bytes, f);
        println!("{name:<58} {per_cpu:>9.0} MB/s per core {wall:>9.0} MB/s wall");
    }
}

/// `n` blocks of 4096 bytes laid out every `stride` bytes (4096 as in the vault's read buffer,
/// 4128 = nonce | ct | tag as in its write buffer).
struct Blocks {
    stride: usize,
    nonces: Vec<[u8; 16]>,
    aads: Vec<[u8; AAD_LEN]>,
    plain: Vec<u8>,
    sealed: Vec<u8>,
    tags: Vec<[u8; 16]>,
}

fn blocks(fast: &EaxFast<Aes256>, n: usize, stride: usize) -> Blocks {
    let nonces: Vec<[u8; 16]> = (0..n).map(|i| [(i * 7 + 1) as u8; 16]).collect();
    let aads: Vec<[u8; AAD_LEN]> = (0..n).map(|i| [(i * 3) as u8; AAD_LEN]).collect();
    let plain: Vec<u8> = (0..n * stride).map(|i| (i * 31 + 5) as u8).collect();
    let mut sealed = plain.clone();
    let tags = sealed
        .chunks_mut(stride)
        .enumerate()
        .map(|(i, b)| fast.seal(&nonces[i], &aads[i], &mut b[..BLOCK]))
        .collect();
    Blocks {
        stride,
        nonces,
        aads,
        plain,
        sealed,
        tags,
    }
}

fn seal_jobs<'a>(b: &'a Blocks, buf: &'a mut [u8], tags: &'a mut [[u8; 16]]) -> Vec<SealJob<'a>> {
    buf.chunks_mut(b.stride)
        .zip(tags.iter_mut())
        .enumerate()
        .map(|(i, (buf, tag))| SealJob {
            nonce: &b.nonces[i],
            aad: &b.aads[i],
            buf: &mut buf[..BLOCK],
            tag,
        })
        .collect()
}

fn open_jobs<'a>(b: &'a Blocks, buf: &'a mut [u8]) -> Vec<OpenJob<'a>> {
    buf.chunks_mut(b.stride)
        .enumerate()
        .map(|(i, buf)| OpenJob {
            nonce: &b.nonces[i],
            aad: &b.aads[i],
            buf: &mut buf[..BLOCK],
            tag: &b.tags[i],
        })
        .collect()
}

fn main() {
    let key = [0x42u8; 32];
    let fast = EaxFast::new(Aes256::new(&key.into()));
    let cipher = BlockCipher::new(&key);
    let eax = Eax::<Aes256>::new(&key.into());
    let one = blocks(&fast, 1, BLOCK);
    let nonce = one.nonces[0];
    let aad = one.aads[0];
    let tag = one.tags[0];
    let mut buf = vec![0u8; BLOCK];
    println!(
        "4 KiB blocks, AAD {AAD_LEN} bytes, one core unless noted; aes hardware: {}",
        aes::hardware_accelerated()
    );

    case("memcpy 4 KiB (included in every open figure)", BLOCK, || {
        buf.copy_from_slice(black_box(&one.sealed[..BLOCK]));
        black_box(&mut buf);
    });
    case("raw AES-256-CTR (ctr crate, key expanded once)", BLOCK, || {
        let mut c = ctr::Ctr128BE::<Aes256>::new(&key.into(), &nonce.into());
        c.apply_keystream(black_box(&mut buf));
    });
    case("eax crate seal", BLOCK, || {
        let t = eax.encrypt_inout_detached(&nonce.into(), &aad, black_box(&mut buf[..]).into());
        black_box(t.ok());
    });
    case("eax crate open", BLOCK, || {
        buf.copy_from_slice(black_box(&one.sealed[..BLOCK]));
        let r = eax.decrypt_inout_detached(&nonce.into(), &aad, (&mut buf[..]).into(), &tag.into());
        assert!(r.is_ok());
    });
    case("BlockCipher seal (one block)", BLOCK, || {
        black_box(cipher.seal(&nonce, &aad, black_box(&mut buf)));
    });
    case("BlockCipher open (one block)", BLOCK, || {
        buf.copy_from_slice(black_box(&one.sealed[..BLOCK]));
        assert!(cipher.open(&nonce, &aad, &mut buf, &tag).is_ok());
    });
    case("EaxFast seal (one block)", BLOCK, || {
        black_box(fast.seal(&nonce, &aad, black_box(&mut buf)));
    });
    case("EaxFast open (one block)", BLOCK, || {
        buf.copy_from_slice(black_box(&one.sealed[..BLOCK]));
        assert!(fast.open(&nonce, &aad, &mut buf, &tag).is_ok());
    });

    for (n, stride) in [
        (2, 4096),
        (8, 4096),
        (16, 4096),
        (63, 4096),
        (64, 4096),
        (64, 4128),
        (256, 4096),
        (256, 4128),
    ] {
        let many = blocks(&fast, n, stride);
        let mut big = many.plain.clone();
        let mut tags = vec![[0u8; 16]; n];
        case(
            &format!("EaxFast seal_many, {n} blocks every {stride} B, one core"),
            n * BLOCK,
            || {
                let mut jobs = seal_jobs(&many, &mut big, &mut tags);
                fast.seal_many(black_box(&mut jobs));
            },
        );
        case(
            &format!("EaxFast open_many, {n} blocks every {stride} B, one core"),
            n * BLOCK,
            || {
                big.copy_from_slice(black_box(&many.sealed));
                let mut jobs = open_jobs(&many, &mut big);
                assert!(fast.open_many(black_box(&mut jobs)).iter().all(|r| r.is_ok()));
            },
        );
    }

    for n in [16, 32, 64, 128, 256] {
        let many = blocks(&fast, n, BLOCK);
        let mut big = many.plain.clone();
        let mut tags = vec![[0u8; 16]; n];
        case_mt(
            &format!("EaxFast seal_many, {n} blocks (one thread, for wall)"),
            n * BLOCK,
            || {
                let mut jobs = seal_jobs(&many, &mut big, &mut tags);
                fast.seal_many(black_box(&mut jobs));
            },
        );
        case_mt(
            &format!("BlockCipher seal_many_on_two_threads, {n} blocks"),
            n * BLOCK,
            || {
                let mut jobs = seal_jobs(&many, &mut big, &mut tags);
                cipher.seal_many_on_two_threads(black_box(&mut jobs));
            },
        );
        case_mt(
            &format!("EaxFast open_many, {n} blocks (one thread, for wall)"),
            n * BLOCK,
            || {
                big.copy_from_slice(black_box(&many.sealed));
                let mut jobs = open_jobs(&many, &mut big);
                assert!(fast.open_many(black_box(&mut jobs)).iter().all(|r| r.is_ok()));
            },
        );
        case_mt(
            &format!("BlockCipher open_many_on_two_threads, {n} blocks"),
            n * BLOCK,
            || {
                big.copy_from_slice(black_box(&many.sealed));
                let mut jobs = open_jobs(&many, &mut big);
                assert!(cipher
                    .open_many_on_two_threads(black_box(&mut jobs))
                    .iter()
                    .all(|r| r.is_ok()));
            },
        );
    }
}
