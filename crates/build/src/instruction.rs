//! Parsing one logical line into an instruction (or a FROM line).

use std::time::Duration;

use crate::ast::{
    ArgDecl, CommandForm, CopySource, FileCopy, Healthcheck, HealthcheckCmd, Heredoc, Instruction,
    InstructionNode, KeyValue, Run, Span,
};
use crate::error::{Located, SyntaxError};
use crate::flags::{self, Flags};
use crate::lines::{LineReader, LogicalLine};
use crate::words::{Word, extract_flags, split_keep_quotes, split_whitespace};

/// Every instruction keyword Docker knows.
pub(crate) const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// A FROM line before its variables are expanded.
#[derive(Debug, Clone)]
pub(crate) struct FromLine {
    pub image: Word,
    pub name: Option<Word>,
    pub platform: Option<Word>,
    pub span: Span,
}

/// What one logical line holds.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    From(FromLine),
    Instruction(InstructionNode),
}

/// Parses one logical line; `reader` supplies heredoc bodies.
pub(crate) fn parse_line(
    line: &LogicalLine,
    reader: &mut LineReader<'_>,
    escape: char,
) -> Result<Parsed, Located> {
    LineParser { line, escape }.parse_at(0, Some(reader))
}

struct LineParser<'l> {
    line: &'l LogicalLine,
    escape: char,
}

/// The arguments part of an instruction: text and where it starts.
struct Args<'t> {
    text: &'t str,
    offset: usize,
}

