//! Splitting instruction arguments into words the way BuildKit does, keeping
//! each word's byte offset so that errors can point at it.

/// A word and the byte offset where it starts in the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub offset: usize,
}

/// Splits on whitespace outside quotes. Quotes and escape characters stay in
/// the words (they are removed later, by expansion). Used by ENV, LABEL, ARG.
pub(crate) fn split_keep_quotes(text: &str, escape: char) -> Vec<Word> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, ch)) = chars.next() {
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
            start = i;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    words.push(Word {
                        text: std::mem::take(&mut word),
                        offset: start,
                    });
                    in_word = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                }
                if ch == escape {
                    match chars.next() {
                        Some((_, next)) => {
                            word.push(ch);
                            word.push(next);
                        }
                        None => break,
                    }
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    match chars.next() {
                        Some((_, next)) => {
                            word.push(ch);
                            word.push(next);
                        }
                        None => break,
                    }
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if in_word && !word.is_empty() {
        words.push(Word {
            text: word,
            offset: start,
        });
    }
    words
}

/// Splits on runs of whitespace, ignoring quotes (BuildKit does this for COPY,
/// ADD, EXPOSE, VOLUME and FROM in shell form).
pub(crate) fn split_whitespace(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start: Option<usize> = None;
    for (i, ch) in text.char_indices() {
        match (ch.is_whitespace(), start) {
            (true, Some(s)) => {
                words.push(Word {
                    text: text[s..i].to_string(),
                    offset: s,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(Word {
            text: text[s..].to_string(),
            offset: s,
        });
    }
    words
}

/// The leading `--flag[=value]` words of an instruction's arguments, and the
/// offset where the remaining arguments start. Quotes in flag words are
/// removed and `\` escapes the next character; a lone `--` ends the flags.
pub(crate) fn extract_flags(text: &str) -> (Vec<Word>, usize) {
    let bytes = text.as_bytes();
    let mut flags = Vec::new();
    let mut i = 0;
    loop {
        while i < text.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= text.len() {
            return (flags, text.len());
        }
        if !text[i..].starts_with("--") {
            return (flags, i);
        }
        let start = i;
        let mut word = String::new();
        let mut quote: Option<char> = None;
        let mut chars = text[i..].char_indices();
        let mut end = text.len();
        while let Some((j, ch)) = chars.next() {
            match quote {
                None if ch.is_whitespace() => {
                    end = start + j;
                    break;
                }
                None if ch == '\'' || ch == '"' => quote = Some(ch),
                Some(q) if ch == q => quote = None,
                _ if ch == '\\' => {
                    if let Some((_, next)) = chars.next() {
                        word.push(next);
                    }
                }
                _ => word.push(ch),
            }
        }
        i = end;
        if word == "--" {
            return (flags, i);
        }
        flags.push(Word {
            text: word,
            offset: start,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(w: Vec<Word>) -> Vec<String> {
        w.into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn keep_quotes_split() {
        let w = split_keep_quotes(r#"A="a b" B=c\ d C='x y' "#, '\\');
        assert_eq!(texts(w), vec![r#"A="a b""#, r"B=c\ d", "C='x y'"]);
    }

    #[test]
    fn flags_then_rest() {
        let text = r#"--mount=type=cache,target="/a b" --network=none  echo hi"#;
        let (flags, rest) = extract_flags(text);
        assert_eq!(
            texts(flags),
            vec!["--mount=type=cache,target=/a b", "--network=none"]
        );
        assert_eq!(&text[rest..], "echo hi");
    }

    #[test]
    fn double_dash_ends_flags() {
        let (flags, rest) = extract_flags("--link -- --x y");
        assert_eq!(texts(flags), vec!["--link"]);
        assert_eq!(rest, 9);
    }

    #[test]
    fn whitespace_split_offsets() {
        let w = split_whitespace("  a  bc ");
        assert_eq!(
            w[1],
            Word {
                text: "bc".into(),
                offset: 5
            }
        );
    }
}
