//! The clap definition of every command, its options, examples and the exit-code table.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Exit codes, shown at the end of `--help` (kept in sync with README.md by a test).
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other error (I/O error, mount failed, ...)
  2  usage error (unknown option, missing argument)
  3  wrong password or recovery key
  4  not a coffer vault, or its config is refused (newer format, unknown feature flag, modified)
  5  password could not be read (passfile missing, extpass failed, empty, confirmation mismatch)
  6  damaged data (a block, name or header failed authentication)
  7  target refused (CIPHERDIR not empty or already a vault, bad mountpoint, OUTDIR not empty)
fsck has its own: 0 clean, 1 damage found, 2 could not run.";

/// coffer: an encrypted filesystem for folders kept in cloud sync.
#[derive(Debug, Parser)]
#[command(name = "coffer", version, about, after_help = EXIT_CODES_HELP, max_term_width = 100)]
pub struct Cli {
    /// More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new vault in an empty directory and print its recovery key.
    #[command(after_help = concat!(
        "Example:\n  coffer init ~/Dropbox/vault\n  coffer init --passfile ~/.vault-pass --quiet ~/Dropbox/vault\n\n",
        "The recovery key printed here opens the vault without coffer.conf or the password\n",
        "(`coffer mount --masterkey`); keep it offline."
    ))]
    Init(InitArgs),
    /// Mount a vault; returns once the mount is ready (or failed).
    #[command(after_help = concat!(
        "Example:\n  coffer mount ~/Dropbox/vault ~/Private\n",
        "  coffer mount --ro --idle 30m --passfile ~/.vault-pass ~/Dropbox/vault ~/Private\n",
        "  coffer mount --masterkey ~/Dropbox/vault ~/Private    # config or password lost\n\n",
        "Without --fg the mount runs in the background, logging to syslog (or --log FILE).\n",
        "Unmount with `coffer unmount ~/Private`."
    ))]
    Mount(MountArgs),
    /// Unmount a coffer mount (fusermount3 -u, or umount2 as root).
    #[command(after_help = "Example:\n  coffer unmount ~/Private")]
    Unmount(UnmountArgs),
    /// Change the password (re-wraps the master key; the data is not re-encrypted).
    #[command(after_help = concat!(
        "Example:\n  coffer passwd ~/Dropbox/vault\n",
        "  coffer passwd --masterkey ~/Dropbox/vault    # forgot the password: set a new one\n\n",
        "Warning: an old coffer.conf may survive in your sync client's or provider's version\n",
        "history and still opens the vault with the old password. After a leaked password, run\n",
        "`coffer rekey` (a new key for everything) and then `coffer rekey --finish`."
    ))]
    Passwd(PasswdArgs),
    /// Start a new key epoch and re-encrypt everything under it; `--finish` forgets the old keys.
    #[command(after_help = concat!(
        "Example:\n  coffer rekey ~/Dropbox/vault\n  coffer rekey --finish ~/Dropbox/vault\n\n",
        "After a leaked password or a departed person: rekey prints a new recovery key, moves every\n",
        "file, name, symlink and xattr to the new key (each file is written once, so a sync client\n",
        "uploads it once) and can be stopped and run again at any time. Old coffer.conf copies in a\n",
        "sync client's history still open the OLD keys until `coffer rekey --finish`, which refuses\n",
        "while anything is left under them. A vault mounted on this machine is rekeyed by its\n",
        "mount, whose open files keep working. Given a PLAINDIR with a reverse config, rekey gives\n",
        "the config a new key: every file of the encrypted view changes (the next backup copies\n",
        "everything again), and copies made before keep the old key."
    ))]
    Rekey(RekeyArgs),
    /// List, add and remove the vault's key slots: passwords, key files, age and SSH keys.
    #[command(after_help = concat!(
        "Example:\n  coffer key list ~/Dropbox/vault\n",
        "  coffer key add ~/Dropbox/vault --recipient-file ~/.ssh/id_ed25519.pub --label laptop\n",
        "  coffer key add ~/Dropbox/vault --keyfile /media/usb/vault.key\n",
        "  coffer key remove ~/Dropbox/vault laptop\n\n",
        "Every slot holder can read the vault and administer its slots. Removing a slot stops\n",
        "that way in from opening the current coffer.conf; what its holder already copied, and,\n",
        "until a rekey finishes, files under the current key epoch, stay readable to them: run\n",
        "`coffer rekey` and `coffer rekey --finish` (or `key remove --rekey`)."
    ))]
    Key(KeyArgs),
    /// Show the vault's config version, flags, KDF parameters and long-name limit (no secrets).
    #[command(after_help = concat!(
        "Example:\n  coffer info ~/Dropbox/vault\n\n",
        "While a rekey is under way (the config lists several key epochs), info also reads every\n",
        "file's header and shows, per epoch, how many files and backing bytes are sealed under it:\n",
        "0 files under each older epoch means every file's contents moved (names, symlink targets\n",
        "and xattrs need the key: `coffer rekey --finish` checks them)."
    ))]
    Info(InfoArgs),
    /// Print how many FUSE requests of each kind this machine's mount of CIPHERDIR has served
    /// (JSON): what a workload costs in round trips to the daemon.
    #[command(hide = true)]
    Stats(StatsArgs),
    /// Decrypt one file of a vault to stdout (no mount needed).
    #[command(after_help = "Example:\n  coffer cat ~/Dropbox/vault notes/todo.txt > todo.txt")]
    Cat(CatArgs),
    /// Decrypt a whole vault into a plain directory tree (no mount needed).
    #[command(after_help = concat!(
        "Example:\n  coffer export ~/Dropbox/vault /media/backup/restore\n\n",
        "Copies files, directories, symlinks and xattrs, keeping modes and times (and owners\n",
        "when run as root). Damaged files are reported, exported with zeros where blocks fail,\n",
        "and make the exit code 6; everything else is still exported."
    ))]
    Export(ExportArgs),
    /// Check every name, block, symlink, xattr and sidecar of a vault (no mount needed).
    #[command(after_help = concat!(
        "Example:\n  coffer fsck ~/Dropbox/vault\n  coffer fsck --json ~/Dropbox/vault > report.json\n",
        "  coffer fsck --repair ~/Dropbox/vault\n\n",
        "fsck's own exit codes: 0 clean, 1 damage found (or left after --repair), 2 could not run.\n",
        "--repair fixes only safe cases (orphaned sidecars, stray temporary files, a torn last block)\n",
        "and never deletes readable data. Without --repair the check is read-only and may run while\n",
        "the vault is mounted."
    ))]
    Fsck(FsckArgs),
    /// Mount a read-only encrypted view of a plain directory (reverse mode, for backups).
    #[command(after_help = concat!(
        "Example:\n  coffer init --reverse ~/Documents\n",
        "  coffer reverse ~/Documents /mnt/docs-encrypted\n",
        "  rsync -a /mnt/docs-encrypted/ backup:docs-vault/\n",
        "  coffer mount backup-copy ~/restore     # the copy is an ordinary vault\n\n",
        "The view is deterministic: unchanged files give the same ciphertext on every mount, so\n",
        "incremental backups only upload what changed. A file that changes while it is read gives\n",
        "EIO for that read. xattrs are not shown."
    ))]
    Reverse(ReverseArgs),
    /// Print the backing (encrypted) path of a plaintext path (support tool).
    #[command(
        name = "encrypt-name",
        after_help = "Example:\n  coffer encrypt-name ~/Dropbox/vault 'notes/todo.txt'"
    )]
    EncryptName(NameArgs),
    /// Print the plaintext path of a backing path relative to CIPHERDIR (support tool).
    #[command(
        name = "decrypt-name",
        after_help = "Example:\n  coffer decrypt-name ~/Dropbox/vault 'u0eH7x.../Q2kz...'"
    )]
    DecryptName(NameArgs),
    /// Print a shell completion script to stdout.
    #[command(after_help = "Example:\n  coffer completions bash > ~/.local/share/bash-completion/completions/coffer")]
    Completions(CompletionsArgs),
    /// Write the man pages and completion scripts into a directory (used by scripts/gen-docs).
    #[command(hide = true, name = "gen-docs")]
    GenDocs(GenDocsArgs),
}

