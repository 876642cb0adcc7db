//! Known-answer tests: EAX (paper vectors, AES-256 from pycryptodome), AES-SIV (RFC 5297,
//! AES-256-SIV from pycryptodome), and one coffer block and one coffer name pinned end to end.
//!
//! Vectors marked "pycryptodome" were computed once with pycryptodome 4.x, independently of the
//! Rust crates; the pattern generator `pat` is the same in the Python script:
//! `bytes(((i*seed + 7) ^ (i >> 8)) & 0xff for i in range(n))`.

use crate::support::vectors;

use std::os::unix::fs::FileExt;
use std::sync::Arc;

use aes::Aes128;
use aes_siv::siv::Aes128Siv;
use coffer::crypto::{BlockCipher, ContentKey, CryptoError, KeySet, MasterKey, NameCipher};
use coffer::format::epochs::{EpochId, Layout};
use coffer::format::header::{FileHeader, FILE_V1, FILE_V2, FILE_V3};
use coffer::format::names;
use coffer::format::offsets::{block_aad, BlockNo};
use coffer::vault::{CryptFile, EpochKeys, VaultKeys};
use eax::aead::{Aead, KeyInit, Payload};
use eax::Eax;
use sha2::{Digest, Sha256};
use vectors::{hex, pat, to_hex, EAX_PAPER};

fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
    v.try_into().unwrap()
}

#[test]
fn eax_aes128_paper_vectors() {
    for (i, (msg, key, nonce, header, expect)) in EAX_PAPER.iter().enumerate() {
        let c = Eax::<Aes128>::new_from_slice(&hex(key)).unwrap();
        let nonce: [u8; 16] = arr(&hex(nonce));
        let (msg, aad, expect) = (hex(msg), hex(header), hex(expect));
        let out = c.encrypt((&nonce).into(), Payload { msg: &msg, aad: &aad }).unwrap();
        assert_eq!(to_hex(&out), to_hex(&expect), "vector {i}");
        let back = c.decrypt((&nonce).into(), Payload { msg: &out, aad: &aad }).unwrap();
        assert_eq!(back, msg, "vector {i}");
        let mut bad = out.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(
            c.decrypt((&nonce).into(), Payload { msg: &bad, aad: &aad }).is_err(),
            "vector {i}"
        );
    }
}

/// AES-256-EAX, pycryptodome: (key seed, header len, seed, msg len, expected cipher||tag).
/// Key = pat(32, s*3+1), nonce = pat(16, s*5+2), header = pat(hlen, s*7+3), msg = pat(mlen, s*11+5).
const EAX256: &[(usize, usize, usize, &str)] = &[
    (1, 0, 0, "5a88fffd399b6f7d7489d51a53c8a108"),
    (2, 8, 1, "e7a61e23644a85a236b9b804749dca9eec"),
    (
        3,
        27,
        16,
        "858daccd6e36f4eec1cc2554fb71fab2c153d876c59268ff4e5c351795bb22c3",
    ),
    (
        4,
        27,
        33,
        "d7fe19e1e613b92d798190d100899fd99b8be0c3b5e09f86b839e381e979fbf5f5d52bf2b1be5ac79440cf7f49cdac251c",
    ),
];

#[test]
fn eax_aes256_block_cipher_matches_pycryptodome() {
    for &(s, hlen, mlen, expect) in EAX256 {
        let c = BlockCipher::new(&arr(&pat(32, s * 3 + 1)));
        let nonce: [u8; 16] = arr(&pat(16, s * 5 + 2));
        let aad = pat(hlen, s * 7 + 3);
        let msg = pat(mlen, s * 11 + 5);
        let sealed = c.seal_with_nonce_to_vec(&nonce, &aad, &msg);
        assert_eq!(&sealed[..16], &nonce[..]);
        assert_eq!(to_hex(&sealed[16..]), expect, "seed {s}");
        assert_eq!(c.open_from_slice(&aad, &sealed).unwrap(), msg);
    }
    // One full 4096-byte block: key pat(32,16), nonce pat(16,27), msg pat(4096,60), no AAD;
    // SHA-256 of cipher||tag from pycryptodome.
    let c = BlockCipher::new(&arr(&pat(32, 16)));
    let mut buf = pat(4096, 60);
    let tag = c.seal(&arr(&pat(16, 27)), b"", &mut buf);
    buf.extend_from_slice(&tag);
    assert_eq!(
        to_hex(&Sha256::digest(&buf)),
        "8e98881f21a32186047fb36d96a85e95209c9771fac4331b5b45c0334a975ae1"
    );
}

