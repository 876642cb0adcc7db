//! Block seal/open throughput of coffer's BlockCipher (AES-256-EAX) beside raw AES-256-CTR on
//! the same 4 KiB buffer. `cargo bench --bench crypto` (harness = false; prints MB/s).

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes::Aes256;
use coffer::crypto::BlockCipher;
use coffer::format::offsets::{block_aad, BlockNo};
use ctr::cipher::{KeyIvInit, StreamCipher};

const BLOCK: usize = 4096;
const RUN: Duration = Duration::from_millis(1500);

/// Runs `f` repeatedly for about RUN and returns MB/s (10^6 bytes per second) of BLOCK bytes.
fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..200 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    (n * BLOCK as u64) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn main() {
    let key = [0x42u8; 32];
    let nonce = [0x24u8; 16];
    let aad = block_aad(2, &[0x11; 16], BlockNo(7), false);
    let plain: Vec<u8> = (0..BLOCK).map(|i| i as u8).collect();
    let cipher = BlockCipher::new(&key);
    let mut buf = plain.clone();

    let seal = measure(|| {
        black_box(cipher.seal(&nonce, &aad, black_box(&mut buf)));
    });

    let mut sealed = plain.clone();
    let tag = cipher.seal(&nonce, &aad, &mut sealed);
    let open = measure(|| {
        buf.copy_from_slice(&sealed);
        black_box(cipher.open(&nonce, &aad, black_box(&mut buf), &tag)).expect("authentic");
    });

    let ctr = measure(|| {
        let mut c = ctr::Ctr128BE::<Aes256>::new((&key).into(), (&nonce).into());
        c.apply_keystream(black_box(&mut buf));
    });

    let copy = measure(|| {
        buf.copy_from_slice(black_box(&sealed));
    });

    println!(
        "coffer crypto bench: 4 KiB blocks, one key, {} ms per row",
        RUN.as_millis()
    );
    println!("{:<34} {:>10}", "operation", "MB/s");
    println!("{:<34} {:>10.0}", "BlockCipher seal (AES-256-EAX)", seal);
    println!("{:<34} {:>10.0}", "BlockCipher open (AES-256-EAX)", open);
    println!("{:<34} {:>10.0}", "raw AES-256-CTR (ctr crate)", ctr);
    println!("{:<34} {:>10.0}", "memcpy 4 KiB (open's copy-in)", copy);
    println!("EAX seal costs {:.2}x raw CTR (EAX = CTR + OMAC/CMAC pass)", ctr / seal);
}