/// How a secret is read. Never from a command-line argument.
#[derive(Debug, Args, Clone, Default)]
pub struct SecretArgs {
    /// Read the password (or recovery key) from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "extpass")]
    pub passfile: Option<PathBuf>,
    /// Run CMD (via sh -c) and use the first line of its stdout as the password.
    #[arg(long, value_name = "CMD")]
    pub extpass: Option<String>,
}

/// `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The directory to hold the encrypted vault (created if missing; must be empty).
    pub cipherdir: PathBuf,
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Keep the config (the wrapped master key) in FILE instead of CIPHERDIR/coffer.conf.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Encoded names longer than N bytes are stored as hashed long names (48..=205; e.g. 143
    /// for eCryptfs homes and some sync clients).
    #[arg(long, visible_alias = "longname-max", value_name = "N", default_value_t = crate::cli::DEFAULT_LONG_NAME_LIMIT)]
    pub long_name_limit: u16,
    /// How encrypted names are spelled: base64url (shortest) or base32 (for case-insensitive
    /// backends such as some Windows/macOS sync targets).
    #[arg(long, value_enum, value_name = "ENCODING", default_value_t = NameEncodingArg::Base64url)]
    pub name_encoding: NameEncodingArg,
    /// Same as --name-encoding base32: encrypted names that survive a case-insensitive backend.
    #[arg(long, conflicts_with = "name_encoding")]
    pub case_insensitive: bool,
    /// Do not print the recovery key and its warning.
    #[arg(short, long)]
    pub quiet: bool,
    /// TESTS ONLY: use the cheapest password KDF (Argon2id m=8 KiB, t=1). A vault made this way
    /// falls to password guessing quickly; never use it for real data.
    #[arg(long)]
    pub insecure_fast_kdf: bool,
    /// Reverse mode: CIPHERDIR is the plain directory to show encrypted (`coffer reverse`); the
    /// config goes to CIPHERDIR/.coffer.reverse.conf (or --config) and nothing else is written.
    #[arg(long)]
    pub reverse: bool,
    /// The config version to write: 2 (key epochs, per-file keys; docs/FORMAT.md §15; the
    /// default) or 1 (one master key for the vault's life; read by every coffer). Reverse
    /// configs are always version 1.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=3), hide = true)]
    pub config_version: Option<u16>,
    /// Make the vault for an age recipient (age1…) or an SSH public key (ssh-ed25519 …,
    /// ssh-rsa …) instead of a password; repeatable. No password slot is made; the recovery
    /// key is printed as always.
    #[arg(long, value_name = "RECIPIENT", conflicts_with = "reverse")]
    pub recipient: Vec<String>,
    /// Like --recipient, read from FILE (an SSH .pub file, or age recipients one per line).
    #[arg(long, value_name = "FILE", conflicts_with = "reverse")]
    pub recipient_file: Vec<PathBuf>,
}

