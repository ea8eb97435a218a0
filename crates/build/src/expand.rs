//! Variable substitution as the Dockerfile reference specifies: `$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?message}`, `${VAR?message}`, with quote removal and the escape
//! character (`\$` is a literal dollar). The executor calls [`expand_word`]
//! with the variables in effect at each step.

use std::collections::{BTreeMap, HashMap};

/// Why a word cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// a quote that is never closed
    #[error("unexpected end of statement while looking for matching {0}")]
    UnterminatedQuote(char),
    /// `${` without its `}`
    #[error("missing '}}' in substitution ${{{0}")]
    MissingBrace(String),
    /// `${}` or `${` followed by something that is not a name
    #[error("bad substitution: ${{{0}")]
    BadSubstitution(String),
    /// `${VAR%x}` and other modifiers that are not supported
    #[error("unsupported modifier ({modifier}) in substitution ${{{name}}}")]
    UnsupportedModifier {
        /// the variable
        name: String,
        /// the modifier character
        modifier: char,
    },
    /// `${VAR:?message}` with VAR unset (or empty)
    #[error("{name}: {message}")]
    Required {
        /// the variable
        name: String,
        /// the message given after `?`
        message: String,
    },
    /// more nesting than any real Dockerfile uses
    #[error("substitution nested more than {0} levels deep")]
    TooDeep(usize),
}

const MAX_DEPTH: usize = 32;

/// Where variable values come from.
pub trait Variables {
    /// The value of `name`, or `None` when it is not set.
    fn var(&self, name: &str) -> Option<&str>;
}

impl Variables for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Variables for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Variables for [(String, String)] {
    fn var(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Expands variables in `word` and removes quotes, as BuildKit does for
/// ENV, LABEL, WORKDIR, USER, COPY and the other instructions that support
/// substitution. Unset variables expand to the empty string.
pub fn expand_word<V: Variables + ?Sized>(
    word: &str,
    escape: char,
    vars: &V,
) -> Result<String, ExpandError> {
    let chars: Vec<char> = word.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
        escape,
        vars,
        depth: 0,
    };
    lexer.process(None)
}

/// Whether `word` contains anything [`expand_word`] would change.
pub fn needs_expansion(word: &str, escape: char) -> bool {
    word.contains(['$', '\'', '"', escape])
}

struct Lexer<'a, V: Variables + ?Sized> {
    chars: &'a [char],
    pos: usize,
    escape: char,
    vars: &'a V,
    depth: usize,
}

