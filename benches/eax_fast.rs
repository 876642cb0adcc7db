//! Seal/open throughput of 4 KiB content blocks: the eax crate, coffer's EaxFast (one block, a
//! batch on one core, BlockCipher's batch on all cores) and raw AES-256-CTR as the ceiling.
//!
//! `cargo bench --bench eax_fast` (release). MB = 10^6 bytes of plaintext. Open figures include
//! copying the 4 KiB ciphertext into the work buffer first (the vault's read path does the same);
//! the copy alone is printed too.

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

/// Median MB/s of `f`, which processes `bytes` plaintext bytes per call.
fn rate(bytes: usize, mut f: impl FnMut()) -> f64 {
    let t0 = Instant::now();
    let mut calls = 0u64;
    while t0.elapsed() < SAMPLE_TIME / 2 {
        f();
        calls += 1;
    }
    let per_sample = ((calls as f64 * 2.0) as u64).max(1);
    let mut rates: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_sample {
                f();
            }
            (bytes as f64 * per_sample as f64) / t.elapsed().as_secs_f64() / 1e6
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[SAMPLES / 2]
}

fn report(name: &str, mbps: f64) {
    println!("{name:<58} {mbps:>9.0} MB/s");
}

struct Blocks {
    nonces: Vec<[u8; 16]>,
    aads: Vec<[u8; AAD_LEN]>,
    plain: Vec<u8>,
    sealed: Vec<u8>,
    tags: Vec<[u8; 16]>,
}

fn blocks(fast: &EaxFast<Aes256>, n: usize) -> Blocks {
    let nonces: Vec<[u8; 16]> = (0..n).map(|i| [(i * 7 + 1) as u8; 16]).collect();
    let aads: Vec<[u8; AAD_LEN]> = (0..n).map(|i| [(i * 3) as u8; AAD_LEN]).collect();
    let plain: Vec<u8> = (0..n * BLOCK).map(|i| (i * 31 + 5) as u8).collect();
    let mut sealed = plain.clone();
    let tags = sealed
        .chunks_mut(BLOCK)
        .enumerate()
        .map(|(i, b)| fast.seal(&nonces[i], &aads[i], b))
        .collect();
    Blocks {
        nonces,
        aads,
        plain,
        sealed,
        tags,
    }
}

fn seal_jobs<'a>(b: &'a Blocks, buf: &'a mut [u8], tags: &'a mut [[u8; 16]]) -> Vec<SealJob<'a>> {
    buf.chunks_mut(BLOCK)
        .zip(tags.iter_mut())
        .enumerate()
        .map(|(i, (buf, tag))| SealJob {
            nonce: &b.nonces[i],
            aad: &b.aads[i],
            buf,
            tag,
        })
        .collect()
}

fn open_jobs<'a>(b: &'a Blocks, buf: &'a mut [u8]) -> Vec<OpenJob<'a>> {
    buf.chunks_mut(BLOCK)
        .enumerate()
        .map(|(i, buf)| OpenJob {
            nonce: &b.nonces[i],
            aad: &b.aads[i],
            buf,
            tag: &b.tags[i],
        })
        .collect()
}

fn main() {
    let key = [0x42u8; 32];
    let fast = EaxFast::new(Aes256::new(&key.into()));
    let cipher = BlockCipher::new(&key);
    let eax = Eax::<Aes256>::new(&key.into());
    let one = blocks(&fast, 1);
    let nonce = one.nonces[0];
    let aad = one.aads[0];
    let tag = one.tags[0];
    let mut buf = vec![0u8; BLOCK];
    println!(
        "4 KiB blocks, AAD {AAD_LEN} bytes, one core unless noted; aes hardware: {}",
        aes::hardware_accelerated()
    );

    report(
        "memcpy 4 KiB (included in every open figure)",
        rate(BLOCK, || {
            buf.copy_from_slice(black_box(&one.sealed));
            black_box(&mut buf);
        }),
    );
    report(
        "raw AES-256-CTR (ctr crate, key expanded once)",
        rate(BLOCK, || {
            let mut c = ctr::Ctr128BE::<Aes256>::new(&key.into(), &nonce.into());
            c.apply_keystream(black_box(&mut buf));
        }),
    );
    report(
        "eax crate seal",
        rate(BLOCK, || {
            let t = eax.encrypt_inout_detached(&nonce.into(), &aad, black_box(&mut buf[..]).into());
            black_box(t.ok());
        }),
    );
    report(
        "eax crate open",
        rate(BLOCK, || {
            buf.copy_from_slice(black_box(&one.sealed));
            let r = eax.decrypt_inout_detached(&nonce.into(), &aad, (&mut buf[..]).into(), &tag.into());
            assert!(r.is_ok());
        }),
    );
    report(
        "BlockCipher seal (one block)",
        rate(BLOCK, || {
            black_box(cipher.seal(&nonce, &aad, black_box(&mut buf)));
        }),
    );
    report(
        "BlockCipher open (one block)",
        rate(BLOCK, || {
            buf.copy_from_slice(black_box(&one.sealed));
            assert!(cipher.open(&nonce, &aad, &mut buf, &tag).is_ok());
        }),
    );
    report(
        "EaxFast seal (one block)",
        rate(BLOCK, || {
            black_box(fast.seal(&nonce, &aad, black_box(&mut buf)));
        }),
    );
    report(
        "EaxFast open (one block)",
        rate(BLOCK, || {
            buf.copy_from_slice(black_box(&one.sealed));
            assert!(fast.open(&nonce, &aad, &mut buf, &tag).is_ok());
        }),
    );

    for n in [2, 8, 16, 64, 256] {
        let many = blocks(&fast, n);
        let mut big = many.plain.clone();
        let mut tags = vec![[0u8; 16]; n];
        report(
            &format!("EaxFast seal_many, {n} blocks, one core"),
            rate(n * BLOCK, || {
                let mut jobs = seal_jobs(&many, &mut big, &mut tags);
                fast.seal_many(black_box(&mut jobs));
            }),
        );
        report(
            &format!("EaxFast open_many, {n} blocks, one core"),
            rate(n * BLOCK, || {
                big.copy_from_slice(black_box(&many.sealed));
                let mut jobs = open_jobs(&many, &mut big);
                assert!(fast.open_many(black_box(&mut jobs)).iter().all(|r| r.is_ok()));
            }),
        );
    }

    for n in [16, 32, 64, 128, 256] {
        let many = blocks(&fast, n);
        let mut big = many.plain.clone();
        let mut tags = vec![[0u8; 16]; n];
        report(
            &format!("BlockCipher seal_many, {n} blocks (all cores, wall)"),
            rate(n * BLOCK, || {
                let mut jobs = seal_jobs(&many, &mut big, &mut tags);
                cipher.seal_many(black_box(&mut jobs));
            }),
        );
        report(
            &format!("BlockCipher open_many, {n} blocks (all cores, wall)"),
            rate(n * BLOCK, || {
                big.copy_from_slice(black_box(&many.sealed));
                let mut jobs = open_jobs(&many, &mut big);
                assert!(cipher.open_many(black_box(&mut jobs)).iter().all(|r| r.is_ok()));
            }),
        );
    }
}
