//! Generated docs stay in step with the code: man pages and completions in the repo match what
//! `coffer gen-docs` writes, every subcommand's --help has an example, and README.md lists the
//! same exit codes as `coffer --help`.

use crate::support::cli as cli_common;

use cli_common::coffer;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn committed_man_pages_and_completions_are_current() {
    let t = tempfile::tempdir().unwrap();
    let out = coffer(&["gen-docs", t.path().to_str().unwrap()], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for sub in ["man", "completions"] {
        let dir = t.path().join(sub);
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let committed = std::path::Path::new(ROOT).join(sub).join(e.file_name());
            let fresh = std::fs::read(e.path()).unwrap();
            let old = std::fs::read(&committed).unwrap_or_default();
            assert!(fresh == old, "{} is stale: run scripts/gen-docs", committed.display());
            n += 1;
        }
        assert!(n >= 3, "{sub}: only {n} files generated");
    }
}

#[test]
fn every_subcommand_help_has_an_example() {
    for sub in [
        "init",
        "mount",
        "unmount",
        "passwd",
        "info",
        "cat",
        "export",
        "encrypt-name",
        "decrypt-name",
        "completions",
    ] {
        let out = coffer(&[sub, "--help"], None);
        assert_eq!(out.code, 0, "{sub}");
        assert!(
            out.stdout_str().contains("Example:\n  coffer "),
            "{sub} --help has no example"
        );
    }
}

#[test]
fn readme_lists_the_exit_codes_of_help() {
    let help = coffer(&["--help"], None).stdout_str();
    let table = help.split("Exit codes:\n").nth(1).expect("no exit codes in --help");
    let readme = std::fs::read_to_string(std::path::Path::new(ROOT).join("README.md")).unwrap();
    for line in table
        .lines()
        .filter(|l| l.starts_with("  ") && l.trim().chars().next().unwrap().is_ascii_digit())
    {
        let (code, what) = line.trim().split_once("  ").unwrap();
        let row = format!("| {code} | {} ", what.trim());
        assert!(
            readme.contains(&row),
            "README.md lacks the exit-code row starting {row:?}"
        );
    }
}

#[test]
fn completions_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = coffer(&["completions", shell], None);
        assert_eq!(out.code, 0);
        assert!(out.stdout_str().contains("encrypt-name"), "{shell}");
    }
}
