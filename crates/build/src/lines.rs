//! From source text to logical lines: parser directives, comments, line
//! continuations and heredoc bodies, with every byte mapped back to its line
//! and column so that errors point at the source.

use serde::Serialize;

use crate::error::{Located, Position, SyntaxError};

/// The parser directives at the top of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directives {
    /// `# syntax=` (the frontend image BuildKit would use; recorded only).
    pub syntax: Option<String>,
    /// `# escape=`: `\` (the default) or `` ` ``.
    pub escape: char,
    /// `# check=` (lint configuration; recorded, otherwise ignored).
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// One instruction's text after continuations are joined, with the source
/// position of each of its bytes.
#[derive(Debug, Clone)]
pub(crate) struct LogicalLine {
    pub text: String,
    positions: Vec<Position>,
    /// The last source line the instruction occupies.
    pub end_line: u32,
}

impl LogicalLine {
    /// The source position of byte `offset` of the text (the end of the text
    /// maps to just after its last character).
    pub fn position(&self, offset: usize) -> Position {
        if let Some(p) = self.positions.get(offset) {
            return *p;
        }
        match self.positions.last() {
            Some(p) => Position::new(p.line, p.column + 1),
            None => Position::new(self.end_line, 1),
        }
    }
}

/// Splits text into lines, accepting `\n` and `\r\n`, dropping a leading BOM.
pub(crate) fn split_lines(source: &str) -> Vec<&str> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let mut lines: Vec<&str> = source
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// Reads the directives at the top of the file. They end at the first line
/// that is not a known `# name=value` comment.
pub(crate) fn parse_directives(lines: &[&str]) -> Result<Directives, Located> {
    let mut d = Directives::default();
    let mut seen_escape = false;
    for (i, line) in lines.iter().enumerate() {
        let Some((name, value)) = directive(line) else {
            break;
        };
        let pos = Position::new(i as u32 + 1, 1);
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "escape" => {
                if seen_escape {
                    return Err(Located::at(pos, SyntaxError::DuplicateDirective(lower)));
                }
                seen_escape = true;
                d.escape = match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(Located::at(pos, SyntaxError::BadEscape(other.to_string())));
                    }
                };
            }
            "syntax" => {
                if d.syntax.is_some() {
                    return Err(Located::at(pos, SyntaxError::DuplicateDirective(lower)));
                }
                d.syntax = Some(value.to_string());
            }
            "check" => {
                if d.check.is_some() {
                    return Err(Located::at(pos, SyntaxError::DuplicateDirective(lower)));
                }
                d.check = Some(value.to_string());
            }
            _ => break,
        }
    }
    Ok(d)
}

