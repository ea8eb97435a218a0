//! Errors of the Dockerfile parser, reported as `FILE:LINE:COL: message`.

use std::fmt;

use kontti_core::ErrorKind;
use serde::Serialize;

/// A place in the Dockerfile: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Position {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
}

impl Position {
    /// A position from a line and a column.
    pub fn new(line: u32, column: u32) -> Self {
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// What is wrong with a Dockerfile. The messages follow BuildKit's wording where
/// one exists, so that users recognise them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// the file has no instruction at all
    #[error("file with no instructions")]
    Empty,
    /// the file has instructions but no FROM
    #[error("the file has no FROM instruction: nothing to build")]
    NoFrom,
    /// an instruction other than ARG appears before the first FROM
    #[error("{0} is not allowed before the first FROM (no build stage in current context)")]
    NoStage(String),
    /// an instruction name that Docker does not know
    #[error("unknown instruction: {name}{}", suggestion_text(.suggestion))]
    UnknownInstruction {
        /// the name as written
        name: String,
        /// the nearest known instruction, if one is close
        suggestion: Option<String>,
    },
    /// an instruction without its arguments
    #[error("{0} requires at least one argument")]
    MissingArguments(String),
    /// an instruction with a wrong number of arguments
    #[error("{instruction} requires {expected}")]
    ArgumentCount {
        /// the instruction
        instruction: String,
        /// what it needs, e.g. "either one or three arguments"
        expected: String,
    },
    /// a flag the instruction does not accept
    #[error("unknown flag: --{flag} (not valid for {instruction})")]
    UnknownFlag {
        /// the instruction
        instruction: String,
        /// the flag name without dashes
        flag: String,
    },
    /// a flag given twice
    #[error("duplicate flag specified: --{0}")]
    DuplicateFlag(String),
    /// a flag whose value is missing or malformed
    #[error("invalid value for flag --{flag}: {reason}")]
    BadFlagValue {
        /// the flag name without dashes
        flag: String,
        /// what is wrong
        reason: String,
    },
    /// a `--mount` with an unknown type or option
    #[error("invalid --mount: {0}")]
    BadMount(String),
    /// a JSON array holding something other than strings
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// SHELL given in shell form
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    /// ENV or LABEL word without `=`
    #[error(
        "syntax error - can't find = in {word:?}; {instruction} must be of the form: name=value"
    )]
    MissingEquals {
        /// the instruction
        instruction: String,
        /// the word as written
        word: String,
    },
    /// ENV, LABEL or ARG with an empty name
    #[error("{0} names can not be blank")]
    BlankName(String),
    /// a heredoc whose terminating line never comes
    #[error("unterminated heredoc {0:?}: no line {0:?} before the end of the file")]
    UnterminatedHeredoc(String),
    /// `# escape=` with something other than a backslash or a backtick
    #[error("invalid escape token {0:?}: it must be \\ or `")]
    BadEscape(String),
    /// a parser directive given twice
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    /// `AS name` with a name BuildKit would reject
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    BadStageName(String),
    /// two stages with the same name
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    /// a reference to a stage that does not exist
    #[error("unknown stage {0:?}")]
    UnknownStage(String),
    /// stages that depend on each other
    #[error("stage cycle: {0}")]
    StageCycle(String),
    /// `ONBUILD ONBUILD`, `ONBUILD FROM`, `ONBUILD MAINTAINER`
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    BadOnbuildTrigger(String),
    /// HEALTHCHECK with something other than NONE or CMD
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD or NONE)")]
    BadHealthcheck(String),
    /// HEALTHCHECK NONE with arguments
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArgs,
    /// an EXPOSE port that is not `PORT[-PORT][/PROTO]`
    #[error(
        "invalid port {0:?}: expected PORT, PORT/PROTO or PORT-PORT/PROTO with tcp, udp or sctp"
    )]
    BadPort(String),
    /// a variable substitution that cannot be expanded
    #[error("{0}")]
    Expansion(#[from] crate::expand::ExpandError),
    /// a STOPSIGNAL that is not a signal name or number
    #[error("invalid signal {0:?}: expected a name like SIGTERM or a number from 1 to 64")]
    BadSignal(String),
    /// a VOLUME given as an empty string
    #[error("VOLUME specified can not be an empty string")]
    EmptyVolume,
    /// FROM whose image name expands to nothing
    #[error("base name ({0}) should not be blank")]
    BlankBase(String),
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean {s}?)"),
        None => String::new(),
    }
}

/// A Dockerfile error with the file name and, when it has one, the place.
/// Displays as `Dockerfile:LINE:COL: message` (or `Dockerfile: message`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// The file name the caller gave.
    pub file: String,
    /// Where the problem is; `None` for errors about the file as a whole or the
    /// build options (an unknown `--target`).
    pub position: Option<Position>,
    /// What is wrong.
    #[source]
    pub error: SyntaxError,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(p) => write!(f, "{}:{}:{}: {}", self.file, p.line, p.column, self.error),
            None => write!(f, "{}: {}", self.file, self.error),
        }
    }
}

impl ParseError {
    /// The error class: a bad Dockerfile is always invalid input.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Invalid
    }
}

/// An error before the file name is attached: the parser's internal result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Located {
    pub position: Option<Position>,
    pub error: SyntaxError,
}

impl Located {
    pub fn at(position: Position, error: SyntaxError) -> Self {
        Located {
            position: Some(position),
            error,
        }
    }

    pub fn in_file(self, file: &str) -> ParseError {
        ParseError {
            file: file.to_string(),
            position: self.position,
            error: self.error,
        }
    }
}