impl InitArgs {
    /// The name encoding asked for (`--case-insensitive` is base32).
    pub fn encoding(&self) -> coffer::format::names::NameEncoding {
        if self.case_insensitive {
            coffer::format::names::NameEncoding::Base32
        } else {
            self.name_encoding.into()
        }
    }
}

/// `reverse`.
#[derive(Debug, Args)]
pub struct ReverseArgs {
    /// The plain directory to show encrypted.
    pub plaindir: PathBuf,
    /// Where the encrypted view appears (an existing, empty directory).
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
    /// Hide paths matching PATTERN (repeatable): `*`, `?`, `**`; without `/` it matches a name
    /// at any depth, with `/` the path from PLAINDIR.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<OsString>,
    /// Stay in the foreground (logs go to stderr).
    #[arg(short, long)]
    pub fg: bool,
    /// Let other users see the mount (needs root or user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    pub allow_other: bool,
    /// Unmount after this long without any filesystem request (e.g. 90s, 30m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::duration::parse)]
    pub idle: Option<std::time::Duration>,
    /// Write the log to FILE (default: syslog in the background, stderr with --fg).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Internal: set by `coffer reverse` on the background process it starts.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

/// `mount --atime` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AtimeArg {
    /// Never update access times.
    Noatime,
    /// Update the access time when it is older than the modification or change time, or a
    /// day old (the kernel's default).
    Relatime,
    /// Update the access time on every read.
    Strictatime,
}

