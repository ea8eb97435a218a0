//! Which parts of which instruction Docker substitutes variables in: the
//! executor calls [`Instruction::expanded`] with the [`StepEnv`] in effect at
//! each step, and uses (and hashes into the cache key) the result.
//!
//! [`StepEnv`]: crate::StepEnv

use crate::ast::{
    CopySource, FileCopy, Heredoc, Instruction, InstructionNode, KeyValue, Mount, Run,
};
use crate::error::{ParseError, SyntaxError};
use crate::expand::{ExpandError, Variables, expand_word};

impl InstructionNode {
    /// [`Instruction::expanded`], with an error that names the file, line
    /// and column of the instruction (`Dockerfile:7:1: NAME: required`).
    pub fn expanded_in<V: Variables + ?Sized>(
        &self,
        vars: &V,
        escape: char,
        file: &str,
    ) -> Result<Instruction, ParseError> {
        self.instruction
            .expanded(vars, escape)
            .map_err(|e| ParseError {
                file: file.to_string(),
                position: Some(self.span.start),
                error: SyntaxError::Expansion(e),
            })
    }
}

impl Instruction {
    /// The instruction with variables substituted where Docker does it: ADD,
    /// COPY (sources, destination, `--from`, `--chown`, `--chmod`, heredoc
    /// bodies with unquoted delimiters), ENV, LABEL, WORKDIR, USER, EXPOSE,
    /// VOLUME, STOPSIGNAL, and RUN `--mount` options. RUN, CMD, ENTRYPOINT,
    /// SHELL and HEALTHCHECK commands are left to the shell; ARG defaults
    /// are expanded by [`StepEnv::apply`](crate::StepEnv::apply); ONBUILD
    /// triggers are expanded when they run in a later build.
    pub fn expanded<V: Variables + ?Sized>(
        &self,
        vars: &V,
        escape: char,
    ) -> Result<Instruction, ExpandError> {
        let x = |w: &String| expand_word(w, escape, vars);
        let opt = |w: &Option<String>| w.as_ref().map(|w| expand_word(w, escape, vars)).transpose();
        Ok(match self {
            Instruction::Copy(c) => Instruction::Copy(expand_copy(c, vars, escape)?),
            Instruction::Add(c) => Instruction::Add(expand_copy(c, vars, escape)?),
            Instruction::Env(pairs) => Instruction::Env(expand_pairs(pairs, vars, escape)?),
            Instruction::Label(pairs) => Instruction::Label(expand_pairs(pairs, vars, escape)?),
            Instruction::Workdir(w) => Instruction::Workdir(x(w)?),
            Instruction::User(w) => Instruction::User(x(w)?),
            Instruction::StopSignal(w) => Instruction::StopSignal(x(w)?),
            Instruction::Volume(list) => {
                Instruction::Volume(list.iter().map(x).collect::<Result<_, _>>()?)
            }
            Instruction::Expose(list) => {
                let mut ports = Vec::new();
                for p in list {
                    ports.extend(x(p)?.split_whitespace().map(str::to_string));
                }
                Instruction::Expose(ports)
            }
            Instruction::Run(r) => {
                let mut mounts = Vec::with_capacity(r.mounts.len());
                for m in &r.mounts {
                    mounts.push(Mount {
                        target: opt(&m.target)?,
                        source: opt(&m.source)?,
                        from: opt(&m.from)?,
                        id: opt(&m.id)?,
                        env: opt(&m.env)?,
                        ..m.clone()
                    });
                }
                Instruction::Run(Run {
                    mounts,
                    ..r.clone()
                })
            }
            other => other.clone(),
        })
    }
}

fn expand_pairs<V: Variables + ?Sized>(
    pairs: &[KeyValue],
    vars: &V,
    escape: char,
) -> Result<Vec<KeyValue>, ExpandError> {
    pairs
        .iter()
        .map(|kv| {
            Ok(KeyValue {
                key: expand_word(&kv.key, escape, vars)?,
                value: expand_word(&kv.value, escape, vars)?,
            })
        })
        .collect()
}

fn expand_copy<V: Variables + ?Sized>(
    c: &FileCopy,
    vars: &V,
    escape: char,
) -> Result<FileCopy, ExpandError> {
    let x = |w: &String| expand_word(w, escape, vars);
    let opt = |w: &Option<String>| w.as_ref().map(|w| expand_word(w, escape, vars)).transpose();
    let mut sources = Vec::with_capacity(c.sources.len());
    for s in &c.sources {
        sources.push(match s {
            CopySource::Path(p) => CopySource::Path(x(p)?),
            CopySource::Heredoc(h) if h.expand => CopySource::Heredoc(Heredoc {
                content: expand_heredoc(&h.content, vars),
                ..h.clone()
            }),
            CopySource::Heredoc(h) => CopySource::Heredoc(h.clone()),
        });
    }
    Ok(FileCopy {
        sources,
        dest: x(&c.dest)?,
        from: opt(&c.from)?,
        chown: opt(&c.chown)?,
        chmod: opt(&c.chmod)?,
        exclude: c.exclude.iter().map(x).collect::<Result<_, _>>()?,
        ..c.clone()
    })
}

/// Expands `$VAR` and `${VAR}` in a heredoc body, keeping quotes and every
/// other character as written; `\$` keeps the dollar literal. Substitutions
/// with modifiers are left as written (the body is data, not a word).
pub(crate) fn expand_heredoc<V: Variables + ?Sized>(content: &str, vars: &V) -> String {
    let mut out = String::with_capacity(content.len());
    let mut rest = content;
    while let Some(i) = rest.find(['$', '\\']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("\\$") {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix('\\') {
            out.push('\\');
            rest = after;
            continue;
        }
        let body = &rest[1..];
        let (name, consumed) = if let Some(inner) = body.strip_prefix('{') {
            match inner.find('}') {
                Some(end) if is_name(&inner[..end]) => (&inner[..end], end + 2),
                _ => ("", 0),
            }
        } else {
            let len = body
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(body.len());
            (&body[..len], len)
        };
        if name.is_empty() {
            out.push('$');
            rest = body;
            continue;
        }
        out.push_str(vars.var(name).unwrap_or(""));
        rest = &body[consumed..];
    }
    out.push_str(rest);
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::parser::{ParseOptions, parse};

    #[test]
    fn expansion_errors_carry_the_position() {
        let df = parse(
            "FROM a\n  WORKDIR ${DIR:?must be set}\n",
            &ParseOptions::default(),
        )
        .expect("parses");
        let node = &df.stages[0].instructions[0];
        let err = node
            .expanded_in(&BTreeMap::new(), '\\', "Dockerfile")
            .expect_err("unset");
        assert_eq!(err.to_string(), "Dockerfile:2:3: DIR: must be set");
    }

    #[test]
    fn heredoc_keeps_quotes() {
        let vars: BTreeMap<String, String> = [("N".to_string(), "kontti".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            expand_heredoc("echo \"hi $N\" '${N}' \\$N $ ${N:-x}\n", &vars),
            "echo \"hi kontti\" 'kontti' $N $ ${N:-x}\n"
        );
    }
}
