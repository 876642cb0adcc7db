//! docs/FORMAT.md names only code that exists: every backticked token that looks like a code
//! name (`a::b` paths, snake_case and CamelCase identifiers) must occur as a word in src/, name
//! a test function in tests/ (the document cites tests as evidence), or be listed with a reason
//! in docs/format-tokens-allowlist.txt.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DOC: &str = "docs/FORMAT.md";
const ALLOWLIST: &str = "docs/format-tokens-allowlist.txt";
/// The allowlist is for names outside src/ that the document must still use; keep it short.
const ALLOWLIST_MAX: usize = 15;

/// Code spans of a Markdown text outside fenced blocks, with the 1-based line each starts on.
/// A span opens with a run of backticks and closes at the next run of the same length; it may
/// cross a line break (FORMAT.md wraps its prose).
fn code_spans(text: &str) -> Vec<(usize, String)> {
    let mut prose = String::new();
    let mut in_fence = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            prose.push('\n');
            continue;
        }
        if !in_fence {
            prose.push_str(line);
        }
        prose.push('\n');
    }
    let b = prose.as_bytes();
    let run_at = |i: usize| b[i..].iter().take_while(|&&c| c == b'`').count();
    let mut spans = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        match b[i] {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b'`' => {
                let n = run_at(i);
                let start = i + n;
                let mut j = start;
                let close = loop {
                    if j >= b.len() {
                        break None;
                    }
                    if b[j] == b'`' {
                        let m = run_at(j);
                        if m == n {
                            break Some(j);
                        }
                        j += m;
                    } else {
                        j += 1;
                    }
                };
                match close {
                    Some(j) => {
                        let content = prose[start..j].replace('\n', " ");
                        spans.push((line, content.trim().to_string()));
                        line += prose[i..j].matches('\n').count();
                        i = j + n;
                    }
                    None => i = start,
                }
            }
            _ => i += 1,
        }
    }
    spans
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_snake(s: &str) -> bool {
    is_ident(s)
        && s.contains('_')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.contains(|c: char| c.is_ascii_uppercase())
        && s.split('_').all(|part| !part.is_empty())
}

fn is_camel(s: &str) -> bool {
    is_ident(s)
        && !s.contains('_')
        && s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars().any(|c| c.is_ascii_lowercase())
        && s.chars().skip(1).any(|c| c.is_ascii_uppercase())
}

/// The words a token must find in src/ if it looks like a code name: each segment of an `a::b`
/// path, or the identifier itself (a trailing `()` is dropped).
fn code_words(span: &str) -> Option<Vec<&str>> {
    let name = span.strip_suffix("()").unwrap_or(span);
    if name.contains("::") {
        let segments: Vec<&str> = name.split("::").collect();
        return segments.iter().all(|s| is_ident(s)).then_some(segments);
    }
    (is_snake(name) || is_camel(name)).then(|| vec![name])
}

/// Every identifier-like word in the Rust sources under `dir`.
fn source_words(dir: &Path, words: &mut HashSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_words(&path, words);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for w in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if !w.is_empty() {
                    words.insert(w.to_string());
                }
            }
        }
    }
}

/// Names of the functions defined in the Rust files of tests/ (`fn NAME`).
fn test_fns(dir: &Path, names: &mut HashSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            test_fns(&path, names);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for rest in text.split("fn ").skip(1) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.insert(name);
            }
        }
    }
}

/// The allowlist: `token  # reason` per line; blank lines and `#` lines are comments.
fn allowlist() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join(ALLOWLIST)).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (token, reason) = l.split_once('#').unwrap_or((l, ""));
            (token.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

#[test]
fn every_code_name_in_format_md_exists_in_src() {
    let doc = std::fs::read_to_string(Path::new(ROOT).join(DOC)).unwrap();
    let mut src = HashSet::new();
    source_words(&Path::new(ROOT).join("src"), &mut src);
    let mut tests = HashSet::new();
    test_fns(&Path::new(ROOT).join("tests"), &mut tests);
    let allowed = allowlist();
    let allowed_names: HashSet<&str> = allowed.iter().map(|(t, _)| t.as_str()).collect();

    // token → the lines it is on, for tokens that name code missing from src/.
    let mut missing: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (line, span) in code_spans(&doc) {
        let Some(words) = code_words(&span) else { continue };
        seen.insert(span.clone());
        let exists = words.iter().all(|w| src.contains(*w)) || tests.contains(span.as_str());
        if allowed_names.contains(span.as_str()) || exists {
            continue;
        }
        missing.entry(span).or_default().push(line);
    }

    let mut problems: Vec<String> = Vec::new();
    let mut by_line: Vec<(usize, &str)> = missing
        .iter()
        .flat_map(|(t, lines)| lines.iter().map(move |&l| (l, t.as_str())))
        .collect();
    by_line.sort();
    for (line, token) in by_line {
        problems.push(format!("{DOC}:{line}: `{token}` is not in src/ (nor a test in tests/)"));
    }
    for (token, reason) in &allowed {
        if reason.is_empty() {
            problems.push(format!("{ALLOWLIST}: `{token}` has no reason after `#`"));
        }
        if !seen.contains(token) {
            problems.push(format!("{ALLOWLIST}: `{token}` is no longer in {DOC}; remove it"));
        }
    }
    if allowed.len() >= ALLOWLIST_MAX {
        problems.push(format!(
            "{ALLOWLIST}: {} entries; keep it under {ALLOWLIST_MAX} (fix the document instead)",
            allowed.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{DOC} names code that does not exist (rename it in the document, or add it to {ALLOWLIST} \
         with a reason):\n{}",
        problems.join("\n")
    );
}

#[test]
fn spans_and_names_are_recognized() {
    let spans = code_spans("a `CryptFile::open_block` b ``x `y` z``\n```\n`fenced`\n```\nc `wrapped\nspan` `d`\n");
    assert_eq!(
        spans,
        vec![
            (1, "CryptFile::open_block".to_string()),
            (1, "x `y` z".to_string()),
            (5, "wrapped span".to_string()),
            (6, "d".to_string()),
        ]
    );
    assert_eq!(
        code_words("format::conflict::is_marker"),
        Some(vec!["format", "conflict", "is_marker"])
    );
    assert_eq!(code_words("Config::canonical()"), Some(vec!["Config", "canonical"]));
    assert_eq!(code_words("repair_tail"), Some(vec!["repair_tail"]));
    assert_eq!(code_words("KdfParams"), Some(vec!["KdfParams"]));
    for not_code in [
        "coffer.conf",
        "base64url",
        "EIO",
        "O_NOFOLLOW",
        "00 01",
        "kdf.m_kib",
        "HASH.long",
        "Makefile",
    ] {
        assert_eq!(code_words(not_code), None, "{not_code}");
    }
}