impl From<AtimeArg> for coffer::fs::Atime {
    fn from(a: AtimeArg) -> Self {
        match a {
            AtimeArg::Noatime => coffer::fs::Atime::NoAtime,
            AtimeArg::Relatime => coffer::fs::Atime::RelAtime,
            AtimeArg::Strictatime => coffer::fs::Atime::StrictAtime,
        }
    }
}

/// `mount --kernel-cache` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelCacheArg {
    /// On where CIPHERDIR can be watched.
    Auto,
    /// On everywhere.
    On,
    /// Off: 1 s timeouts.
    Off,
}

impl From<KernelCacheArg> for coffer::fs::KernelCache {
    fn from(a: KernelCacheArg) -> Self {
        match a {
            KernelCacheArg::Auto => coffer::fs::KernelCache::Auto,
            KernelCacheArg::On => coffer::fs::KernelCache::On,
            KernelCacheArg::Off => coffer::fs::KernelCache::Off,
        }
    }
}

/// `mount --watcher` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatcherArg {
    /// fanotify where the kernel allows it (Linux 5.13 and later), else inotify.
    Auto,
    /// inotify only.
    Inotify,
}

impl From<WatcherArg> for coffer::fs::Watcher {
    fn from(a: WatcherArg) -> Self {
        match a {
            WatcherArg::Auto => coffer::fs::Watcher::Auto,
            WatcherArg::Inotify => coffer::fs::Watcher::Inotify,
        }
    }
}

/// `--name-encoding` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NameEncodingArg {
    /// Unpadded base64url.
    Base64url,
    /// Unpadded upper-case base32.
    Base32,
}

impl From<NameEncodingArg> for coffer::format::names::NameEncoding {
    fn from(a: NameEncodingArg) -> Self {
        match a {
            NameEncodingArg::Base64url => coffer::format::names::NameEncoding::Base64Url,
            NameEncodingArg::Base32 => coffer::format::names::NameEncoding::Base32,
        }
    }
}

/// Options shared by the commands that open a vault.
#[derive(Debug, Args, Clone, Default)]
pub struct OpenArgs {
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Read the config from FILE instead of CIPHERDIR/coffer.conf.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Open with the recovery key (read from the prompt, stdin or --passfile) instead of the
    /// password; works without coffer.conf.
    #[arg(long, conflicts_with_all = ["identity", "keyfile"])]
    pub masterkey: bool,
    /// Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH
    /// private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key
    /// asks for its passphrase, or takes it from --passfile or --extpass.
    #[arg(long, value_name = "FILE", conflicts_with = "keyfile")]
    pub identity: Option<PathBuf>,
    /// Open with a key file (its bytes, e.g. on a USB stick) instead of the password.
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<PathBuf>,
    /// Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault
    /// (an older config put back, or another vault's), and remember this config instead.
    #[arg(long)]
    pub accept_config_change: bool,
}