impl LineParser<'_> {
    fn err(&self, offset: usize, error: SyntaxError) -> Located {
        Located::at(self.line.position(offset), error)
    }

    fn keyword_at(&self, start: usize) -> (usize, &str) {
        let text = &self.line.text[start..];
        let kw_start = start + (text.len() - text.trim_start().len());
        let rest = &self.line.text[kw_start..];
        let kw_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        (kw_start, &rest[..kw_len])
    }

    fn parse_at(
        &self,
        start: usize,
        reader: Option<&mut LineReader<'_>>,
    ) -> Result<Parsed, Located> {
        let (kw_offset, keyword) = self.keyword_at(start);
        let upper = keyword.to_ascii_uppercase();
        if !KEYWORDS.contains(&upper.as_str()) {
            return Err(self.err(
                kw_offset,
                SyntaxError::UnknownInstruction {
                    name: keyword.to_string(),
                    suggestion: suggest(&upper),
                },
            ));
        }
        let after_kw = kw_offset + keyword.len();
        let (flag_words, args_rel) = extract_flags(&self.line.text[after_kw..]);
        let flag_words: Vec<Word> = flag_words
            .into_iter()
            .map(|w| Word {
                text: w.text,
                offset: w.offset + after_kw,
            })
            .collect();
        let flags = Flags::parse(&upper, &flag_words).map_err(|(o, e)| self.err(o, e))?;
        let raw_args = &self.line.text[after_kw + args_rel..];
        let trimmed = raw_args.trim_start();
        let args = Args {
            text: trimmed.trim_end(),
            offset: after_kw + args_rel + (raw_args.len() - trimmed.len()),
        };
        let mut span = Span {
            start: self.line.position(kw_offset),
            end_line: self.line.end_line,
        };
        let missing = || self.err(kw_offset, SyntaxError::MissingArguments(upper.clone()));
        if upper == "FROM" {
            return self.from(args, &flags, span, kw_offset);
        }
        let instruction = match upper.as_str() {
            "RUN" => {
                if args.text.is_empty() {
                    return Err(missing());
                }
                let command = self.command(&args)?;
                let heredocs = match (&command, reader) {
                    (CommandForm::Shell(_), Some(reader)) => {
                        let words = split_keep_quotes(args.text, self.escape);
                        let heredocs = self.read_heredocs(&words, args.offset, reader)?;
                        span.end_line = span.end_line.max(reader.line_number());
                        heredocs.into_iter().map(|(_, h)| h).collect()
                    }
                    _ => Vec::new(),
                };
                let mut mounts = Vec::new();
                for m in flags.all("mount") {
                    let value = m.value.as_deref().unwrap_or("");
                    mounts.push(
                        flags::mount(value)
                            .map_err(|e| self.err(m.offset, SyntaxError::BadMount(e)))?,
                    );
                }
                let network = match flags.value("network") {
                    Some(v) => Some(
                        flags::network(v.value.as_deref().unwrap_or(""))
                            .map_err(|reason| self.bad_flag(v.offset, "network", reason))?,
                    ),
                    None => None,
                };
                let security = match flags.value("security") {
                    Some(v) => Some(
                        flags::security(v.value.as_deref().unwrap_or(""))
                            .map_err(|reason| self.bad_flag(v.offset, "security", reason))?,
                    ),
                    None => None,
                };
                Instruction::Run(Run {
                    command,
                    heredocs,
                    mounts,
                    network,
                    security,
                })
            }
            "CMD" | "ENTRYPOINT" => {
                if args.text.is_empty() {
                    return Err(missing());
                }
                let command = self.command(&args)?;
                if upper == "CMD" {
                    Instruction::Cmd(command)
                } else {
                    Instruction::Entrypoint(command)
                }
            }
            "SHELL" => match self.json(&args)? {
                Some(list) if list.is_empty() => return Err(missing()),
                Some(list) => Instruction::Shell(list),
                None if args.text.is_empty() => return Err(missing()),
                None => return Err(self.err(args.offset, SyntaxError::ShellNotJson)),
            },
            "COPY" | "ADD" => {
                let copy = self.copy(&upper, &args, &flags, reader, &mut span, kw_offset)?;
                if upper == "COPY" {
                    Instruction::Copy(copy)
                } else {
                    Instruction::Add(copy)
                }
            }
            "ENV" | "LABEL" => {
                let pairs = self.name_values(&upper, &args, kw_offset)?;
                if upper == "ENV" {
                    Instruction::Env(pairs)
                } else {
                    Instruction::Label(pairs)
                }
            }
            "ARG" => {
                let words = split_keep_quotes(args.text, self.escape);
                if words.is_empty() {
                    return Err(missing());
                }
                let mut decls = Vec::new();
                for w in words {
                    let (name, default) = match w.text.split_once('=') {
                        Some((n, d)) => (n.to_string(), Some(d.to_string())),
                        None => (w.text.clone(), None),
                    };
                    if name.is_empty() {
                        return Err(
                            self.err(args.offset + w.offset, SyntaxError::BlankName("ARG".into()))
                        );
                    }
                    decls.push(ArgDecl { name, default });
                }
                Instruction::Arg(decls)
            }
            "WORKDIR" | "USER" | "STOPSIGNAL" | "MAINTAINER" => {
                if args.text.is_empty() {
                    return Err(missing());
                }
                let value = args.text.to_string();
                match upper.as_str() {
                    "WORKDIR" => Instruction::Workdir(value),
                    "USER" => Instruction::User(value),
                    "STOPSIGNAL" => {
                        if !value.contains('$') && !signal_ok(&value) {
                            return Err(self.err(args.offset, SyntaxError::BadSignal(value)));
                        }
                        Instruction::StopSignal(value)
                    }
                    _ => Instruction::Maintainer(value),
                }
            }
            "EXPOSE" => {
                let words = split_whitespace(args.text);
                if words.is_empty() {
                    return Err(missing());
                }
                for w in &words {
                    if !w.text.contains('$') && !port_ok(&w.text) {
                        return Err(
                            self.err(args.offset + w.offset, SyntaxError::BadPort(w.text.clone()))
                        );
                    }
                }
                Instruction::Expose(words.into_iter().map(|w| w.text).collect())
            }
            "VOLUME" => {
                let list = match self.json(&args)? {
                    Some(list) => list,
                    None => split_whitespace(args.text)
                        .into_iter()
                        .map(|w| w.text)
                        .collect(),
                };
                if list.is_empty() {
                    return Err(missing());
                }
                if list.iter().any(|v| v.trim().is_empty()) {
                    return Err(self.err(args.offset, SyntaxError::EmptyVolume));
                }
                Instruction::Volume(list)
            }
            "HEALTHCHECK" => Instruction::Healthcheck(self.healthcheck(&args, &flags, kw_offset)?),
            "ONBUILD" => {
                if args.text.is_empty() {
                    return Err(missing());
                }
                let (nested_offset, nested) = self.keyword_at(args.offset);
                let nested_upper = nested.to_ascii_uppercase();
                if matches!(nested_upper.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
                    return Err(
                        self.err(nested_offset, SyntaxError::BadOnbuildTrigger(nested_upper))
                    );
                }
                match self.parse_at(args.offset, None)? {
                    Parsed::Instruction(node) => Instruction::Onbuild(Box::new(node)),
                    Parsed::From(_) => {
                        return Err(
                            self.err(nested_offset, SyntaxError::BadOnbuildTrigger("FROM".into()))
                        );
                    }
                }
            }
            _ => return Err(missing()),
        };
        let text = self.line.text[kw_offset..].to_string();
        Ok(Parsed::Instruction(InstructionNode {
            span,
            text,
            instruction,
        }))
    }

    fn bad_flag(&self, offset: usize, flag: &str, reason: String) -> Located {
        self.err(
            offset,
            SyntaxError::BadFlagValue {
                flag: flag.to_string(),
                reason,
            },
        )
    }

    fn from(
        &self,
        args: Args<'_>,
        flags: &Flags,
        span: Span,
        kw_offset: usize,
    ) -> Result<Parsed, Located> {
        let words = split_whitespace(args.text);
        let shift = |w: &Word| Word {
            text: w.text.clone(),
            offset: w.offset + args.offset,
        };
        let (image, name) = match words.as_slice() {
            [image] => (shift(image), None),
            [image, kw, name] if kw.text.eq_ignore_ascii_case("AS") => {
                (shift(image), Some(shift(name)))
            }
            [] => return Err(self.err(kw_offset, SyntaxError::MissingArguments("FROM".into()))),
            _ => {
                return Err(self.err(
                    kw_offset,
                    SyntaxError::ArgumentCount {
                        instruction: "FROM".into(),
                        expected: "either one or three arguments (FROM image [AS name])".into(),
                    },
                ));
            }
        };
        let platform = flags.value("platform").map(|v| Word {
            text: v.value.clone().unwrap_or_default(),
            offset: v.offset,
        });
        Ok(Parsed::From(FromLine {
            image,
            name,
            platform,
            span,
        }))
    }

    /// Exec form when the arguments are a JSON array of strings, else shell form.
    fn command(&self, args: &Args<'_>) -> Result<CommandForm, Located> {
        Ok(match self.json(args)? {
            Some(list) => CommandForm::Exec(list),
            None => CommandForm::Shell(args.text.to_string()),
        })
    }

    /// `Some(list)` for a JSON array of strings; `None` when the text is not
    /// JSON (the caller falls back to shell form, as Docker does); an error
    /// for a JSON array holding anything but strings.
    fn json(&self, args: &Args<'_>) -> Result<Option<Vec<String>>, Located> {
        if !args.text.starts_with('[') {
            return Ok(None);
        }
        match serde_json::from_str::<serde_json::Value>(args.text) {
            Ok(serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(self.err(args.offset, SyntaxError::JsonNotStrings)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            _ => Ok(None),
        }
    }

    fn copy(
        &self,
        keyword: &str,
        args: &Args<'_>,
        flags: &Flags,
        reader: Option<&mut LineReader<'_>>,
        span: &mut Span,
        kw_offset: usize,
    ) -> Result<FileCopy, Located> {
        let (words, json) = match self.json(args)? {
            Some(list) => (
                list.into_iter()
                    .map(|text| Word { text, offset: 0 })
                    .collect::<Vec<_>>(),
                true,
            ),
            None => (split_whitespace(args.text), false),
        };
        let mut heredocs = match (json, reader) {
            (false, Some(reader)) => {
                let found = self.read_heredocs(&words, args.offset, reader)?;
                span.end_line = span.end_line.max(reader.line_number());
                found
            }
            _ => Vec::new(),
        };
        if words.len() < 2 {
            let error = if words.is_empty() {
                SyntaxError::MissingArguments(keyword.to_string())
            } else {
                SyntaxError::ArgumentCount {
                    instruction: keyword.to_string(),
                    expected: "at least two arguments (sources and a destination), but only one was provided"
                        .into(),
                }
            };
            return Err(self.err(kw_offset, error));
        }
        let mut sources = Vec::new();
        let dest_index = words.len() - 1;
        for (i, w) in words.iter().enumerate().take(dest_index) {
            match heredocs.iter().position(|(idx, _)| *idx == i) {
                Some(p) => sources.push(CopySource::Heredoc(heredocs.remove(p).1)),
                None => sources.push(CopySource::Path(w.text.clone())),
            }
        }
        let chmod = flags.value("chmod");
        if let Some(v) = chmod {
            let value = v.value.as_deref().unwrap_or("");
            if !flags::chmod_ok(value) {
                return Err(self.bad_flag(
                    v.offset,
                    "chmod",
                    format!("{value:?} is not an octal or symbolic mode"),
                ));
            }
        }
        let bool_flag = |name: &str| flags.bool(name).map_err(|(o, e)| self.err(o, e));
        Ok(FileCopy {
            sources,
            dest: words[dest_index].text.clone(),
            from: flags.string("from"),
            chown: flags.string("chown"),
            chmod: chmod.and_then(|v| v.value.clone()),
            link: bool_flag("link")?,
            parents: bool_flag("parents")?,
            exclude: flags
                .all("exclude")
                .iter()
                .filter_map(|v| v.value.clone())
                .collect(),
            checksum: flags.string("checksum"),
            keep_git_dir: bool_flag("keep-git-dir")?,
        })
    }

    /// Finds `<<EOF` words and reads their bodies, in order. Returns the
    /// index of each heredoc word with the heredoc.
    fn read_heredocs(
        &self,
        words: &[Word],
        args_offset: usize,
        reader: &mut LineReader<'_>,
    ) -> Result<Vec<(usize, Heredoc)>, Located> {
        let mut found = Vec::new();
        for (i, w) in words.iter().enumerate() {
            let Some((fd, strip_tabs, raw_name)) = heredoc_marker(&w.text) else {
                continue;
            };
            let expand = !raw_name.contains(['\'', '"']);
            let name: String = raw_name
                .chars()
                .filter(|c| !matches!(c, '\'' | '"'))
                .collect();
            if name.is_empty() {
                continue;
            }
            let Some(content) = reader.read_heredoc(&name, strip_tabs) else {
                return Err(self.err(
                    args_offset + w.offset,
                    SyntaxError::UnterminatedHeredoc(name),
                ));
            };
            found.push((
                i,
                Heredoc {
                    name,
                    content,
                    expand,
                    strip_tabs,
                    fd,
                },
            ));
        }
        Ok(found)
    }

    fn name_values(
        &self,
        keyword: &str,
        args: &Args<'_>,
        kw_offset: usize,
    ) -> Result<Vec<KeyValue>, Located> {
        let words = split_keep_quotes(args.text, self.escape);
        let Some(first) = words.first() else {
            return Err(self.err(
                kw_offset,
                SyntaxError::MissingArguments(keyword.to_string()),
            ));
        };
        if !first.text.contains('=') {
            let key_len = args
                .text
                .find(char::is_whitespace)
                .unwrap_or(args.text.len());
            let value = args.text[key_len..].trim();
            if value.is_empty() {
                return Err(self.err(
                    kw_offset,
                    SyntaxError::ArgumentCount {
                        instruction: keyword.to_string(),
                        expected: format!(
                            "two arguments in the form {keyword} NAME VALUE, or NAME=VALUE pairs"
                        ),
                    },
                ));
            }
            return Ok(vec![KeyValue {
                key: args.text[..key_len].to_string(),
                value: value.to_string(),
            }]);
        }
        let mut pairs = Vec::new();
        for w in &words {
            let Some((key, value)) = w.text.split_once('=') else {
                return Err(self.err(
                    args.offset + w.offset,
                    SyntaxError::MissingEquals {
                        instruction: keyword.to_string(),
                        word: w.text.clone(),
                    },
                ));
            };
            if key.is_empty() {
                return Err(self.err(
                    args.offset + w.offset,
                    SyntaxError::BlankName(keyword.to_string()),
                ));
            }
            pairs.push(KeyValue {
                key: key.to_string(),
                value: value.to_string(),
            });
        }
        Ok(pairs)
    }

    fn healthcheck(
        &self,
        args: &Args<'_>,
        flags: &Flags,
        kw_offset: usize,
    ) -> Result<Healthcheck, Located> {
        let words = split_whitespace(args.text);
        let Some(first) = words.first() else {
            return Err(self.err(
                kw_offset,
                SyntaxError::MissingArguments("HEALTHCHECK".into()),
            ));
        };
        if first.text.eq_ignore_ascii_case("NONE") {
            if words.len() > 1 {
                return Err(self.err(
                    args.offset + words[1].offset,
                    SyntaxError::HealthcheckNoneArgs,
                ));
            }
            return Ok(Healthcheck::None);
        }
        if !first.text.eq_ignore_ascii_case("CMD") {
            return Err(self.err(
                args.offset + first.offset,
                SyntaxError::BadHealthcheck(first.text.clone()),
            ));
        }
        let rest = &args.text[first.text.len()..];
        let trimmed = rest.trim_start();
        let cmd_args = Args {
            text: trimmed,
            offset: args.offset + first.text.len() + (rest.len() - trimmed.len()),
        };
        if cmd_args.text.is_empty() {
            return Err(self.err(
                args.offset + first.offset,
                SyntaxError::MissingArguments("HEALTHCHECK CMD".into()),
            ));
        }
        let duration = |name: &str| -> Result<Option<Duration>, Located> {
            let Some(v) = flags.value(name) else {
                return Ok(None);
            };
            let text = v.value.as_deref().unwrap_or("");
            let d = flags::duration(text).ok_or_else(|| {
                self.bad_flag(
                    v.offset,
                    name,
                    format!("{text:?} is not a duration like 30s or 1m30s"),
                )
            })?;
            if !d.is_zero() && d < Duration::from_millis(1) {
                return Err(self.bad_flag(v.offset, name, "cannot be less than 1ms".into()));
            }
            Ok(Some(d))
        };
        let retries = match flags.value("retries") {
            Some(v) => {
                let text = v.value.as_deref().unwrap_or("");
                Some(text.parse::<u32>().map_err(|_| {
                    self.bad_flag(
                        v.offset,
                        "retries",
                        format!("{text:?} is not a non-negative integer"),
                    )
                })?)
            }
            None => None,
        };
        Ok(Healthcheck::Cmd(HealthcheckCmd {
            command: self.command(&cmd_args)?,
            interval: duration("interval")?,
            timeout: duration("timeout")?,
            start_period: duration("start-period")?,
            start_interval: duration("start-interval")?,
            retries,
        }))
    }
}

/// `<<EOF`, `<<-EOF`, `3<<"EOF"` → (fd, strip tabs, raw name).
fn heredoc_marker(word: &str) -> Option<(Option<u32>, bool, &str)> {
    let digits = word
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(word.len());
    let rest = word[digits..].strip_prefix("<<")?;
    let (strip_tabs, name) = match rest.strip_prefix('-') {
        Some(n) => (true, n),
        None => (false, rest),
    };
    if name.is_empty() || name.contains('<') {
        return None;
    }
    let fd = if digits == 0 {
        None
    } else {
        Some(word[..digits].parse().ok()?)
    };
    Some((fd, strip_tabs, name))
}

/// `80`, `80/tcp`, `8000-8010/udp`.
fn port_ok(text: &str) -> bool {
    let (ports, proto) = match text.split_once('/') {
        Some((p, proto)) => (p, proto),
        None => (text, "tcp"),
    };
    if !matches!(proto.to_ascii_lowercase().as_str(), "tcp" | "udp" | "sctp") {
        return false;
    }
    let port = |p: &str| p.parse::<u16>().is_ok();
    match ports.split_once('-') {
        Some((a, b)) => port(a) && port(b) && a.parse::<u16>().ok() <= b.parse::<u16>().ok(),
        None => port(ports),
    }
}

const SIGNALS: [&str; 31] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
    "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
];

