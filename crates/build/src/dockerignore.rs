//! `.dockerignore`: its pattern syntax and matcher (pure).
//!
//! Patterns follow Go's `filepath.Match` (`*`, `?`, `[a-z]`, `[^a]`, `\`
//! escapes) plus `**` for any number of directories; `!` makes an exception;
//! comments start with `#`; each pattern is cleaned (`.`/`..` resolved,
//! leading and trailing slashes dropped). The last matching pattern wins, and
//! a pattern that matches a parent directory matches everything under it.

/// Why a `.dockerignore` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerignoreError {
    /// a pattern Go's `filepath.Match` would reject
    #[error(".dockerignore:{line}: bad pattern {pattern:?}: {reason}")]
    BadPattern {
        /// 1-based line of the pattern
        line: u32,
        /// the pattern as written
        pattern: String,
        /// what is wrong
        reason: String,
    },
}

impl DockerignoreError {
    /// A bad `.dockerignore` is invalid input.
    pub fn kind(&self) -> kontti_core::ErrorKind {
        kontti_core::ErrorKind::Invalid
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: any run of characters other than `/`.
    Star,
    /// `**/` or `**` in the middle: any number of whole directories, `(.*/)?`.
    Dirs,
    /// `**` at the end: anything.
    Rest,
    /// `[...]`: one character (not `/`) in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    exception: bool,
    tokens: Vec<Token>,
}

impl Pattern {
    /// Compiles a cleaned pattern (without `!`).
    pub fn new(text: &str) -> Result<Pattern, String> {
        Ok(Pattern {
            text: text.to_string(),
            exception: false,
            tokens: compile(text)?,
        })
    }

    /// The cleaned pattern text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is a `!` exception.
    pub fn is_exception(&self) -> bool {
        self.exception
    }

    /// Whether the whole of `path` (slash-separated, relative) matches.
    pub fn matches(&self, path: &str) -> bool {
        matches(&self.tokens, path)
    }
}

/// A parsed `.dockerignore`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dockerignore {
    patterns: Vec<Pattern>,
}

impl Dockerignore {
    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<Dockerignore, DockerignoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let bad = |reason: String| DockerignoreError::BadPattern {
                line: i as u32 + 1,
                pattern: raw.to_string(),
                reason,
            };
            if body.is_empty() {
                return Err(bad("an exception needs a pattern after '!'".into()));
            }
            let mut cleaned = clean_path(body);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let mut pattern = Pattern::new(&cleaned).map_err(bad)?;
            pattern.exception = exception;
            patterns.push(pattern);
        }
        Ok(Dockerignore { patterns })
    }

    /// The patterns in file order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether any pattern is a `!` exception.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `path` (relative to the context, slash-separated) is excluded:
    /// the last pattern matching it or one of its parent directories decides.
    pub fn is_excluded(&self, path: &str) -> bool {
        let path = clean_path(path);
        let path: Vec<char> = path.trim_start_matches('/').chars().collect();
        let mut excluded = false;
        for p in &self.patterns {
            // An exclusion cannot change an excluded path, nor an exception an included one.
            if p.exception != excluded {
                continue;
            }
            // One pass answers for the path and each of its parent directories (the prefixes
            // that end before a '/'), instead of a pass per parent.
            let ends = match_prefixes(&p.tokens, &path);
            if ends[path.len()] || (0..path.len()).any(|k| path[k] == '/' && ends[k]) {
                excluded = !p.exception;
            }
        }
        excluded
    }

    /// Whether a walker must look inside an excluded directory: only when an
    /// exception pattern starts with the directory's path (as Docker does).
    pub fn may_include_under(&self, dir: &str) -> bool {
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        self.patterns
            .iter()
            .any(|p| p.exception && format!("{}/", p.text).starts_with(&prefix))
    }
}

/// Go's `filepath.Clean` for slash-separated paths.
pub fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                tokens.push(if i >= chars.len() {
                    Token::Rest
                } else {
                    Token::Dirs
                });
            }
            '*' => tokens.push(Token::Star),
            '?' => tokens.push(Token::One),
            '\\' => tokens.push(Token::Literal(chars.get(i).copied().map_or('\\', |n| {
                i += 1;
                n
            }))),
            '[' => {
                let (token, next) = class(&chars, i)?;
                tokens.push(token);
                i = next;
            }
            c => tokens.push(Token::Literal(c)),
        }
    }
    Ok(tokens)
}

/// Parses a class after its `[`; returns the token and the index after `]`.
fn class(chars: &[char], mut i: usize) -> Result<(Token, usize), String> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let item = |i: &mut usize| -> Result<char, String> {
        match chars.get(*i) {
            Some('\\') => {
                let c = chars
                    .get(*i + 1)
                    .copied()
                    .ok_or("'\\' at the end of a character class")?;
                *i += 2;
                Ok(c)
            }
            Some(&c) if c != ']' && c != '-' => {
                *i += 1;
                Ok(c)
            }
            Some(c) => Err(format!("unexpected {c:?} in a character class")),
            None => Err("unterminated character class (missing ']')".to_string()),
        }
    };
    loop {
        if chars.get(i) == Some(&']') && !ranges.is_empty() {
            return Ok((Token::Class { negated, ranges }, i + 1));
        }
        let lo = item(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') {
            i += 1;
            item(&mut i)?
        } else {
            lo
        };
        if hi < lo {
            return Err(format!("empty range {lo}-{hi} in a character class"));
        }
        ranges.push((lo, hi));
    }
}

/// Matches tokens against the whole text, in O(tokens × text) time.
fn matches(tokens: &[Token], text: &str) -> bool {
    let s: Vec<char> = text.chars().collect();
    match_prefixes(tokens, &s)[s.len()]
}