/// `mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// The encrypted vault.
    pub cipherdir: PathBuf,
    /// Where the plaintext view appears (an existing, empty directory).
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
    /// Stay in the foreground (logs go to stderr).
    #[arg(short, long)]
    pub fg: bool,
    /// Mount read-only.
    #[arg(long)]
    pub ro: bool,
    /// Let other users see the mount (needs root or user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    pub allow_other: bool,
    /// Allow mounting over a non-empty directory.
    #[arg(long)]
    pub nonempty: bool,
    /// Honour setuid bits (default: nosuid).
    #[arg(long)]
    pub suid: bool,
    /// Honour device nodes (default: nodev).
    #[arg(long)]
    pub dev: bool,
    /// When reads update access times, as the mount(8) options of the same names.
    #[arg(long, value_enum, value_name = "MODE", default_value = "relatime")]
    pub atime: AtimeArg,
    /// Never update the access times of directories.
    #[arg(long)]
    pub nodiratime: bool,
    /// Let the kernel keep names, attributes, listings and file pages up to 30 s, dropping
    /// each when a watch of CIPHERDIR sees it change: `auto` where CIPHERDIR can be watched
    /// (not on NFS, SMB, 9p, overlayfs or a FUSE mount such as sshfs or rclone), `on`
    /// everywhere, `off` for 1 s timeouts.
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub kernel_cache: KernelCacheArg,
    /// What watches CIPHERDIR for the kernel cache: `auto` uses fanotify where the kernel
    /// allows it (its events name the process that made them, so the mount's own changes are
    /// told exactly), else inotify; `inotify` always uses inotify.
    #[arg(long, value_enum, value_name = "WATCHER", default_value = "auto")]
    pub watcher: WatcherArg,
    /// Let the kernel gather writes in its page cache and send them merged, later (faster
    /// for many small writes). Costs: a full disk shows as an error at fsync or close, not at
    /// write, and while a file is open here the kernel keeps its own size of it, and its
    /// unsent pages overwrite a sync client's in-place rewrite. Off by default.
    #[arg(long)]
    pub writeback_cache: bool,
    /// Unmount after this long without any filesystem request (e.g. 90s, 30m, 2h).
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::duration::parse)]
    pub idle: Option<std::time::Duration>,
    /// Write the log to FILE (default: syslog in the background, stderr with --fg).
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Internal: set by `coffer mount` on the background process it starts.
    #[arg(long, hide = true)]
    pub daemon_child: bool,
}

/// `unmount`.
#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mountpoint.
    pub mountpoint: PathBuf,
}

/// `passwd`.
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
    /// Read the new password from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "new_extpass")]
    pub new_passfile: Option<PathBuf>,
    /// Run CMD and use the first line of its stdout as the new password.
    #[arg(long, value_name = "CMD")]
    pub new_extpass: Option<String>,
    /// TESTS ONLY: re-wrap with the cheapest password KDF (see `init --insecure-fast-kdf`).
    #[arg(long)]
    pub insecure_fast_kdf: bool,
}

/// `key`.
#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub cmd: KeyCmd,
}

/// `key` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Show the key slots: IDs and kinds without unlocking (--public), or with their labels,
    /// dates and recipients after an unlock.
    List(KeyListArgs),
    /// Add a key slot: a password, a key file, an age recipient or an SSH public key.
    Add(KeyAddArgs),
    /// Remove a key slot by ID or label (never the last one).
    Remove(KeyRemoveArgs),
    /// Merge a sync client's conflict copies of coffer.conf (two replicas changed key slots at
    /// once) by slot ID: every slot either side has, minus those either side removed.
    Merge(KeyMergeArgs),
}

/// `key merge`.
#[derive(Debug, Args)]
pub struct KeyMergeArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    #[command(flatten)]
    pub unlock: KeyUnlockArgs,
}

/// How `key` commands unlock (a password by default).
#[derive(Debug, Args, Clone, Default)]
pub struct KeyUnlockArgs {
    #[command(flatten)]
    pub secret: SecretArgs,
    /// Read the config from FILE instead of CIPHERDIR/coffer.conf.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Unlock with an age identity file or an SSH private key instead of the password (a
    /// protected SSH key's passphrase: asked, or from --passfile / --extpass).
    #[arg(long, value_name = "FILE", conflicts_with = "unlock_keyfile")]
    pub identity: Option<PathBuf>,
    /// Unlock with a key file instead of the password.
    #[arg(long, value_name = "FILE")]
    pub unlock_keyfile: Option<PathBuf>,
    /// Open even if coffer.conf lacks the newest key epoch this machine has seen.
    #[arg(long)]
    pub accept_config_change: bool,
}