#[test]
fn siv_aes128_rfc5297_a1() {
    let key = hex("fffefdfc fbfaf9f8 f7f6f5f4 f3f2f1f0 f0f1f2f3 f4f5f6f7 f8f9fafb fcfdfeff");
    let ad = hex("10111213 14151617 18191a1b 1c1d1e1f 20212223 24252627");
    let plain = hex("11223344 55667788 99aabbcc ddee");
    let expect = hex("85632d07 c6e8f37f 950acd32 0a2ecc93 40c02b96 90c4dc04 daef7f6a fe5c");
    let mut siv = Aes128Siv::new_from_slice(&key).unwrap();
    assert_eq!(siv.encrypt([&ad], &plain).unwrap(), expect);
    assert_eq!(siv.decrypt([&ad], &expect).unwrap(), plain);
    let mut bad = expect.clone();
    bad[20] ^= 0x80;
    assert!(siv.decrypt([&ad], &bad).is_err());
}

/// AES-256-SIV (64-byte key), pycryptodome AES.MODE_SIV: (seed, ad len, msg len, tag||ct).
/// Key = pat(64, s*13+1), ad = pat(adlen, s*17+2), msg = pat(mlen, s*19+3).
const SIV256: &[(usize, usize, usize, &str)] = &[
    (1, 0, 0, "513f9a23f246d805c09baeb75bb092df"),
    (2, 16, 1, "541c3bb5e879e274f3c1412290ece94ac3"),
    (3, 16, 9, "58ce8ee36b4de1005aa19ea5835b6af907462dfaaf816b6bdf"),
    (
        4,
        20,
        16,
        "7d15be6a484d87c74ff85df574198834daf92b9b40b1f08e6718a8e6fb2c8ebd",
    ),
    (
        5,
        16,
        255,
        concat!(
            "e1a7afd566fd31d6813c4b35b0dd31e2fde5d505e712fb9cf1541c21fb7cdb18f5359fafd38e694882aafb0f59ecde77",
            "2cb6d372032922078dc4677a59568206b96b83ca9c54b111baf34a0c9a4f340e3dcbf30102cbc11a87721a8aecbeb709",
            "85044bc5325d815733925a09d480dd6d100dc65452fe3d8760e9be66223822fc9ae56581eee38afeedadb465126492a5",
            "9d20c2b866a85060be3d74c8dca064ea6952254bf3f4979e81d9d16de1c205e836e1d12b207f309cb9f44ce9eeda4719",
            "b6c76bdb9dbc65dd177784ed53567a4d8357e9b5b0f700556da401da04270f5066ecfb08dac34fc37c3581b1b03b90e3",
            "c675fc4d2913a32f0655c54fe7a0f6afe4c3de024c9684ce79f40822dfaabf"
        ),
    ),
];

#[test]
fn siv_aes256_name_cipher_matches_pycryptodome() {
    for &(s, adlen, mlen, expect) in SIV256 {
        let c = NameCipher::new(&arr(&pat(64, s * 13 + 1)));
        let ad = pat(adlen, s * 17 + 2);
        let msg = pat(mlen, s * 19 + 3);
        let out = c.encrypt(&ad, &msg);
        assert_eq!(to_hex(&out), expect, "seed {s}");
        assert_eq!(c.decrypt(&ad, &out).unwrap(), msg);
        assert_eq!(c.decrypt(b"other ad", &out), Err(CryptoError::Auth));
    }
}

/// Master key 00 01 .. 1f; the HKDF content subkey, cross-checked with pycryptodome's HKDF.
fn pinned_master() -> MasterKey {
    MasterKey::from_bytes(arr(&(0u8..32).collect::<Vec<_>>()))
}

const PINNED_CONTENT_KEY: &str = "b15cab80371e845f0c49a87e894b817927f62735fb5aaa38f66d7f49173e08ff";
const PINNED_FILE_ID: [u8; 16] = [
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];
const PINNED_NONCE: [u8; 16] = [
    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
];
const PINNED_PLAIN: &[u8] = b"coffer block known answer, v1 ok!";
/// Block 2, final = 1, of file PINNED_FILE_ID: nonce | ciphertext | tag. pycryptodome with
/// AAD = 00 01 | file id | 00..00 02 | 01.
const PINNED_BLOCK: &str =
    "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf637396bee4ce0dc5b41936e01dbbcf42d2ec98d8bb710f78f9331a3ebb75\
                            31c9c60fc46ec546d094f2e8ee27e40e4146aa";

