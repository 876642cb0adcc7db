//! Writes the frozen fixture vault (run by scripts/make-fixture; never by tests).
//!
//! `cargo run --example make_fixture -- v1|v2|v3|slots VAULT_DIR MANIFEST XATTRS RECOVERY`
//!
//! `v1`: a vault without feature flags (header-version-1 files); `v2`: `block_sessions` only
//! (header-version-2 files; made before `xattr_packs`, so one backing xattr per name); `v3`:
//! config version 2 with one layout-3 key epoch (header-version-3 files, names, symlink
//! targets and xattrs of layout 3, packed xattrs); `slots`: config version 3, the same epoch
//! layout, with a password, a key-file and an age slot (the key file and the age identity are
//! written beside RECOVERY as `.keyfile` and `.age`: test secrets). VAULT_DIR must not exist. MANIFEST lists every plaintext entry (path in hex, type, size,
//! SHA-256 of contents or target, xattrs); XATTRS holds the backing xattrs, which git does not
//! store, for tests/vault/fixture.rs to put back; RECOVERY holds the recovery key.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

use coffer::format::config::{VaultParams, FLAG_BLOCK_SESSIONS};
use coffer::format::{CONFIG_V1, CONFIG_V2, CONFIG_V3};
use coffer::vault::{backing, unlock, Dir, KdfCost, Vault};
use sha2::{Digest, Sha256};

/// The fixtures' passwords (tests/vault/fixture.rs uses the same): "coffer fixture " + the name.
const PASSWORD_PREFIX: &str = "coffer fixture ";

/// Deterministic contents: byte i of a stream seeded by `seed`.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Maker {
    vault: Vault,
    manifest: Vec<String>,
    xattrs: Vec<String>,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

impl Maker {
    fn path(parent: &[u8], name: &[u8]) -> Vec<u8> {
        if parent.is_empty() {
            name.to_vec()
        } else {
            [parent, b"/", name].concat()
        }
    }

    fn file(&mut self, dir: &Dir, parent: &[u8], name: &[u8], parts: &[(u64, Vec<u8>)], size: u64) -> Res<()> {
        let (f, _) = self.vault.create_file(dir, name, 0o644)?;
        let mut plain = vec![0u8; size as usize];
        for (off, data) in parts {
            f.write_at(data, *off)?;
            plain[*off as usize..*off as usize + data.len()].copy_from_slice(data);
            // One write session per part (version 2 files then carry several sessions).
            f.sync(true)?;
        }
        if f.plain_len()? != size {
            self.vault.set_len(&f, size)?;
        }
        let p = Self::path(parent, name);
        self.manifest
            .push(format!("f\t{}\t{}\t{}", hex(&p), size, hex(&Sha256::digest(&plain))));
        Ok(())
    }

    fn symlink(&mut self, dir: &Dir, parent: &[u8], name: &[u8], target: &[u8]) -> Res<()> {
        self.vault.symlink(dir, name, target)?;
        let p = Self::path(parent, name);
        self.manifest.push(format!(
            "l\t{}\t{}\t{}",
            hex(&p),
            target.len(),
            hex(&Sha256::digest(target))
        ));
        Ok(())
    }

    fn mkdir(&mut self, dir: &Dir, parent: &[u8], name: &[u8]) -> Res<Dir> {
        let cn = self.vault.mkdir(dir, name, 0o755)?;
        self.manifest.push(format!("d\t{}", hex(&Self::path(parent, name))));
        Ok(dir.open_child(&self.vault, &cn.entry)?)
    }

    /// Sets an xattr on a file and records both its plaintext (manifest) and backing form.
    fn xattr(&mut self, dir: &Dir, parent: &[u8], name: &[u8], attr: &[u8], value: &[u8]) -> Res<()> {
        let cn = self.vault.cipher_name(dir, name)?;
        let f = self.vault.open_file(dir, &cn.entry, true)?;
        let id = f.ensure_header()?.file_id;
        let fd = f.backing().as_raw_fd();
        self.vault.xattr_set(fd, &id, attr, value, 0)?;
        for bname in backing::flistxattr(fd)? {
            if let Some(v) = backing::fgetxattr(fd, &bname)? {
                let rel = dir.rel_child(&cn.entry);
                let rel = std::os::unix::ffi::OsStrExt::as_bytes(rel.as_os_str()).to_vec();
                self.xattrs.push(format!("{}\t{}\t{}", hex(&rel), hex(&bname), hex(&v)));
            }
        }
        let p = Self::path(parent, name);
        self.manifest
            .push(format!("x\t{}\t{}\t{}", hex(&p), hex(attr), hex(value)));
        Ok(())
    }
}

