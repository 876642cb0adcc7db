# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_coffer_global_optspecs
    string join \n v/verbose h/help V/version
end

function __fish_coffer_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_coffer_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_coffer_using_subcommand
    set -l cmd (__fish_coffer_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c coffer -n "__fish_coffer_needs_command" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_needs_command" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_needs_command" -s V -l version -d 'Print version'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "init" -d 'Create a new vault in an empty directory and print its recovery key'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "mount" -d 'Mount a vault; returns once the mount is ready (or failed)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "unmount" -d 'Unmount a coffer mount (fusermount3 -u, or umount2 as root)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "passwd" -d 'Change the password (re-wraps the master key; the data is not re-encrypted)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "rekey" -d 'Start a new key epoch and re-encrypt everything under it; `--finish` forgets the old keys'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "key" -d 'List, add and remove the vault\'s key slots: passwords, key files, age and SSH keys'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "info" -d 'Show the vault\'s config version, flags, KDF parameters and long-name limit (no secrets)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "stats" -d 'Print how many FUSE requests of each kind this machine\'s mount of CIPHERDIR has served (JSON): what a workload costs in round trips to the daemon'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "cat" -d 'Decrypt one file of a vault to stdout (no mount needed)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "export" -d 'Decrypt a whole vault into a plain directory tree (no mount needed)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "fsck" -d 'Check every name, block, symlink, xattr and sidecar of a vault (no mount needed)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "reverse" -d 'Mount a read-only encrypted view of a plain directory (reverse mode, for backups)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "encrypt-name" -d 'Print the backing (encrypted) path of a plaintext path (support tool)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "decrypt-name" -d 'Print the plaintext path of a backing path relative to CIPHERDIR (support tool)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "gen-docs" -d 'Write the man pages and completion scripts into a directory (used by scripts/gen-docs)'
complete -c coffer -n "__fish_coffer_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coffer -n "__fish_coffer_using_subcommand init" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand init" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand init" -l config -d 'Keep the config (the wrapped master key) in FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand init" -l long-name-limit -l longname-max -d 'Encoded names longer than N bytes are stored as hashed long names (48..=205; e.g. 143 for eCryptfs homes and some sync clients)' -r
complete -c coffer -n "__fish_coffer_using_subcommand init" -l name-encoding -d 'How encrypted names are spelled: base64url (shortest) or base32 (for case-insensitive backends such as some Windows/macOS sync targets)' -r -f -a "base64url\t'Unpadded base64url'
base32\t'Unpadded upper-case base32'"
complete -c coffer -n "__fish_coffer_using_subcommand init" -l config-version -d 'The config version to write: 2 (key epochs, per-file keys; docs/FORMAT.md §15; the default) or 1 (one master key for the vault\'s life; read by every coffer). Reverse configs are always version 1' -r
complete -c coffer -n "__fish_coffer_using_subcommand init" -l recipient -d 'Make the vault for an age recipient (age1…) or an SSH public key (ssh-ed25519 …, ssh-rsa …) instead of a password; repeatable. No password slot is made; the recovery key is printed as always' -r
complete -c coffer -n "__fish_coffer_using_subcommand init" -l recipient-file -d 'Like --recipient, read from FILE (an SSH .pub file, or age recipients one per line)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand init" -l case-insensitive -d 'Same as --name-encoding base32: encrypted names that survive a case-insensitive backend'
complete -c coffer -n "__fish_coffer_using_subcommand init" -s q -l quiet -d 'Do not print the recovery key and its warning'
complete -c coffer -n "__fish_coffer_using_subcommand init" -l insecure-fast-kdf -d 'TESTS ONLY: use the cheapest password KDF (Argon2id m=8 KiB, t=1). A vault made this way falls to password guessing quickly; never use it for real data'
complete -c coffer -n "__fish_coffer_using_subcommand init" -l reverse -d 'Reverse mode: CIPHERDIR is the plain directory to show encrypted (`coffer reverse`); the config goes to CIPHERDIR/.coffer.reverse.conf (or --config) and nothing else is written'
complete -c coffer -n "__fish_coffer_using_subcommand init" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l atime -d 'When reads update access times, as the mount(8) options of the same names' -r -f -a "noatime\t'Never update access times'
relatime\t'Update the access time when it is older than the modification or change time, or a day old (the kernel\'s default)'
strictatime\t'Update the access time on every read'"
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l kernel-cache -d 'Let the kernel keep names, attributes, listings and file pages up to 30 s, dropping each when a watch of CIPHERDIR sees it change: `auto` where CIPHERDIR can be watched (not on NFS, SMB, 9p, overlayfs or a FUSE mount such as sshfs or rclone), `on` everywhere, `off` for 1 s timeouts' -r -f -a "auto\t'On where CIPHERDIR can be watched'
on\t'On everywhere'
off\t'Off: 1 s timeouts'"
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l watcher -d 'What watches CIPHERDIR for the kernel cache: `auto` uses fanotify where the kernel allows it (its events name the process that made them, so the mount\'s own changes are told exactly), else inotify; `inotify` always uses inotify' -r -f -a "auto\t'fanotify where the kernel allows it (Linux 5.13 and later), else inotify'
inotify\t'inotify only'"
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l idle -d 'Unmount after this long without any filesystem request (e.g. 90s, 30m, 2h)' -r
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l log -d 'Write the log to FILE (default: syslog in the background, stderr with --fg)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -s f -l fg -d 'Stay in the foreground (logs go to stderr)'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l ro -d 'Mount read-only'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l allow-other -d 'Let other users see the mount (needs root or user_allow_other in /etc/fuse.conf)'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l nonempty -d 'Allow mounting over a non-empty directory'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l suid -d 'Honour setuid bits (default: nosuid)'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l dev -d 'Honour device nodes (default: nodev)'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l nodiratime -d 'Never update the access times of directories'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l writeback-cache -d 'Let the kernel gather writes in its page cache and send them merged, later (faster for many small writes). Costs: a full disk shows as an error at fsync or close, not at write, and while a file is open here the kernel keeps its own size of it, and its unsent pages overwrite a sync client\'s in-place rewrite. Off by default'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -l daemon-child -d 'Internal: set by `coffer mount` on the background process it starts'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand mount" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c coffer -n "__fish_coffer_using_subcommand unmount" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand unmount" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l new-passfile -d 'Read the new password from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l new-extpass -d 'Run CMD and use the first line of its stdout as the new password' -r
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -l insecure-fast-kdf -d 'TESTS ONLY: re-wrap with the cheapest password KDF (see `init --insecure-fast-kdf`)'
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand passwd" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -l finish -d 'Forget the older key epochs\' keys (refused while anything is still under them)'
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand rekey" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand key; and not __fish_seen_subcommand_from list add remove merge help" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand key; and not __fish_seen_subcommand_from list add remove merge help" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand key; and not __fish_seen_subcommand_from list add remove merge help" -f -a "list" -d 'Show the key slots: IDs and kinds without unlocking (--public), or with their labels, dates and recipients after an unlock'
complete -c coffer -n "__fish_coffer_using_subcommand key; and not __fish_seen_subcommand_from list add remove merge help" -f -a "add" -d 'Add a key slot: a password, a key file, an age recipient or an SSH public key'
complete -c coffer -n "__fish_coffer_using_subcommand key; and not __fish_seen_subcommand_from list add remove merge help" -f -a "remove" -d 'Remove a key slot by ID or label (never the last one)'
complete -c coffer -n "__fish_coffer_using_subcommand key; and not __fish_seen_subcommand_from list add remove merge help" -f -a "merge" -d 'Merge a sync client\'s conflict copies of coffer.conf (two replicas changed key slots at once) by slot ID: every slot either side has, minus those either side removed'
complete -c coffer -n "__fish_coffer_using_subcommand key; and not __fish_seen_subcommand_from list add remove merge help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -l identity -d 'Unlock with an age identity file or an SSH private key instead of the password (a protected SSH key\'s passphrase: asked, or from --passfile / --extpass)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -l unlock-keyfile -d 'Unlock with a key file instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -l public -d 'Show slot IDs and kinds only, without unlocking'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l keyfile -d 'Add a key-file slot for FILE (any file of at least 16 random bytes)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l recipient -d 'Add a slot for an age recipient (age1…, age1yubikey1…) or an SSH public key line' -r
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l recipient-file -d 'Add a slot for the recipient in FILE (e.g. ~/.ssh/id_ed25519.pub)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l label -d 'A name for the slot, shown by `key list` after an unlock and accepted by `key remove`' -r
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l new-passfile -d 'Read the new password from the first line of FILE (with --password)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l identity -d 'Unlock with an age identity file or an SSH private key instead of the password (a protected SSH key\'s passphrase: asked, or from --passfile / --extpass)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l unlock-keyfile -d 'Unlock with a key file instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l password -d 'Add a password slot (the new password is asked twice, or read from --new-passfile)'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l insecure-fast-kdf -d 'TESTS ONLY: the new password slot gets the cheapest KDF'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -l identity -d 'Unlock with an age identity file or an SSH private key instead of the password (a protected SSH key\'s passphrase: asked, or from --passfile / --extpass)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -l unlock-keyfile -d 'Unlock with a key file instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -l rekey -d 'Start a rekey at once (`coffer rekey`), so that the removed slot\'s holder is cut off from new writes; `coffer rekey --finish` then forgets the old key'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -l identity -d 'Unlock with an age identity file or an SSH private key instead of the password (a protected SSH key\'s passphrase: asked, or from --passfile / --extpass)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -l unlock-keyfile -d 'Unlock with a key file instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from merge" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "list" -d 'Show the key slots: IDs and kinds without unlocking (--public), or with their labels, dates and recipients after an unlock'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "add" -d 'Add a key slot: a password, a key file, an age recipient or an SSH public key'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "remove" -d 'Remove a key slot by ID or label (never the last one)'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "merge" -d 'Merge a sync client\'s conflict copies of coffer.conf (two replicas changed key slots at once) by slot ID: every slot either side has, minus those either side removed'
complete -c coffer -n "__fish_coffer_using_subcommand key; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coffer -n "__fish_coffer_using_subcommand info" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand info" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand info" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand stats" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand stats" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand cat" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand cat" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand cat" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand cat" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand cat" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand cat" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand cat" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand cat" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand cat" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand export" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand export" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand export" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand export" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand export" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand export" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand export" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand export" -l force -d 'Export into a non-empty OUTDIR (existing files with the same names make it fail)'
complete -c coffer -n "__fish_coffer_using_subcommand export" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand export" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l repair -d 'Fix the safe cases (never deletes readable data)'
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -l json -d 'Print the report as JSON on stdout'
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand fsck" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l exclude -d 'Hide paths matching PATTERN (repeatable): `*`, `?`, `**`; without `/` it matches a name at any depth, with `/` the path from PLAINDIR' -r
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l idle -d 'Unmount after this long without any filesystem request (e.g. 90s, 30m, 2h)' -r
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l log -d 'Write the log to FILE (default: syslog in the background, stderr with --fg)' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -s f -l fg -d 'Stay in the foreground (logs go to stderr)'
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l allow-other -d 'Let other users see the mount (needs root or user_allow_other in /etc/fuse.conf)'
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -l daemon-child -d 'Internal: set by `coffer reverse` on the background process it starts'
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand reverse" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand encrypt-name" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -l passfile -d 'Read the password (or recovery key) from the first line of FILE' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -l extpass -d 'Run CMD (via sh -c) and use the first line of its stdout as the password' -r
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -l config -d 'Read the config from FILE instead of CIPHERDIR/coffer.conf' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -l identity -d 'Open with an age identity file (AGE-SECRET-KEY-1…, age-plugin identities) or an SSH private key (ed25519 or RSA) instead of the password. A passphrase-protected SSH key asks for its passphrase, or takes it from --passfile or --extpass' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -l keyfile -d 'Open with a key file (its bytes, e.g. on a USB stick) instead of the password' -r -F
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -l masterkey -d 'Open with the recovery key (read from the prompt, stdin or --passfile) instead of the password; works without coffer.conf'
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -l accept-config-change -d 'Open even if coffer.conf lacks the newest key epoch this machine has seen for the vault (an older config put back, or another vault\'s), and remember this config instead'
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand decrypt-name" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand completions" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand completions" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand gen-docs" -s v -l verbose -d 'More log output (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c coffer -n "__fish_coffer_using_subcommand gen-docs" -s h -l help -d 'Print help'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "init" -d 'Create a new vault in an empty directory and print its recovery key'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "mount" -d 'Mount a vault; returns once the mount is ready (or failed)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "unmount" -d 'Unmount a coffer mount (fusermount3 -u, or umount2 as root)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "passwd" -d 'Change the password (re-wraps the master key; the data is not re-encrypted)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "rekey" -d 'Start a new key epoch and re-encrypt everything under it; `--finish` forgets the old keys'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "key" -d 'List, add and remove the vault\'s key slots: passwords, key files, age and SSH keys'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "info" -d 'Show the vault\'s config version, flags, KDF parameters and long-name limit (no secrets)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "stats" -d 'Print how many FUSE requests of each kind this machine\'s mount of CIPHERDIR has served (JSON): what a workload costs in round trips to the daemon'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "cat" -d 'Decrypt one file of a vault to stdout (no mount needed)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "export" -d 'Decrypt a whole vault into a plain directory tree (no mount needed)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "fsck" -d 'Check every name, block, symlink, xattr and sidecar of a vault (no mount needed)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "reverse" -d 'Mount a read-only encrypted view of a plain directory (reverse mode, for backups)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "encrypt-name" -d 'Print the backing (encrypted) path of a plaintext path (support tool)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "decrypt-name" -d 'Print the plaintext path of a backing path relative to CIPHERDIR (support tool)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "completions" -d 'Print a shell completion script to stdout'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "gen-docs" -d 'Write the man pages and completion scripts into a directory (used by scripts/gen-docs)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and not __fish_seen_subcommand_from init mount unmount passwd rekey key info stats cat export fsck reverse encrypt-name decrypt-name completions gen-docs help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "list" -d 'Show the key slots: IDs and kinds without unlocking (--public), or with their labels, dates and recipients after an unlock'
complete -c coffer -n "__fish_coffer_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "add" -d 'Add a key slot: a password, a key file, an age recipient or an SSH public key'
complete -c coffer -n "__fish_coffer_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "remove" -d 'Remove a key slot by ID or label (never the last one)'
complete -c coffer -n "__fish_coffer_using_subcommand help; and __fish_seen_subcommand_from key" -f -a "merge" -d 'Merge a sync client\'s conflict copies of coffer.conf (two replicas changed key slots at once) by slot ID: every slot either side has, minus those either side removed'
