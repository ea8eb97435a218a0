//! The parser's driver: directives, then logical lines into global ARGs and
//! stages, then FROM lines expanded with the global args and the stage graph
//! checked.

use std::collections::BTreeMap;

use crate::ast::{BaseImage, Dockerfile, Instruction, InstructionNode, Stage};
use crate::error::{Located, ParseError, SyntaxError};
use crate::expand::expand_word;
use crate::instruction::{FromLine, Parsed, parse_line};
use crate::lines::{LineReader, LogicalLine, parse_directives, split_lines};
use crate::scope::{automatic_args, host_platform};
use crate::stages;

/// What a parse needs besides the text.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// The name errors are reported with (`Dockerfile` by default).
    pub file_name: String,
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The platform the build runs on (`BUILDPLATFORM`); the host's by default.
    pub build_platform: Option<String>,
    /// The platform the image is for (`TARGETPLATFORM`, `--platform`); the
    /// build platform by default.
    pub target_platform: Option<String>,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            file_name: "Dockerfile".to_string(),
            build_args: BTreeMap::new(),
            build_platform: None,
            target_platform: None,
        }
    }
}

/// Parses a Dockerfile. Pure: no I/O.
pub fn parse(source: &str, options: &ParseOptions) -> Result<Dockerfile, ParseError> {
    parse_located(source, options).map_err(|e| e.in_file(&options.file_name))
}

struct PendingStage {
    from: FromLine,
    line: LogicalLine,
    instructions: Vec<InstructionNode>,
}

fn parse_located(source: &str, options: &ParseOptions) -> Result<Dockerfile, Located> {
    let lines = split_lines(source);
    let directives = parse_directives(&lines)?;
    let escape = directives.escape;
    let mut reader = LineReader::new(lines, escape);
    let build_platform = options.build_platform.clone().unwrap_or_else(host_platform);
    let target_platform = options
        .target_platform
        .clone()
        .unwrap_or_else(|| build_platform.clone());
    let mut meta_args = automatic_args(&build_platform, &target_platform);
    let mut global_args = Vec::new();
    let mut pending: Vec<PendingStage> = Vec::new();
    let mut saw_instruction = false;
    while let Some(line) = reader.next_logical() {
        saw_instruction = true;
        match parse_line(&line, &mut reader, escape)? {
            Parsed::From(from) => pending.push(PendingStage {
                from,
                line,
                instructions: Vec::new(),
            }),
            Parsed::Instruction(node) => match (pending.last_mut(), &node.instruction) {
                (Some(stage), _) => stage.instructions.push(node),
                (None, Instruction::Arg(decls)) => {
                    for decl in decls {
                        let value = match (options.build_args.get(&decl.name), &decl.default) {
                            (Some(v), _) => Some(v.clone()),
                            (None, Some(d)) => Some(
                                expand_word(d, escape, &meta_args)
                                    .map_err(|e| Located::at(node.span.start, e.into()))?,
                            ),
                            (None, None) => None,
                        };
                        if let Some(v) = value {
                            meta_args.insert(decl.name.clone(), v);
                        }
                        global_args.push(decl.clone());
                    }
                }
                (None, other) => {
                    return Err(Located::at(
                        node.span.start,
                        SyntaxError::NoStage(other.keyword().to_string()),
                    ));
                }
            },
        }
    }
    if pending.is_empty() {
        let error = if saw_instruction {
            SyntaxError::NoFrom
        } else {
            SyntaxError::Empty
        };
        return Err(Located {
            position: None,
            error,
        });
    }

    let mut names: Vec<Option<String>> = Vec::new();
    for p in &pending {
        let Some(word) = &p.from.name else {
            names.push(None);
            continue;
        };
        let name = word.text.to_ascii_lowercase();
        let at = p.line.position(word.offset);
        if !stage_name_ok(&name) {
            return Err(Located::at(
                at,
                SyntaxError::BadStageName(word.text.clone()),
            ));
        }
        if names.iter().flatten().any(|n| *n == name) {
            return Err(Located::at(at, SyntaxError::DuplicateStage(name)));
        }
        names.push(Some(name));
    }

    let mut stages_out = Vec::with_capacity(pending.len());
    for (index, p) in pending.into_iter().enumerate() {
        let image_at = p.line.position(p.from.image.offset);
        let image = expand_word(&p.from.image.text, escape, &meta_args)
            .map_err(|e| Located::at(image_at, e.into()))?;
        if image.is_empty() {
            return Err(Located::at(
                image_at,
                SyntaxError::BlankBase(p.from.image.text.clone()),
            ));
        }
        let platform = match &p.from.platform {
            Some(w) => Some(
                expand_word(&w.text, escape, &meta_args)
                    .map_err(|e| Located::at(p.line.position(w.offset), e.into()))?,
            ),
            None => None,
        };
        let lower = image.to_ascii_lowercase();
        let base = if lower == "scratch" {
            BaseImage::Scratch
        } else if let Some(i) = names
            .iter()
            .position(|n| n.as_deref() == Some(lower.as_str()))
        {
            BaseImage::Stage(i)
        } else {
            BaseImage::Image(image)
        };
        stages_out.push(Stage {
            index,
            name: names[index].clone(),
            base,
            platform,
            span: p.from.span,
            instructions: p.instructions,
            depends_on: Vec::new(),
        });
    }

    let mut dockerfile = Dockerfile {
        directives,
        global_args,
        stages: stages_out,
        meta_args,
        build_args: options.build_args.clone(),
        file_name: options.file_name.clone(),
    };
    stages::resolve_dependencies(&mut dockerfile)?;
    Ok(dockerfile)
}

/// BuildKit's rule: `[a-z][a-z0-9-_.]*` after lower-casing.
fn stage_name_ok(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}