#[test]
fn coffer_content_subkey_is_pinned() {
    let k = pinned_master().derive::<32>(coffer::crypto::info::CONTENT);
    assert_eq!(to_hex(k.expose()), PINNED_CONTENT_KEY);
}

#[test]
fn coffer_block_is_pinned() {
    let keys = KeySet::derive(&pinned_master(), false);
    let aad = block_aad(FILE_V1, &PINNED_FILE_ID, BlockNo(2), true);
    let mut expect_aad = vec![0x00, 0x01];
    expect_aad.extend_from_slice(&PINNED_FILE_ID);
    expect_aad.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 1]);
    assert_eq!(aad.to_vec(), expect_aad);
    let sealed = keys
        .content
        .shared()
        .unwrap()
        .seal_with_nonce_to_vec(&PINNED_NONCE, &aad, PINNED_PLAIN);
    assert_eq!(to_hex(&sealed), PINNED_BLOCK);

    // End to end: a backing file of header | 2 hole blocks | the pinned final block reads back.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all_at(
        &FileHeader {
            version: FILE_V1,
            file_id: PINNED_FILE_ID,
        }
        .encode(),
        0,
    )
    .unwrap();
    f.write_all_at(&hex(PINNED_BLOCK), BlockNo(2).cipher_off()).unwrap();
    let cf = CryptFile::new(f, Arc::new(VaultKeys::single(keys)), "f".into(), FILE_V1);
    assert_eq!(cf.plain_len().unwrap(), 2 * 4096 + PINNED_PLAIN.len() as u64);
    let mut buf = vec![0xffu8; PINNED_PLAIN.len() + 100];
    assert_eq!(cf.read_at(&mut buf, 2 * 4096 - 100).unwrap(), PINNED_PLAIN.len() + 100);
    assert_eq!(&buf[..100], &[0u8; 100][..]);
    assert_eq!(&buf[100..], PINNED_PLAIN);
}

const PINNED_V2_PLAIN: &[u8] = b"coffer block known answer, v2 ok!";
/// Header version 2, block 2, final = 1, of file PINNED_FILE_ID, write session 7: nonce
/// a0..ab | 00 00 00 07 | ciphertext | tag. pycryptodome with AAD = 00 02 | file id | 00..00 02 | 01.
const PINNED_V2_BLOCK: &str = "a0a1a2a3a4a5a6a7a8a9aaab0000000718cf8fba09cead88b840e1ea53d504f1860acfc2662c4ee81ea7\
                               162be2056c6e4c50d33cfeb857f9fb57ef1cf66473ad17";

/// The version-2 layout (FORMAT.md §5.8): the session in the nonce's last 4 bytes, the header
/// version in the AAD; a file of header | 2 holes | this block reads back, and a session
/// newer than the last block's in block 0 is refused.
#[test]
fn coffer_v2_block_is_pinned() {
    let keys = KeySet::derive(&pinned_master(), false);
    let aad = block_aad(FILE_V2, &PINNED_FILE_ID, BlockNo(2), true);
    assert_eq!(aad[..2], [0, 2]);
    let mut nonce = [0u8; 16];
    nonce[..12].copy_from_slice(&PINNED_NONCE[..12]);
    coffer::format::session::set_nonce_session(&mut nonce, 7);
    let sealed = keys
        .content
        .shared()
        .unwrap()
        .seal_with_nonce_to_vec(&nonce, &aad, PINNED_V2_PLAIN);
    assert_eq!(to_hex(&sealed), PINNED_V2_BLOCK);

    let tmp = tempfile::tempdir().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp.path().join("f"))
        .unwrap();
    let header = FileHeader {
        version: FILE_V2,
        file_id: PINNED_FILE_ID,
    };
    f.write_all_at(&header.encode(), 0).unwrap();
    f.write_all_at(&hex(PINNED_V2_BLOCK), BlockNo(2).cipher_off()).unwrap();
    let cf = CryptFile::new(
        f.try_clone().unwrap(),
        Arc::new(VaultKeys::single(keys)),
        "f".into(),
        FILE_V2,
    );
    let mut buf = vec![0xffu8; 2 * 4096 + PINNED_V2_PLAIN.len()];
    assert_eq!(cf.read_at(&mut buf, 0).unwrap(), buf.len());
    assert_eq!(&buf[2 * 4096..], PINNED_V2_PLAIN);
    // Block 0 sealed in session 8, after the last block's 7: refused (the file is old).
    let keys = KeySet::derive(&pinned_master(), false);
    coffer::format::session::set_nonce_session(&mut nonce, 8);
    let ahead = keys.content.shared().unwrap().seal_with_nonce_to_vec(
        &nonce,
        &block_aad(FILE_V2, &PINNED_FILE_ID, BlockNo(0), false),
        &[5u8; 4096],
    );
    f.write_all_at(&ahead, BlockNo(0).cipher_off()).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    f.set_times(std::fs::FileTimes::new().set_modified(old)).unwrap();
    let cf = CryptFile::new(f, Arc::new(VaultKeys::single(keys)), "f".into(), FILE_V2);
    assert!(cf.read_at(&mut buf, 0).is_err());
    assert_eq!(cf.verify_blocks().unwrap().ahead, vec![0]);
}

