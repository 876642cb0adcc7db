//! Proof that coffer's hand-composed EAX (crypto::EaxFast, behind BlockCipher) is bit-identical to
//! the `eax` crate: differential tests over random keys, nonces, AAD and lengths, single vs batch
//! vs two-thread batch, the EAX paper vectors (AES-128) and AES-256 vectors from pycryptodome.

use crate::support::data::Rng;
use crate::support::vectors;

use aes::cipher::KeyInit;
use aes::{Aes128, Aes256};
use coffer::crypto::{BlockCipher, CryptoError, EaxFast, OpenJob, SealJob};
use eax::aead::AeadInOut;
use eax::Eax;
use sha2::{Digest, Sha256};
use vectors::{hex, pat, EAX_PAPER};

/// Lengths that cross every CMAC / CTR boundary the code treats specially.
const EDGE_LENS: &[usize] = &[
    0, 1, 2, 15, 16, 17, 31, 32, 33, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097, 8191, 8192, 9000,
];

fn reference_seal(key: &[u8; 32], nonce: &[u8; 16], aad: &[u8], msg: &[u8]) -> (Vec<u8>, [u8; 16]) {
    let mut buf = msg.to_vec();
    let tag = Eax::<Aes256>::new(key.into())
        .encrypt_inout_detached(nonce.into(), aad, (&mut buf[..]).into())
        .unwrap();
    (buf, tag.into())
}

fn reference_open(key: &[u8; 32], nonce: &[u8; 16], aad: &[u8], ct: &[u8], tag: &[u8; 16]) -> Option<Vec<u8>> {
    let mut buf = ct.to_vec();
    Eax::<Aes256>::new(key.into())
        .decrypt_inout_detached(nonce.into(), aad, (&mut buf[..]).into(), tag.into())
        .ok()
        .map(|()| buf)
}

/// One random case: seal/open agree with the eax crate both ways, and any single-bit change to
/// nonce, AAD, ciphertext or tag is rejected, leaving the ciphertext in place.
fn check_one(rng: &mut Rng, len: usize) {
    let key: [u8; 32] = rng.arr();
    let nonce: [u8; 16] = rng.arr();
    let aad_len = rng.index(65);
    let aad = rng.bytes(aad_len);
    let msg = rng.bytes(len);
    let ctx = format!("len {len} aad {aad_len}");

    let (want_ct, want_tag) = reference_seal(&key, &nonce, &aad, &msg);
    let fast = EaxFast::new(Aes256::new(&key.into()));
    let cipher = BlockCipher::new(&key);
    let mut buf = msg.clone();
    let tag = fast.seal(&nonce, &aad, &mut buf);
    assert_eq!(buf, want_ct, "{ctx}");
    assert_eq!(tag, want_tag, "{ctx}");
    let mut buf2 = msg.clone();
    assert_eq!(cipher.seal(&nonce, &aad, &mut buf2), want_tag, "{ctx}");
    assert_eq!(buf2, want_ct, "{ctx}");

    assert_eq!(
        reference_open(&key, &nonce, &aad, &buf, &tag).as_deref(),
        Some(&msg[..])
    );
    fast.open(&nonce, &aad, &mut buf, &tag).unwrap();
    assert_eq!(buf, msg, "{ctx}");

    // Tamper with one bit somewhere.
    let (mut n2, mut a2, mut c2, mut t2) = (nonce, aad.clone(), want_ct.clone(), want_tag);
    let total = 16 + aad.len() + c2.len() + 16;
    let pos = rng.index(total);
    let bit = 1u8 << rng.index(8);
    match pos {
        p if p < 16 => n2[p] ^= bit,
        p if p < 16 + a2.len() => a2[p - 16] ^= bit,
        p if p < 16 + a2.len() + c2.len() => c2[p - 16 - a2.len()] ^= bit,
        p => t2[p - 16 - a2.len() - c2.len()] ^= bit,
    }
    assert!(reference_open(&key, &n2, &a2, &c2, &t2).is_none(), "{ctx}");
    let before = c2.clone();
    assert_eq!(
        fast.open(&n2, &a2, &mut c2, &t2),
        Err(CryptoError::Auth),
        "{ctx} pos {pos}"
    );
    assert_eq!(c2, before, "{ctx}: failed open must leave the ciphertext");
    assert_eq!(cipher.open(&n2, &a2, &mut c2, &t2), Err(CryptoError::Auth), "{ctx}");
}