impl KeyUnlockArgs {
    /// As the options every opening command takes.
    pub fn open_args(&self) -> OpenArgs {
        OpenArgs {
            secret: self.secret.clone(),
            config: self.config.clone(),
            masterkey: false,
            identity: self.identity.clone(),
            keyfile: self.unlock_keyfile.clone(),
            accept_config_change: self.accept_config_change,
        }
    }
}

/// `key list`.
#[derive(Debug, Args)]
pub struct KeyListArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    /// Show slot IDs and kinds only, without unlocking.
    #[arg(long)]
    pub public: bool,
    #[command(flatten)]
    pub unlock: KeyUnlockArgs,
}

/// `key add`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("slot").required(true).args(["password", "keyfile", "recipient", "recipient_file"])))]
pub struct KeyAddArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    /// Add a password slot (the new password is asked twice, or read from --new-passfile).
    #[arg(long)]
    pub password: bool,
    /// Add a key-file slot for FILE (any file of at least 16 random bytes).
    #[arg(long, value_name = "FILE")]
    pub keyfile: Option<PathBuf>,
    /// Add a slot for an age recipient (age1…, age1yubikey1…) or an SSH public key line.
    #[arg(long, value_name = "RECIPIENT")]
    pub recipient: Option<String>,
    /// Add a slot for the recipient in FILE (e.g. ~/.ssh/id_ed25519.pub).
    #[arg(long, value_name = "FILE")]
    pub recipient_file: Option<PathBuf>,
    /// A name for the slot, shown by `key list` after an unlock and accepted by `key remove`.
    #[arg(long, value_name = "NAME")]
    pub label: Option<String>,
    /// Read the new password from the first line of FILE (with --password).
    #[arg(long, value_name = "FILE", requires = "password")]
    pub new_passfile: Option<PathBuf>,
    /// TESTS ONLY: the new password slot gets the cheapest KDF.
    #[arg(long)]
    pub insecure_fast_kdf: bool,
    #[command(flatten)]
    pub unlock: KeyUnlockArgs,
}

/// `key remove`.
#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    /// The slot's ID (8 hex digits, from `key list`) or label.
    pub slot: String,
    /// Start a rekey at once (`coffer rekey`), so that the removed slot's holder is cut off
    /// from new writes; `coffer rekey --finish` then forgets the old key.
    #[arg(long)]
    pub rekey: bool,
    #[command(flatten)]
    pub unlock: KeyUnlockArgs,
}

/// `rekey`.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The vault (or a PLAINDIR with a reverse-mode config).
    pub cipherdir: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
    /// Forget the older key epochs' keys (refused while anything is still under them).
    #[arg(long)]
    pub finish: bool,
}

/// `stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The mounted vault.
    pub cipherdir: PathBuf,
}

/// `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    /// Read the config from FILE instead of CIPHERDIR/coffer.conf.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `cat`.
#[derive(Debug, Args)]
pub struct CatArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    /// Plaintext path of the file inside the vault (e.g. `docs/a.txt`).
    pub path: OsString,
    #[command(flatten)]
    pub open: OpenArgs,
}

/// `export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    /// Where the plain tree is written (created if missing; must be empty unless --force).
    pub outdir: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
    /// Export into a non-empty OUTDIR (existing files with the same names make it fail).
    #[arg(long)]
    pub force: bool,
}

/// `fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    #[command(flatten)]
    pub open: OpenArgs,
    /// Fix the safe cases (never deletes readable data).
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `encrypt-name` / `decrypt-name`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The vault.
    pub cipherdir: PathBuf,
    /// The path to translate (plaintext for encrypt-name, backing for decrypt-name), relative to
    /// the vault root.
    pub path: OsString,
    #[command(flatten)]
    pub open: OpenArgs,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// `gen-docs`.
#[derive(Debug, Args)]
pub struct GenDocsArgs {
    /// The repository root (man/ and completions/ are written under it).
    pub root: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_an_example() {
        for sub in Cli::command().get_subcommands().filter(|s| !s.is_hide_set()) {
            let after = sub.get_after_help().map(|s| s.to_string()).unwrap_or_default();
            assert!(
                after.contains("Example:\n  coffer "),
                "{} has no example",
                sub.get_name()
            );
        }
    }
}
