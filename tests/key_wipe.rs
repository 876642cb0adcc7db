//! No freed heap block holds key material: a global allocator scans every block on `dealloc`
//! for a marker master key (raw, or as lowercase hex), a marker password and a marker recovery
//! key, while the real code paths run (recovery key print and parse, unlock by password and by
//! recovery key, a new config, a password change). Its own process, so the allocator is its own.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use coffer::format::config::VaultParams;
use coffer::format::recovery;
use coffer::vault::unlock;
use coffer::vault::KdfCost;

/// Bytes whose hex pairs are a letter then a digit ("a1", "f7"): no word or number opens so.
const MASTER: [u8; 32] = [
    0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0xa7, 0xb8, 0xc9, 0xd1, 0xe2, 0xf3, 0xa4, 0xb5, 0xc6, 0xd7, 0xe8, 0xf9, 0xa3,
    0xb6, 0xc1, 0xd8, 0xe4, 0xf2, 0xa9, 0xb3, 0xc7, 0xd5, 0xe1, 0xf8, 0xa6, 0xb4,
];
const PASSWORD: &[u8] = b"Qz7-marker-password-Xw9";
const NEW_PASSWORD: &[u8] = b"Jv3-marker-new-password-Kp8";

static ARMED: AtomicBool = AtomicBool::new(false);
/// Also flag tiny blocks opening with one hex pair: on only around code that formats the key
/// as hex, as random 8-byte blocks elsewhere open with one of the 32 pairs now and then.
static PAIRS: AtomicBool = AtomicBool::new(false);
static HITS: AtomicUsize = AtomicUsize::new(0);
/// What the last hit matched, for the failure message (no allocation inside `dealloc`).
static LAST_HIT: AtomicUsize = AtomicUsize::new(0);

const HIT_RAW: usize = 1;
const HIT_HEX: usize = 2;
const HIT_HEX_PAIR: usize = 3;
const HIT_PASSWORD: usize = 4;
const HIT_SUBKEY: usize = 5;

/// The subkeys of [`MASTER`] (names and xattr-name SIV keys, the symlink key), derived before
/// any scan: reading them inside `dealloc` allocates nothing.
static SUBKEYS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();

fn hex_digit(n: u8) -> u8 {
    b"0123456789abcdef"[usize::from(n)]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.len() <= hay.len() && hay.windows(needle.len()).any(|w| w == needle)
}

fn scan(block: &[u8]) -> usize {
    // Any 8 consecutive raw bytes of the master key.
    for w in MASTER.windows(8) {
        if contains(block, w) {
            return HIT_RAW;
        }
    }
    // Any 4 consecutive master bytes as 8 lowercase hex digits (a dash group's worth).
    for w in MASTER.windows(4) {
        let mut hex = [0u8; 8];
        for (i, b) in w.iter().enumerate() {
            hex[2 * i] = hex_digit(b >> 4);
            hex[2 * i + 1] = hex_digit(b & 15);
        }
        if contains(block, &hex) {
            return HIT_HEX;
        }
    }
    // A tiny block opening with one master byte's hex pair: a per-byte `format!` temporary.
    if PAIRS.load(Ordering::Relaxed) && block.len() <= 16 && block.len() >= 2 {
        for b in MASTER {
            if block[0] == hex_digit(b >> 4) && block[1] == hex_digit(b & 15) {
                return HIT_HEX_PAIR;
            }
        }
    }
    if let Some(keys) = SUBKEYS.get() {
        for k in keys {
            for w in k.windows(8).step_by(8) {
                if contains(block, w) {
                    return HIT_SUBKEY;
                }
            }
        }
    }
    for pw in [PASSWORD, NEW_PASSWORD] {
        if contains(block, &pw[..12]) || contains(block, &pw[pw.len() - 12..]) {
            return HIT_PASSWORD;
        }
    }
    0
}

struct Scanning;

unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::Relaxed) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until the call below.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            let hit = scan(block);
            if hit != 0 {
                HITS.fetch_add(1, Ordering::Relaxed);
                LAST_HIT.store(hit, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc_zeroed(layout) }
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

/// One scanned stretch at a time: the counters are process-wide.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` with the scan on; returns the hits (and what the last one matched).
fn scanned<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    HITS.store(0, Ordering::SeqCst);
    LAST_HIT.store(0, Ordering::SeqCst);
    ARMED.store(true, Ordering::SeqCst);
    let out = f();
    ARMED.store(false, Ordering::SeqCst);
    (out, HITS.load(Ordering::SeqCst), LAST_HIT.load(Ordering::SeqCst))
}

#[test]
fn no_freed_block_holds_key_material() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let path = unlock::config_path(tmp.path(), None);
    let params = VaultParams::default();

    PAIRS.store(true, Ordering::SeqCst);
    let (text, hits, last) = scanned(|| recovery::encode(&MASTER, &params));
    PAIRS.store(false, Ordering::SeqCst);
    assert_eq!(
        hits, 0,
        "printing the recovery key: {hits} freed blocks with key material (last kind {last})"
    );

    let (master, hits, last) = scanned(|| {
        let spaced = text.to_string();
        let out = unlock::unlock_with_recovery_key(&spaced, None).unwrap().0;
        drop(zeroize::Zeroizing::new(spaced));
        out
    });
    assert_eq!(
        hits, 0,
        "parsing the recovery key: {hits} freed blocks with key material (last kind {last})"
    );
    assert_eq!(master.expose(), &MASTER);

    let ((), hits, last) = scanned(|| {
        unlock::write_new_config(&path, &master, &params, PASSWORD, KdfCost::INSECURE_TEST).unwrap();
    });
    assert_eq!(
        hits, 0,
        "writing a config: {hits} freed blocks with key material (last kind {last})"
    );

    let (again, hits, last) = scanned(|| {
        let cfg = unlock::read_config(&path).unwrap();
        unlock::unlock_with_password_kek(&cfg, PASSWORD).unwrap().0
    });
    assert_eq!(
        hits, 0,
        "unlocking by password: {hits} freed blocks with key material (last kind {last})"
    );
    assert_eq!(again.expose(), &MASTER);

    let ((), hits, last) = scanned(|| unlock::change_password(&path, PASSWORD, NEW_PASSWORD, None).unwrap());
    assert_eq!(
        hits, 0,
        "changing the password: {hits} freed blocks with key material (last kind {last})"
    );

    let (text2, hits, last) = scanned(|| {
        let cfg = unlock::read_config(&path).unwrap();
        let m = unlock::unlock_with_password(&cfg, NEW_PASSWORD).unwrap();
        recovery::encode(m.expose(), &cfg.params())
    });
    assert_eq!(
        hits, 0,
        "unlock then print: {hits} freed blocks with key material (last kind {last})"
    );
    assert_eq!(*text2, *text);
    drop((master, again));
}

/// The ciphers of a key set (AES key schedules, the SIV keys, CMAC and HMAC states) are wiped
/// when it is dropped: no freed block holds a subkey.
#[test]
fn a_dropped_key_set_leaves_no_subkey() {
    use coffer::crypto::{info, FileKeyRoot, KeySet, MasterKey};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let master = MasterKey::from_bytes(MASTER);
    SUBKEYS.get_or_init(|| {
        let half = |k: &[u8; 64], i: usize| -> [u8; 32] { k[32 * i..32 * (i + 1)].try_into().unwrap() };
        let names = master.derive::<64>(info::NAMES);
        let xnames = master.derive::<64>(info::XATTR_NAMES);
        vec![
            half(names.expose(), 0),
            half(names.expose(), 1),
            half(xnames.expose(), 0),
            half(xnames.expose(), 1),
            *master.derive::<32>(info::SYMLINKS).expose(),
            *master.derive::<32>(info::CONTENT).expose(),
            *master.derive::<32>(info::CONFIG_MAC).expose(),
        ]
    });
    let ((), hits, last) = scanned(|| {
        let keys = Box::new(KeySet::derive(&master, false));
        let name = keys.names.encrypt_name(&[7; 16], b"a name to seal");
        assert!(keys.names.decrypt_name(&[7; 16], &name).is_ok());
        drop(keys);
        let root = Box::new(FileKeyRoot::derive(&master));
        drop(Box::new(root.file_keys(&[9; 16])));
    });
    assert_eq!(
        hits, 0,
        "dropping a key set: {hits} freed blocks with a subkey (last kind {last})"
    );
}