/// For every `k` in `0..=s.len()`, whether the tokens match the whole of
/// `s[..k]`, in O(tokens × text) time.
fn match_prefixes(tokens: &[Token], s: &[char]) -> Vec<bool> {
    let n = s.len();
    // prev[j]: whether the tokens before the current one match s[..j].
    let mut prev: Vec<bool> = (0..=n).map(|j| j == 0).collect();
    let mut cur = vec![false; n + 1];
    for token in tokens {
        // seen: whether prev[j'] holds for some j' < j (then j' <= j once updated).
        let mut seen = false;
        for j in 0..=n {
            // The character the token would consume to end at j.
            let ch = j.checked_sub(1).map(|i| s[i]);
            let one = |pred: &dyn Fn(char) -> bool| {
                ch.is_some_and(|c| c != '/' && pred(c)) && prev[j - 1]
            };
            cur[j] = match token {
                Token::Literal(c) => ch == Some(*c) && prev[j - 1],
                Token::One => one(&|_| true),
                Token::Class { negated, ranges } => {
                    one(&|c| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated)
                }
                Token::Star => prev[j] || (ch.is_some_and(|c| c != '/') && cur[j - 1]),
                Token::Rest => {
                    seen |= prev[j];
                    seen
                }
                Token::Dirs => {
                    let ends_dirs = ch == Some('/') && seen;
                    seen |= prev[j];
                    prev[j] || ends_dirs
                }
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        Pattern::new(pattern).expect("pattern").matches(path)
    }

    #[test]
    fn go_filepath_match() {
        assert!(m("*.go", "main.go"));
        assert!(!m("*.go", "cmd/main.go"));
        assert!(m("a?c", "abc") && !m("a?c", "a/c"));
        assert!(m("[a-c]x", "bx") && !m("[a-c]x", "dx"));
        assert!(m("[^a-c]x", "dx") && !m("[^a-c]x", "ax"));
        assert!(m("\\*", "*") && !m("\\*", "x"));
        assert!(m("a*b*c", "axxbyyc") && !m("a*b*c", "axxbyy"));
    }

    #[test]
    fn double_star() {
        assert!(m("**/*.go", "main.go"));
        assert!(m("**/*.go", "a/b/main.go"));
        assert!(m("a/**/b", "a/b") && m("a/**/b", "a/x/y/b") && !m("a/**/b", "a/xb"));
        assert!(m("a/**", "a/x/y") && !m("a/**", "b/x"));
        assert!(m("**", "anything/at/all"));
    }

    #[test]
    fn bad_patterns() {
        assert!(Pattern::new("[a-").is_err());
        assert!(Pattern::new("[]").is_err());
        assert!(Pattern::new("[z-a]").is_err());
        let e = Dockerignore::parse("ok\n[oops\n").expect_err("bad");
        assert!(
            e.to_string()
                .starts_with(".dockerignore:2: bad pattern \"[oops\"")
        );
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean_path("./a//b/../c/"), "a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("../x"), "../x");
        assert_eq!(clean_path("a/.."), ".");
    }

    #[test]
    fn rules_and_exceptions() {
        let ig = Dockerignore::parse(
            "# comment\n  *.log  \n/build/\n./docs/../tmp\n!important.log\nnode_modules\n**/*.bak\n!keep/**/*.bak\n",
        )
        .expect("parse");
        assert!(ig.is_excluded("a.log"));
        assert!(!ig.is_excluded("important.log"));
        assert!(!ig.is_excluded("sub/a.log"));
        assert!(ig.is_excluded("build") && ig.is_excluded("build/out/x.o"));
        assert!(ig.is_excluded("tmp/x"));
        assert!(ig.is_excluded("node_modules/pkg/index.js"));
        assert!(ig.is_excluded("x/y/z.bak") && !ig.is_excluded("keep/a/z.bak"));
        assert!(!ig.is_excluded("src/main.rs"));
        assert!(ig.may_include_under("keep"));
        assert!(!ig.may_include_under("node_modules"));
    }

    #[test]
    fn last_match_wins() {
        let ig = Dockerignore::parse("*\n!src\nsrc/secret\n").expect("parse");
        assert!(ig.is_excluded("README"));
        assert!(!ig.is_excluded("src/main.rs"));
        assert!(ig.is_excluded("src/secret"));
    }

    #[test]
    fn parents_in_one_pass_agree_with_each_parent_alone() {
        let paths = [
            "a",
            "a/b",
            "a/b/c.go",
            "x/a/b",
            "a/x/y/b/z",
            "ab/c",
            "a/.b/c",
            "é/ü/c",
        ];
        for pattern in [
            "a", "a/b", "*", "*/b", "a/*", "**/b", "a/**/b", "a/**", "**", "?/b", "[a-c]/*",
            "[^a]*", "*.go", "**/*.go", "a*/?", "é/*",
        ] {
            let p = Pattern::new(pattern).expect("pattern");
            let ig = Dockerignore::parse(pattern).expect("parse");
            for path in paths {
                let parents = path.match_indices('/').map(|(i, _)| &path[..i]);
                let each = p.matches(path) || parents.clone().any(|d| p.matches(d));
                assert_eq!(ig.is_excluded(path), each, "{pattern} {path}");
            }
        }
        // A long pattern against a deep path: the parents are not matched one by one (this took
        // seconds when they were).
        let ig = Dockerignore::parse(&format!("{}b", "*a".repeat(300))).expect("parse");
        assert!(!ig.is_excluded(&"a/".repeat(300)));
    }

    #[test]
    fn lone_bang_is_an_error() {
        assert!(Dockerignore::parse("!\n").is_err());
    }
}