#[test]
fn single_matches_eax_crate_on_edge_lengths() {
    let mut rng = Rng::new(1);
    for &len in EDGE_LENS {
        for _ in 0..8 {
            check_one(&mut rng, len);
        }
    }
}

#[test]
fn single_matches_eax_crate_on_random_lengths() {
    let mut rng = Rng::new(2);
    for _ in 0..600 {
        let len = rng.index(9001);
        check_one(&mut rng, len);
    }
}

#[test]
fn every_aad_length_0_to_64() {
    let mut rng = Rng::new(3);
    let key: [u8; 32] = rng.arr();
    let fast = EaxFast::new(Aes256::new(&key.into()));
    for aad_len in 0..=64 {
        for len in [0, 5, 16, 100] {
            let nonce: [u8; 16] = rng.arr();
            let aad = rng.bytes(aad_len);
            let msg = rng.bytes(len);
            let (ct, tag) = reference_seal(&key, &nonce, &aad, &msg);
            let mut buf = msg.clone();
            assert_eq!(fast.seal(&nonce, &aad, &mut buf), tag, "aad {aad_len} len {len}");
            assert_eq!(buf, ct);
        }
    }
}

struct Item {
    nonce: [u8; 16],
    aad: Vec<u8>,
    msg: Vec<u8>,
}

fn items(rng: &mut Rng, n: usize, len: impl Fn(&mut Rng, usize) -> usize) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let l = len(rng, i);
            let aad_len = rng.index(65);
            Item {
                nonce: rng.arr(),
                aad: rng.bytes(aad_len),
                msg: rng.bytes(l),
            }
        })
        .collect()
}

/// seal_many / open_many (EaxFast, BlockCipher, BlockCipher's two-thread variants) equal the
/// eax crate per item; tampered items fail alone and keep their ciphertext.
fn check_batch(rng: &mut Rng, items: &[Item]) {
    let key: [u8; 32] = rng.arr();
    let fast = EaxFast::new(Aes256::new(&key.into()));
    let cipher = BlockCipher::new(&key);
    let want: Vec<(Vec<u8>, [u8; 16])> = items
        .iter()
        .map(|it| reference_seal(&key, &it.nonce, &it.aad, &it.msg))
        .collect();
    let ctx = format!("batch of {}", items.len());

    for way in 0..3 {
        let mut bufs: Vec<Vec<u8>> = items.iter().map(|it| it.msg.clone()).collect();
        let mut tags = vec![[0u8; 16]; items.len()];
        let mut jobs: Vec<SealJob> = items
            .iter()
            .zip(bufs.iter_mut().zip(tags.iter_mut()))
            .map(|(it, (buf, tag))| SealJob {
                nonce: &it.nonce,
                aad: &it.aad,
                buf,
                tag,
            })
            .collect();
        match way {
            0 => fast.seal_many(&mut jobs),
            1 => cipher.seal_many(&mut jobs),
            _ => cipher.seal_many_on_two_threads(&mut jobs),
        }
        drop(jobs);
        for (i, (w, (b, t))) in want.iter().zip(bufs.iter().zip(&tags)).enumerate() {
            assert_eq!(&w.0, b, "{ctx} item {i} ciphertext (way {way})");
            assert_eq!(&w.1, t, "{ctx} item {i} tag (way {way})");
        }

        // Open, with every third item's tag broken.
        let bad: Vec<bool> = (0..items.len()).map(|i| i % 3 == 1).collect();
        let open_tags: Vec<[u8; 16]> = tags
            .iter()
            .zip(&bad)
            .map(|(t, &b)| {
                let mut t = *t;
                if b {
                    t[rng.index(16)] ^= 1 << rng.index(8);
                }
                t
            })
            .collect();
        let mut jobs: Vec<OpenJob> = items
            .iter()
            .zip(bufs.iter_mut().zip(&open_tags))
            .map(|(it, (buf, tag))| OpenJob {
                nonce: &it.nonce,
                aad: &it.aad,
                buf,
                tag,
            })
            .collect();
        let results = match way {
            0 => fast.open_many(&mut jobs),
            1 => cipher.open_many(&mut jobs),
            _ => cipher.open_many_on_two_threads(&mut jobs),
        };
        drop(jobs);
        assert_eq!(results.len(), items.len());
        for (i, r) in results.iter().enumerate() {
            if bad[i] {
                assert_eq!(r, &Err(CryptoError::Auth), "{ctx} item {i}");
                assert_eq!(bufs[i], want[i].0, "{ctx} item {i}: failed open keeps ciphertext");
            } else {
                assert_eq!(r, &Ok(()), "{ctx} item {i}");
                assert_eq!(bufs[i], items[i].msg, "{ctx} item {i}");
            }
        }
    }
}