/// `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`.
fn signal_ok(text: &str) -> bool {
    if let Ok(n) = text.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        return true;
    }
    let rt = |base: &str, sign: char| {
        name.strip_prefix(base).is_some_and(|r| {
            r.is_empty()
                || r.strip_prefix(sign)
                    .is_some_and(|n| n.parse::<u32>().is_ok_and(|n| n <= 15))
        })
    };
    rt("RTMIN", '+') || rt("RTMAX", '-')
}

/// The known keyword nearest to `name`, if it is close enough to be a typo.
fn suggest(name: &str) -> Option<String> {
    KEYWORDS
        .iter()
        .map(|k| (levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().min(name.len().max(1)))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heredoc_markers() {
        assert_eq!(heredoc_marker("<<EOF"), Some((None, false, "EOF")));
        assert_eq!(heredoc_marker("<<-'END'"), Some((None, true, "'END'")));
        assert_eq!(heredoc_marker("3<<X"), Some((Some(3), false, "X")));
        assert_eq!(heredoc_marker("a<<X"), None);
        assert_eq!(heredoc_marker("<<<X"), None);
    }

    #[test]
    fn ports_and_signals() {
        assert!(port_ok("80") && port_ok("53/udp") && port_ok("8000-8010/tcp"));
        assert!(!port_ok("http") && !port_ok("80/xyz") && !port_ok("70000"));
        assert!(
            signal_ok("SIGTERM") && signal_ok("kill") && signal_ok("9") && signal_ok("SIGRTMIN+3")
        );
        assert!(!signal_ok("SIGFOO") && !signal_ok("0"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("RUNN").as_deref(), Some("RUN"));
        assert_eq!(suggest("COPPY").as_deref(), Some("COPY"));
        assert_eq!(suggest("XYZZYQ"), None);
    }
}