#[test]
fn the_scan_sees_a_plain_copy() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ((), hits, _) = scanned(|| drop(MASTER.to_vec()));
    assert_eq!(hits, 1);
    PAIRS.store(true, Ordering::SeqCst);
    let ((), hits, _) = scanned(|| drop(format!("{:02x}", MASTER[3])));
    PAIRS.store(false, Ordering::SeqCst);
    assert_eq!(hits, 1);
    let ((), hits, _) = scanned(|| drop(PASSWORD.to_vec()));
    assert_eq!(hits, 1);
}

/// Key slots (config version 3): wrapping the key for a password, a key file and an age
/// recipient, unlocking through each, a password change and a rewrap for a new epoch leave
/// no freed block with the key or a password.
#[test]
fn key_slots_leave_no_key_material() {
    use coffer::crypto::MasterKey;
    use coffer::format::epochs::{Epoch, EpochId, Epochs, Layout, VaultId};
    use unlock::slots::{self, Credential, NewSlot};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let path = unlock::config_path(tmp.path(), None);
    let master = MasterKey::from_bytes(MASTER);
    let vault = VaultId([7; 8]);
    let epochs = Epochs::new(vec![Epoch {
        id: EpochId([1, 2, 3, 4]),
        seq: 0,
        layout: Layout::V3,
        sealed_key: None,
    }])
    .unwrap();
    let key_file = [0x5au8; 32];
    let age_id = age::x25519::Identity::generate();
    let recipient = coffer::crypto::SlotRecipient::parse(&age_id.to_public().to_string()).unwrap();

    let ((), hits, last) = scanned(|| {
        let new = [
            NewSlot::Password {
                password: PASSWORD,
                cost: KdfCost::INSECURE_TEST,
            },
            NewSlot::KeyFile(&key_file),
            NewSlot::Recipient(recipient.clone()),
        ];
        let mut made = Vec::new();
        for (i, n) in new.iter().enumerate() {
            let id = coffer::format::config::slots::SlotId([0, 0, 0, i as u8 + 1]);
            made.push(slots::make_slot(&master, vault, id, n, None).unwrap());
        }
        let list = coffer::format::config::slots::Slots {
            slots: made,
            removed: Vec::new(),
        };
        slots::write_v3(&path, &VaultParams::default(), vault, &epochs, &list, &[], &master).unwrap();
    });
    assert_eq!(
        hits, 0,
        "making slots: {hits} freed blocks with key material (last kind {last})"
    );

    let ids: Vec<Box<dyn age::Identity>> = vec![Box::new(age_id)];
    for (what, cred) in [
        ("password", Credential::Password(PASSWORD)),
        ("key file", Credential::KeyFile(&key_file)),
        ("identity", Credential::Identities(&ids)),
    ] {
        let (key, hits, last) = scanned(|| {
            let cfg = unlock::read_config(&path).unwrap();
            slots::unlock_slots(&cfg, &cred).unwrap().key
        });
        assert_eq!(key.expose(), &MASTER);
        assert_eq!(
            hits, 0,
            "unlocking by {what}: {hits} freed blocks with key material (last kind {last})"
        );
    }
    let ((), hits, last) = scanned(|| unlock::change_password(&path, PASSWORD, NEW_PASSWORD, None).unwrap());
    assert_eq!(
        hits, 0,
        "changing a slot's password: {hits} freed blocks with key material (last kind {last})"
    );
    let ((), hits, last) = scanned(|| {
        let cfg = unlock::read_config(&path).unwrap();
        let other = MasterKey::from_bytes([0x11; 32]);
        slots::rewrap_all(&master, &other, vault, &slots::slots_of(&cfg).unwrap()).unwrap();
    });
    assert_eq!(
        hits, 0,
        "rewrapping every slot: {hits} freed blocks with key material (last kind {last})"
    );
}