#[test]
fn batch_of_equal_blocks_matches_single() {
    let mut rng = Rng::new(4);
    for n in [1, 2, 3, 7, 8, 9, 16, 29, 30, 31, 63, 64, 65, 127, 128, 256, 257] {
        let its = items(&mut rng, n, |_, _| 4096);
        check_batch(&mut rng, &its);
    }
}

#[test]
fn batch_with_short_last_block_matches_single() {
    let mut rng = Rng::new(5);
    for n in [2, 8, 64, 65, 130, 256] {
        let its = items(&mut rng, n, |r, i| if i + 1 == n { 1 + r.index(4096) } else { 4096 });
        check_batch(&mut rng, &its);
    }
}

#[test]
fn batch_of_mixed_lengths_matches_single() {
    let mut rng = Rng::new(6);
    for n in [2, 5, 8, 13, 64, 100, 200] {
        let its = items(&mut rng, n, |r, _| {
            let k = r.index(EDGE_LENS.len() + 1);
            EDGE_LENS.get(k).copied().unwrap_or_else(|| r.index(9001))
        });
        check_batch(&mut rng, &its);
    }
    // Empty messages only, and one long among short ones.
    let its = items(&mut rng, 70, |_, _| 0);
    check_batch(&mut rng, &its);
    let its = items(&mut rng, 70, |_, i| if i == 33 { 9000 } else { 3 });
    check_batch(&mut rng, &its);
}

#[test]
fn empty_batch_is_a_no_op() {
    let c = BlockCipher::new(&[1; 32]);
    c.seal_many(&mut []);
    assert!(c.open_many(&mut []).is_empty());
    c.seal_many_on_two_threads(&mut []);
    assert!(c.open_many_on_two_threads(&mut []).is_empty());
}

#[test]
fn eax_paper_vectors_aes128_single_and_batch() {
    for (i, (msg, key, nonce, header, expect)) in EAX_PAPER.iter().enumerate() {
        let key: [u8; 16] = hex(key).try_into().unwrap();
        let fast = EaxFast::new(Aes128::new(&key.into()));
        let nonce: [u8; 16] = hex(nonce).try_into().unwrap();
        let (msg, aad, expect) = (hex(msg), hex(header), hex(expect));
        let mut buf = msg.clone();
        let tag = fast.seal(&nonce, &aad, &mut buf);
        buf.extend_from_slice(&tag);
        assert_eq!(buf, expect, "vector {i}");

        // The same vector as every lane of a batch (scalar lanes and the parallel-width path).
        for n in [2, 8, 64, 65] {
            let mut bufs = vec![msg.clone(); n];
            let mut tags = vec![[0u8; 16]; n];
            let mut jobs: Vec<SealJob> = bufs
                .iter_mut()
                .zip(tags.iter_mut())
                .map(|(buf, tag)| SealJob {
                    nonce: &nonce,
                    aad: &aad,
                    buf,
                    tag,
                })
                .collect();
            fast.seal_many(&mut jobs);
            drop(jobs);
            for (b, t) in bufs.iter().zip(&tags) {
                assert_eq!([&b[..], &t[..]].concat(), expect, "vector {i} batch {n}");
            }
        }
        let mut ct = expect[..msg.len()].to_vec();
        let tag: [u8; 16] = expect[msg.len()..].try_into().unwrap();
        fast.open(&nonce, &aad, &mut ct, &tag).unwrap();
        assert_eq!(ct, msg, "vector {i}");
    }
}