const PINNED_V3_PLAIN: &[u8] = b"coffer block known answer, v3 ok!";
const PINNED_V3_EPOCH: EpochId = EpochId([0xe0, 0xe1, 0xe2, 0xe3]);
/// File ID of header version 3: epoch ID e0 e1 e2 e3 | f4..ff.
const PINNED_V3_FILE_ID: [u8; 16] = [
    0xe0, 0xe1, 0xe2, 0xe3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];
/// The mask of nonce random part a0..ab under that file's mask key.
const PINNED_V3_MASK: u32 = 0x0ae2_7378;
/// Header version 3, block 2, final = 1, of file PINNED_V3_FILE_ID, write session 7, epoch key
/// 00..1f: nonce a0..ab | (7 XOR mask) BE | ciphertext | tag. Python hmac/hashlib (HKDF:
/// root = HKDF-SHA256(master, salt = 32 zero bytes, "coffer v3 file keys"), okm =
/// HKDF-Expand(root, "coffer v3 file " | file id, 64)) and pycryptodome (mask = AES-256-ECB(okm[32..],
/// R | 00000000)[..4]; EAX under okm[..32] with AAD = 00 03 | file id | 00..00 02 | 01).
const PINNED_V3_BLOCK: &str = "a0a1a2a3a4a5a6a7a8a9aaab0ae2737f340a8943d9a0bb64941bc9ad55711714074855bf09dcecb1ca70\
                               7ce4419d35548b520f98a4ac9d38e89cca842f30600e8a";

/// The keys of a vault whose one epoch, `PINNED_V3_EPOCH`, has layout 3 and key 00..1f.
fn pinned_v3_keys() -> Arc<VaultKeys> {
    Arc::new(
        VaultKeys::from_epochs(vec![EpochKeys {
            id: Some(PINNED_V3_EPOCH),
            layout: Layout::V3,
            set: KeySet::derive_v3(&pinned_master()),
        }])
        .unwrap(),
    )
}

