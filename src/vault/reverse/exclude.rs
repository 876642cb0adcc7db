//! `--exclude PATTERN`: glob-ish patterns over relative plaintext paths (bytes).
//!
//! - `*` matches any run of bytes within one path component, `?` one byte, `**` as a whole
//!   component matches zero or more components; everything else is literal.
//! - A pattern without `/` matches the last component at any depth (`*.tmp`, `.cache`).
//! - A pattern with `/` matches the whole relative path from the root (a leading `/` is allowed).
//! - A trailing `/` is ignored. An excluded directory hides everything below it.

/// A set of exclude patterns.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Components of the pattern.
    comps: Vec<Vec<u8>>,
    /// Matches the last component only.
    basename: bool,
}

impl Excludes {
    /// Parses patterns; empty ones (after trimming `/`) are refused.
    pub fn new<S: AsRef<[u8]>>(patterns: &[S]) -> Result<Self, String> {
        let mut out = Vec::new();
        for p in patterns {
            let raw = p.as_ref();
            let trimmed: &[u8] = trim_slashes(raw);
            if trimmed.is_empty() {
                return Err(format!("empty exclude pattern `{}`", String::from_utf8_lossy(raw)));
            }
            let anchored = raw.first() == Some(&b'/');
            let basename = !anchored && !trimmed.contains(&b'/');
            let comps = trimmed
                .split(|&c| c == b'/')
                .filter(|c| !c.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
            out.push(Pattern { comps, basename });
        }
        Ok(Excludes { patterns: out })
    }

    /// Whether relative path `rel` (`a/b/c`, no leading `/`) is excluded by itself (ancestors
    /// are checked when they are reached).
    pub fn is_excluded(&self, rel: &[u8]) -> bool {
        if rel.is_empty() {
            return false;
        }
        let comps: Vec<&[u8]> = rel.split(|&c| c == b'/').filter(|c| !c.is_empty()).collect();
        self.patterns.iter().any(|p| {
            if p.basename {
                comps.last().is_some_and(|last| glob(&p.comps[0], last))
            } else {
                match_path(&p.comps, &comps)
            }
        })
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

fn trim_slashes(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b'/'] = s {
        s = rest;
    }
    while let [b'/', rest @ ..] = s {
        s = rest;
    }
    s
}

fn match_path(pat: &[Vec<u8>], path: &[&[u8]]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p.as_slice() == b"**" => (0..=path.len()).any(|skip| match_path(rest, &path[skip..])),
        Some((p, rest)) => match path.split_first() {
            Some((c, path_rest)) => glob(p, c) && match_path(rest, path_rest),
            None => false,
        },
    }
}

/// `*` and `?` over one component.
fn glob(pat: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == s[i]) && pat[p] != b'*' {
            p += 1;
            i += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, i));
            p += 1;
        } else if let Some((sp, si)) = star {
            p = sp + 1;
            i = si + 1;
            star = Some((sp, si + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(p: &[&str]) -> Excludes {
        Excludes::new(p).unwrap()
    }

    #[test]
    fn globs() {
        assert!(glob(b"*.tmp", b"a.tmp"));
        assert!(glob(b"*.tmp", b".tmp"));
        assert!(!glob(b"*.tmp", b"a.tmpx"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"ac"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*b*c", b"aXXbYYc"));
        assert!(!glob(b"a*b*c", b"aXXbYY"));
        assert!(glob(b"\xff*", b"\xff\xfe"));
    }

    #[test]
    fn basename_and_anchored() {
        let e = ex(&["*.tmp", "/build", "docs/private/", "src/**/gen", ".cache"]);
        assert!(e.is_excluded(b"x.tmp"));
        assert!(e.is_excluded(b"a/b/x.tmp"));
        assert!(e.is_excluded(b"build"));
        assert!(!e.is_excluded(b"a/build"));
        assert!(e.is_excluded(b"docs/private"));
        assert!(!e.is_excluded(b"docs/public"));
        assert!(e.is_excluded(b"src/gen"));
        assert!(e.is_excluded(b"src/a/b/gen"));
        assert!(!e.is_excluded(b"src/a/b/gen2"));
        assert!(e.is_excluded(b"home/.cache"));
        assert!(!e.is_excluded(b""));
        assert!(Excludes::new(&["/"]).is_err());
        assert!(ex(&[]).is_empty());
    }
}