/// AES-256-EAX from pycryptodome 4.x (AES.new(key, AES.MODE_EAX, nonce=n, mac_len=16)):
/// (seed, aad len, msg len, SHA-256 of cipher||tag, tag). Key = pat(32, s*3+1),
/// nonce = pat(16, s*5+2), aad = pat(hlen, s*7+3), msg = pat(mlen, s*11+5).
const PYCRYPTODOME_256: &[(usize, usize, usize, &str, &str)] = &[
    (
        5,
        0,
        0,
        "b8817a0f7b3b223cd695a94f31d16d9180140e17cdcf90c582ce62d9aee4cec4",
        "9f66bf50bc504e854186d39dce0aaf66",
    ),
    (
        6,
        27,
        1,
        "5f15e845a7efa105092d1df9bd9d586bd07b6ce15139bc684665bc36ee980ea1",
        "d61dfe5c0e36bde28e72984d7b4a6589",
    ),
    (
        7,
        27,
        15,
        "3d5793eda781c772e84d5867794d03b2cf5138f3839255cd2ed8941ebbee3066",
        "2c4671e464721cf02bb06d994f244a59",
    ),
    (
        8,
        27,
        16,
        "df6edf1676d8ed24f52af95a00986f0df90e7867dbb632e87102262e3f1c77c3",
        "505c20b8e445cf04cc278d0ad44cc824",
    ),
    (
        9,
        27,
        17,
        "60ba635cdc2fbf8cae903435be339d2fb1b72ff3c1db557bfb9ee2be1b8aeeec",
        "fbe1fbeffd696a376cd0df97468f9721",
    ),
    (
        10,
        64,
        4095,
        "6cbb3e62a4c3ddd92ea7a8dc21bda55555545fbba86ba42cb1c1119cd622fbe5",
        "af65748e54fdde529b44023c51a64eed",
    ),
    (
        11,
        27,
        4096,
        "cfbd5d9adfaa0e5da8488a6fb35520433314234692ed3767dc4a3bc04ac82f96",
        "061b2d0699abe5a8295e86f675761452",
    ),
    (
        12,
        1,
        4097,
        "d247c203abb2df560f9650d8b24d047e231ff6ce887e0c1e741481d897f45746",
        "d53ebd63182625dec23e8b0ba1ee1f0d",
    ),
    (
        13,
        63,
        9000,
        "2fa6322df8990ee71f84038717560f7bd2127c81e3e1c57afb5f873ece468719",
        "40297afff6d91a30b6d240b0e74fc11e",
    ),
    (
        14,
        16,
        255,
        "2e17f9048f8ccc50030fcab12e403398380d1e4e7c56c0b825a8e0fa981c0c9e",
        "41a29a948b6d7f6b26de19eb23c168f7",
    ),
];

#[test]
fn aes256_vectors_from_pycryptodome() {
    for &(s, hlen, mlen, digest, tag_hex) in PYCRYPTODOME_256 {
        let key: [u8; 32] = pat(32, s * 3 + 1).try_into().unwrap();
        let nonce: [u8; 16] = pat(16, s * 5 + 2).try_into().unwrap();
        let aad = pat(hlen, s * 7 + 3);
        let msg = pat(mlen, s * 11 + 5);
        let c = BlockCipher::new(&key);
        let mut buf = msg.clone();
        let tag = c.seal(&nonce, &aad, &mut buf);
        assert_eq!(tag.to_vec(), hex(tag_hex), "seed {s}");
        buf.extend_from_slice(&tag);
        let got: String = Sha256::digest(&buf).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, digest, "seed {s}");
    }
}