/// `# name = value` → (name, value); `None` when the line is not of that shape.
fn directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let name_len = rest
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphabetic() || (*i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let value = rest.trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((name, value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Pulls logical lines and heredoc bodies from the source lines in order.
pub(crate) struct LineReader<'a> {
    lines: Vec<&'a str>,
    next: usize,
    escape: char,
}

impl<'a> LineReader<'a> {
    pub fn new(lines: Vec<&'a str>, escape: char) -> Self {
        LineReader {
            lines,
            next: 0,
            escape,
        }
    }

    /// The number of the last line read (1-based; 0 before any).
    pub fn line_number(&self) -> u32 {
        self.next as u32
    }

    /// The next instruction's text, skipping comments and blank lines and
    /// joining continuation lines (comment and blank lines inside a
    /// continuation are skipped, as BuildKit does).
    pub fn next_logical(&mut self) -> Option<LogicalLine> {
        loop {
            let raw = *self.lines.get(self.next)?;
            self.next += 1;
            let number = self.next as u32;
            if is_comment(raw) || raw.trim().is_empty() {
                continue;
            }
            let mut out = LogicalLine {
                text: String::new(),
                positions: Vec::new(),
                end_line: number,
            };
            let trimmed = raw.trim_start();
            let skipped_chars = raw[..raw.len() - trimmed.len()].chars().count() as u32;
            let mut continues = self.push(&mut out, trimmed, number, skipped_chars);
            while continues {
                let Some(raw) = self.lines.get(self.next).copied() else {
                    break;
                };
                self.next += 1;
                let number = self.next as u32;
                if is_comment(raw) || raw.trim().is_empty() {
                    continue;
                }
                out.end_line = number;
                continues = self.push(&mut out, raw, number, 0);
            }
            let trimmed_len = out.text.trim_end().len();
            out.text.truncate(trimmed_len);
            out.positions.truncate(trimmed_len);
            if out.text.trim().is_empty() {
                continue;
            }
            return Some(out);
        }
    }

    /// Appends one physical line; returns whether it ends with a continuation.
    fn push(&self, out: &mut LogicalLine, text: &str, number: u32, first_column: u32) -> bool {
        let without_ws = text.trim_end_matches([' ', '\t']);
        let (body, continues) = match without_ws.strip_suffix(self.escape) {
            Some(body) => (body, true),
            None => (text, false),
        };
        let mut column = first_column;
        for ch in body.chars() {
            column += 1;
            out.text.push(ch);
            for _ in 0..ch.len_utf8() {
                out.positions.push(Position::new(number, column));
            }
        }
        continues
    }

    /// Reads a heredoc body up to the line equal to `delimiter` (after
    /// stripping leading tabs when `strip_tabs`). `None` if the file ends first.
    pub fn read_heredoc(&mut self, delimiter: &str, strip_tabs: bool) -> Option<String> {
        let mut body = String::new();
        loop {
            let raw = *self.lines.get(self.next)?;
            self.next += 1;
            let line = if strip_tabs {
                raw.trim_start_matches('\t')
            } else {
                raw
            };
            if line == delimiter {
                return Some(body);
            }
            body.push_str(line);
            body.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logical(src: &str) -> Vec<String> {
        let mut r = LineReader::new(split_lines(src), '\\');
        let mut out = Vec::new();
        while let Some(l) = r.next_logical() {
            out.push(l.text);
        }
        out
    }

    #[test]
    fn continuations_skip_comments_and_blank_lines() {
        let src = "RUN a \\\n# comment\n\n  b \\\n   \n  c\nCMD x\n";
        assert_eq!(logical(src), vec!["RUN a   b   c", "CMD x"]);
    }

    #[test]
    fn positions_follow_continuations() {
        let mut r = LineReader::new(split_lines("  RUN a \\\n    bb\n"), '\\');
        let l = r.next_logical().expect("line");
        assert_eq!(l.position(0), Position::new(1, 3));
        let off = l.text.find("bb").expect("bb");
        assert_eq!(l.position(off), Position::new(2, 5));
        assert_eq!(l.end_line, 2);
    }

    #[test]
    fn directives_stop_at_first_other_line() {
        let lines =
            split_lines("# syntax=docker/dockerfile:1\n# escape=`\n\n# check=skip=all\nFROM x\n");
        let d = parse_directives(&lines).expect("directives");
        assert_eq!(d.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(d.escape, '`');
        assert_eq!(d.check, None);
    }

    #[test]
    fn unknown_directive_ends_directives() {
        let lines = split_lines("# foo=bar\n# escape=`\nFROM x\n");
        assert_eq!(parse_directives(&lines).expect("ok").escape, '\\');
    }

    #[test]
    fn heredoc_body_with_tab_stripping() {
        let mut r = LineReader::new(split_lines("RUN <<-EOF\n\techo hi\n\tEOF\nCMD x\n"), '\\');
        r.next_logical();
        assert_eq!(r.read_heredoc("EOF", true).as_deref(), Some("echo hi\n"));
        assert_eq!(r.next_logical().map(|l| l.text).as_deref(), Some("CMD x"));
    }
}