impl<V: Variables + ?Sized> Lexer<'_, V> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes up to `stop` (not consumed; `None`: to the end).
    fn process(&mut self, stop: Option<char>) -> Result<String, ExpandError> {
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                return Ok(out);
            }
            self.pos += 1;
            match ch {
                '\'' => self.single_quoted(&mut out)?,
                '"' => self.double_quoted(&mut out)?,
                '$' => self.dollar(&mut out)?,
                c if c == self.escape => {
                    if let Some(next) = self.next() {
                        out.push(next);
                    }
                }
                c => out.push(c),
            }
        }
        Ok(out)
    }

    fn single_quoted(&mut self, out: &mut String) -> Result<(), ExpandError> {
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedQuote('\'')),
                Some('\'') => return Ok(()),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self, out: &mut String) -> Result<(), ExpandError> {
        loop {
            match self.next() {
                None => return Err(ExpandError::UnterminatedQuote('"')),
                Some('"') => return Ok(()),
                Some('$') => self.dollar(out)?,
                Some(c) if c == self.escape => match self.peek() {
                    None => {}
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    Some(_) => out.push(c),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            while let Some(c) = self.peek().filter(|c| c.is_ascii_digit()) {
                self.pos += 1;
                name.push(c);
            }
            return name;
        }
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            self.pos += 1;
            name.push(c);
        }
        name
    }

    /// After a `$`.
    fn dollar(&mut self, out: &mut String) -> Result<(), ExpandError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                out.push('$');
            } else if let Some(v) = self.vars.var(&name) {
                out.push_str(v);
            }
            return Ok(());
        }
        self.pos += 1;
        let name = self.name();
        let rest: String = self.chars[self.pos..].iter().take(20).collect();
        if name.is_empty() {
            return Err(ExpandError::BadSubstitution(rest));
        }
        let value = self.vars.var(&name).map(str::to_string);
        let Some(ch) = self.next() else {
            return Err(ExpandError::MissingBrace(name));
        };
        if ch == '}' {
            out.push_str(value.as_deref().unwrap_or(""));
            return Ok(());
        }
        let colon = ch == ':';
        let modifier = if colon {
            self.next()
                .ok_or_else(|| ExpandError::MissingBrace(name.clone()))?
        } else {
            ch
        };
        if !matches!(modifier, '-' | '+' | '?') {
            return Err(ExpandError::UnsupportedModifier { name, modifier });
        }
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExpandError::TooDeep(MAX_DEPTH));
        }
        let word = self.process(Some('}'))?;
        self.depth -= 1;
        if self.next() != Some('}') {
            return Err(ExpandError::MissingBrace(name));
        }
        let set = match &value {
            Some(v) => !(colon && v.is_empty()),
            None => false,
        };
        match modifier {
            '-' => out.push_str(if set {
                value.as_deref().unwrap_or("")
            } else {
                &word
            }),
            '+' => {
                if set {
                    out.push_str(&word);
                }
            }
            _ => {
                if !set {
                    let message = if word.is_empty() {
                        "is not allowed to be unset".to_string()
                    } else {
                        word
                    };
                    return Err(ExpandError::Required { name, message });
                }
                out.push_str(value.as_deref().unwrap_or(""));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("A", "alpha"), ("E", ""), ("P", "/usr/bin")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn x(word: &str) -> String {
        expand_word(word, '\\', &vars()).expect("expands")
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(x("$A-${A}_$P/x"), "alpha-alpha_/usr/bin/x");
        assert_eq!(x("$UNSET."), ".");
        assert_eq!(x("cost $ 5"), "cost $ 5");
    }

    #[test]
    fn modifiers() {
        assert_eq!(x("${UNSET:-def}"), "def");
        assert_eq!(x("${E:-def}"), "def");
        assert_eq!(x("${E-def}"), "");
        assert_eq!(x("${A:-def}"), "alpha");
        assert_eq!(x("${A:+set}"), "set");
        assert_eq!(x("${E:+set}"), "");
        assert_eq!(x("${E+set}"), "set");
        assert_eq!(x("${UNSET:-${A:-no}}"), "alpha");
    }

    #[test]
    fn required_fails_with_message() {
        let err = expand_word("${NOPE:?must be set}", '\\', &vars()).expect_err("error");
        assert_eq!(err.to_string(), "NOPE: must be set");
    }

    #[test]
    fn escapes_and_quotes() {
        assert_eq!(x(r"\$A"), "$A");
        assert_eq!(x(r#""$A b""#), "alpha b");
        assert_eq!(x("'$A b'"), "$A b");
        assert_eq!(x(r#""a\"b\x""#), r#"a"b\x"#);
        assert_eq!(expand_word("`$A", '`', &vars()).expect("ok"), "$A");
        assert_eq!(expand_word(r"C:\dir", '`', &vars()).expect("ok"), r"C:\dir");
    }

    #[test]
    fn errors() {
        let v = vars();
        assert_eq!(
            expand_word("${A", '\\', &v),
            Err(ExpandError::MissingBrace("A".into()))
        );
        assert!(matches!(
            expand_word("${A%x}", '\\', &v),
            Err(ExpandError::UnsupportedModifier { .. })
        ));
        assert!(matches!(
            expand_word("${}", '\\', &v),
            Err(ExpandError::BadSubstitution(_))
        ));
        assert_eq!(
            expand_word("'abc", '\\', &v),
            Err(ExpandError::UnterminatedQuote('\''))
        );
        let deep = "${A:-".repeat(100) + &"}".repeat(100);
        assert_eq!(
            expand_word(&deep, '\\', &v),
            Err(ExpandError::TooDeep(MAX_DEPTH))
        );
    }
}