/// The version-3 layout (FORMAT.md §15.3): per-file keys from the epoch key and the file ID,
/// the session XORed with the mask in the nonce's last 4 bytes, version 3 in the AAD; a file of
/// header | 2 holes | this block reads back with session 7, and a block 0 sealed in session 8
/// (newer than the last block) is refused.
#[test]
fn coffer_v3_block_is_pinned() {
    let set = KeySet::derive_v3(&pinned_master());
    let ContentKey::PerFile(root) = &set.content else {
        panic!("a layout-3 key set has per-file keys");
    };
    let file_keys = root.file_keys(&PINNED_V3_FILE_ID);
    let random: [u8; 12] = arr(&PINNED_NONCE[..12]);
    assert_eq!(file_keys.mask.mask(&random), PINNED_V3_MASK);
    let aad = block_aad(FILE_V3, &PINNED_V3_FILE_ID, BlockNo(2), true);
    assert_eq!(aad[..2], [0, 3]);
    let mut nonce = [0u8; 16];
    nonce[..12].copy_from_slice(&random);
    nonce[12..].copy_from_slice(&(7 ^ PINNED_V3_MASK).to_be_bytes());
    let sealed = file_keys.content.seal_with_nonce_to_vec(&nonce, &aad, PINNED_V3_PLAIN);
    assert_eq!(to_hex(&sealed), PINNED_V3_BLOCK);

    let tmp = tempfile::tempdir().unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp.path().join("f"))
        .unwrap();
    let header = FileHeader {
        version: FILE_V3,
        file_id: PINNED_V3_FILE_ID,
    };
    assert_eq!(header.epoch_id(), Some(PINNED_V3_EPOCH));
    f.write_all_at(&header.encode(), 0).unwrap();
    f.write_all_at(&hex(PINNED_V3_BLOCK), BlockNo(2).cipher_off()).unwrap();
    let cf = CryptFile::new(f.try_clone().unwrap(), pinned_v3_keys(), "f".into(), FILE_V3);
    let mut buf = vec![0xffu8; 2 * 4096 + PINNED_V3_PLAIN.len()];
    assert_eq!(cf.read_at(&mut buf, 0).unwrap(), buf.len());
    assert_eq!(&buf[..2 * 4096], &[0u8; 2 * 4096][..]);
    assert_eq!(&buf[2 * 4096..], PINNED_V3_PLAIN);
    assert_eq!(cf.block_session(BlockNo(2)).unwrap(), 7);
    assert_eq!(cf.block_session(BlockNo(0)).unwrap(), 0, "a hole");
    // Block 0 sealed in session 8, after the last block's 7: refused (the file is old).
    let random0 = [0x33u8; 12];
    let mut nonce0 = [0u8; 16];
    nonce0[..12].copy_from_slice(&random0);
    nonce0[12..].copy_from_slice(&(8 ^ file_keys.mask.mask(&random0)).to_be_bytes());
    let ahead = file_keys.content.seal_with_nonce_to_vec(
        &nonce0,
        &block_aad(FILE_V3, &PINNED_V3_FILE_ID, BlockNo(0), false),
        &[5u8; 4096],
    );
    f.write_all_at(&ahead, BlockNo(0).cipher_off()).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    f.set_times(std::fs::FileTimes::new().set_modified(old)).unwrap();
    let cf = CryptFile::new(f, pinned_v3_keys(), "f".into(), FILE_V3);
    assert_eq!(cf.block_session(BlockNo(0)).unwrap(), 8);
    assert!(cf.read_at(&mut buf, 0).is_err());
    assert_eq!(cf.verify_blocks().unwrap().ahead, vec![0]);
}

/// Name "hello, coffer.txt" (17 bytes, PKCS#7-padded to 32) in a directory whose IV is
/// 10 11 .. 1f, pycryptodome AES-SIV with the 64-byte HKDF names subkey, base64url without padding.
const PINNED_NAME: &str = "ISDwfZZFmyxonoaapJ__wA5l3R-ZxpoYizvtMye26sV0zDbRhK9FjzJVKsJkqn0J";

#[test]
fn coffer_name_is_pinned() {
    let keys = KeySet::derive(&pinned_master(), false);
    let iv: [u8; 16] = arr(&(0x10u8..0x20).collect::<Vec<_>>());
    let enc = names::encode(&keys.names.encrypt_name(&iv, b"hello, coffer.txt"));
    assert_eq!(enc, PINNED_NAME);
    let raw = names::decode(PINNED_NAME.as_bytes()).unwrap();
    assert_eq!(keys.names.decrypt_name(&iv, &raw).unwrap(), b"hello, coffer.txt");

    // Through the vault: a CIPHERDIR whose root diriv is that IV maps the name the same way.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("coffer.diriv"), iv).unwrap();
    let v = coffer::vault::Vault::open(tmp.path(), &pinned_master(), Default::default(), true).unwrap();
    let root = v.root_dir().unwrap();
    let cn = v.cipher_name(&root, b"hello, coffer.txt").unwrap();
    assert_eq!(cn.entry, PINNED_NAME.as_bytes());
    assert_eq!(
        v.plain_name(&root, PINNED_NAME.as_bytes()).unwrap().unwrap(),
        b"hello, coffer.txt"
    );
}