fn build(m: &mut Maker) -> Res<()> {
    let root = m.vault.root_dir()?;
    m.file(&root, b"", b"empty", &[], 0)?;
    for (name, size, seed) in [
        (&b"one-byte"[..], 1u64, 1u32),
        (b"size-4095", 4095, 2),
        (b"size-4096", 4096, 3),
        (b"size-4097", 4097, 4),
        (b"one-mib", 1 << 20, 5),
    ] {
        m.file(&root, b"", name, &[(0, pattern(size as usize, seed))], size)?;
    }
    // Sparse: data in block 0 and block 20, holes between, size ending mid-block.
    m.file(
        &root,
        b"",
        b"sparse",
        &[(0, b"head".to_vec()), (20 * 4096 + 7, b"tail".to_vec())],
        20 * 4096 + 11,
    )?;
    // Sparse by truncate: 1 byte, then grown to 10 blocks + 1.
    m.file(&root, b"", b"grown", &[(0, b"g".to_vec())], 10 * 4096 + 1)?;
    let mut long = b"long-name-".to_vec();
    long.resize(200, b'L');
    m.file(
        &root,
        b"",
        &long,
        &[(0, b"in a file with a 200-byte name".to_vec())],
        30,
    )?;
    m.file(&root, b"", b"non-utf8-\xff\xfe\x80.bin", &[(0, pattern(77, 6))], 77)?;
    m.file(
        &root,
        b"",
        "\u{e9}t\u{e9} \u{1f600}.txt".as_bytes(),
        &[(0, b"utf-8".to_vec())],
        5,
    )?;
    m.symlink(&root, b"", b"link", b"size-4095")?;
    let mut target = Vec::new();
    while target.len() < 4095 {
        target.extend_from_slice(b"/deep");
    }
    target.truncate(4095);
    m.symlink(&root, b"", b"link-4095", &target)?;
    m.xattr(&root, b"", b"one-byte", b"user.fixture", b"xattr value \x00\x01\xff")?;

    let d = m.mkdir(&root, b"", b"dir")?;
    let sub = m.mkdir(&d, b"dir", b"sub")?;
    m.mkdir(&d, b"dir", b"empty-dir")?;
    let deeper = m.mkdir(&sub, b"dir/sub", b"deeper")?;
    m.file(&deeper, b"dir/sub/deeper", b"file.txt", &[(0, b"nested\n".to_vec())], 7)?;
    m.symlink(&deeper, b"dir/sub/deeper", b"up", b"../../..")?;
    let mut long_dir = b"long-dir-".to_vec();
    long_dir.resize(210, b'D');
    let ld = m.mkdir(&sub, b"dir/sub", &long_dir)?;
    let ld_path = [&b"dir/sub/"[..], &long_dir].concat();
    m.file(&ld, &ld_path, b"x", &[(0, pattern(5000, 7))], 5000)?;
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [name, vault_dir, manifest, xattrs, recovery_out] = args.as_slice() else {
        return Err("usage: make_fixture v1|v2|v3|slots VAULT_DIR MANIFEST XATTRS RECOVERY".into());
    };
    let name = name.to_str().ok_or("fixture name")?;
    let mut params = VaultParams::default();
    let config_version = match name {
        "v1" => {
            params.feature_flags.clear();
            CONFIG_V1
        }
        "v2" => {
            params.feature_flags = vec![FLAG_BLOCK_SESSIONS.into()];
            CONFIG_V1
        }
        "v3" => CONFIG_V2,
        "slots" => CONFIG_V3,
        _ => return Err(format!("unknown fixture {name}").into()),
    };
    let password = format!("{PASSWORD_PREFIX}{name}");
    let password = password.as_bytes();
    let vault_dir = Path::new(vault_dir);
    std::fs::create_dir(vault_dir)?;
    let master = unlock::init_version(
        vault_dir,
        None,
        password,
        &params,
        KdfCost::INSECURE_TEST,
        config_version,
    )?;
    let vault = Vault::unlock(vault_dir, None, password, false)?;
    let mut m = Maker {
        vault,
        manifest: Vec::new(),
        xattrs: Vec::new(),
    };
    build(&mut m)?;
    m.manifest.sort();
    let header = format!(
        "# coffer fixture vault-{name}: TYPE\\tHEX(PATH)\\t...; f: size sha256; l: len sha256(target); \
         d; x: hex(name) hex(value)\n"
    );
    let mut out = std::fs::File::create(manifest)?;
    out.write_all(header.as_bytes())?;
    for l in &m.manifest {
        writeln!(out, "{l}")?;
    }
    let mut out = std::fs::File::create(xattrs)?;
    writeln!(
        out,
        "# backing xattrs git does not store: HEX(BACKING PATH)\\tHEX(NAME)\\tHEX(VALUE)"
    )?;
    for l in &m.xattrs {
        writeln!(out, "{l}")?;
    }
    if config_version == CONFIG_V3 {
        add_fixture_slots(vault_dir, password, Path::new(recovery_out))?;
    }
    // The recovery key of a throwaway test vault is not a secret.
    let cfg = unlock::read_config(&unlock::config_path(vault_dir, None))?;
    std::fs::write(
        recovery_out,
        format!("{}\n", unlock::recovery_key(&cfg, &master)?.as_str()),
    )?;
    Ok(())
}

/// The `slots` fixture's further ways in: a key file of 32 fixed bytes and a new age identity,
/// both written beside `recovery` (`.keyfile`, `.age`; test secrets of a throwaway vault).
fn add_fixture_slots(vault_dir: &Path, password: &[u8], recovery: &Path) -> Res<()> {
    use age::secrecy::ExposeSecret;
    use unlock::slots::{add_slot, unlock_any, Credential, NewSlot};
    let key_file = [0x42u8; 32];
    std::fs::write(recovery.with_extension("keyfile"), key_file)?;
    let id = age::x25519::Identity::generate();
    std::fs::write(
        recovery.with_extension("age"),
        format!("{}\n", id.to_string().expose_secret()),
    )?;
    let path = unlock::config_path(vault_dir, None);
    let recipient = coffer::crypto::SlotRecipient::parse(&id.to_public().to_string())?;
    for (new, label) in [
        (NewSlot::KeyFile(&key_file), "usb"),
        (NewSlot::Recipient(recipient), "phone"),
    ] {
        let cfg = unlock::read_config(&path)?;
        let (key, _) = unlock_any(&cfg, &Credential::Password(password))?;
        add_slot(&path, &cfg, &key, Some(password), &new, Some(label.to_string()))?;
    }
    Ok(())
}