/// A layout-3 symlink target and xattr value (docs/FORMAT.md §15.4), sealed with a fixed epoch
/// key (`00 01 … 1f`), epoch ID `a1b2c3d4` and nonce `a1b2c3d4 | 40 41 … 4b`, pinned against
/// `scripts/v3-names-kat.py` (Python `hmac` for HKDF, pycryptodome for EAX and SIV), then read
/// back through a vault that holds that epoch.
#[test]
fn v3_symlink_target_and_xattr_value_are_pinned() {
    use coffer::format::config::VaultParams;
    use coffer::format::epochs::{EpochId, Layout};
    use coffer::format::sealed::{symlink_aad, xattr_value_aad, XATTR_NAME_AD};
    use coffer::vault::{backing, cipher_name_for, unlock, EpochKeys, KdfCost, Vault};
    use std::os::fd::AsRawFd;

    const SYMLINK_SEALED: &str =
        "a1b2c3d4404142434445464748494a4b2ac344db2aa2beaf67da166ec22456163e9f75465b330fa4096bdc35e7e85dad893920";
    const SYMLINK_BACKING: &str = "obLD1EBBQkNERUZHSElKSyrDRNsqor6vZ9oWbsIkVhY-n3VGWzMPpAlr3DXn6F2tiTkg";
    const XATTR_BACKING: &str = "user.coffer.oVU7XgRt9xwFquare-6d7ogcufGyB6E42rVZazebSRo";
    const XATTR_SEALED: &str =
        "a1b2c3d4404142434445464748494a4bf036e100d6aeaf2874ca62f0a94fd69e48134caedbc74d7f2893e083a8b59756eaf16438ae";

    let epoch_key: [u8; 32] = arr(&(0u8..32).collect::<Vec<_>>());
    let id = EpochId(hex("a1b2c3d4").try_into().unwrap());
    let set = KeySet::derive_v3(&MasterKey::from_bytes(epoch_key));
    let mut nonce = [0u8; 16];
    nonce[..4].copy_from_slice(&id.0);
    for (i, b) in nonce[4..].iter_mut().enumerate() {
        *b = 0x40 + i as u8;
    }
    let target = b"../coffer/v3 target";
    let sealed = set
        .symlinks
        .seal_with_nonce_to_vec(&nonce, symlink_aad(Layout::V3), target);
    assert_eq!(to_hex(&sealed), SYMLINK_SEALED);
    assert_eq!(names::encode(&sealed), SYMLINK_BACKING);

    let owner: [u8; 16] = arr(&(0x60u8..0x70).collect::<Vec<_>>());
    let cipher = set.xattr_names.encrypt_name(XATTR_NAME_AD, b"user.kat");
    assert_eq!(format!("user.coffer.{}", names::encode(&cipher)), XATTR_BACKING);
    let value = b"coffer v3 xattr value";
    let sealed = set
        .xattr_values
        .seal_with_nonce_to_vec(&nonce, &xattr_value_aad(Layout::V3, &owner, &cipher), value);
    assert_eq!(to_hex(&sealed), XATTR_SEALED);

    // The vault reads both: the root's IV is the owner of the xattr.
    let tmp = tempfile::tempdir().unwrap();
    let params = VaultParams::default();
    unlock::init(tmp.path(), None, b"pw", &params, KdfCost::INSECURE_TEST).unwrap();
    let diriv = tmp.path().join("coffer.diriv");
    std::fs::remove_file(&diriv).unwrap();
    std::fs::write(&diriv, owner).unwrap();
    let keys = VaultKeys::from_epochs(vec![EpochKeys {
        id: Some(id),
        layout: Layout::V3,
        set: KeySet::derive_v3(&MasterKey::from_bytes(epoch_key)),
    }])
    .unwrap();
    let v = Vault::open_with_keys(tmp.path(), keys, params.clone(), false).unwrap();
    let root = v.root_dir().unwrap();
    assert_eq!(root.iv, owner);
    let entry = cipher_name_for(&set, &params, &owner, b"kat-link").unwrap().entry;
    root.fd.symlink(SYMLINK_BACKING.as_bytes(), &entry).unwrap();
    assert_eq!(v.readlink(&root, &entry).unwrap(), target);
    let (found, _) = v.lookup(&root, b"kat-link").unwrap();
    assert_eq!(found.entry, entry);
    let fd = root.fd.as_raw_fd();
    backing::fsetxattr(fd, XATTR_BACKING.as_bytes(), &hex(XATTR_SEALED), 0).unwrap();
    assert_eq!(v.xattr_get(fd, &owner, b"user.kat").unwrap().unwrap(), value);
}
