//! The typed syntax tree of a Dockerfile.
//!
//! Words are kept as written (quotes and `$VAR` included) for the
//! instructions where Docker substitutes variables; [`Instruction::expanded`]
//! gives the instruction as it applies at a step, given the variables in
//! effect there. FROM lines are expanded at parse time with the global ARGs.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::error::Position;
use crate::lines::Directives;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// The parser directives at the top of the file.
    pub directives: Directives,
    /// ARG instructions before the first FROM (visible in FROM lines only,
    /// unless a stage declares them again).
    pub global_args: Vec<ArgDecl>,
    /// The build stages, in file order.
    pub stages: Vec<Stage>,
    /// The values of global and automatic (platform) args after build-arg
    /// overrides: the variables FROM lines were expanded with.
    #[serde(skip)]
    pub meta_args: BTreeMap<String, String>,
    /// The `--build-arg` values the file was parsed with.
    #[serde(skip)]
    pub build_args: BTreeMap<String, String>,
    /// The file name errors are reported with.
    #[serde(skip)]
    pub file_name: String,
}

/// Lines `start.line..=end_line` of the source, starting at `start.column`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// Where the instruction name starts.
    pub start: Position,
    /// The last line of the instruction (continuations and heredocs included).
    pub end_line: u32,
}

/// One build stage: a FROM line and the instructions after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stage {
    /// The stage's index in the file (what `COPY --from=N` names).
    pub index: usize,
    /// The `AS` name, lower-cased.
    pub name: Option<String>,
    /// What the stage starts from.
    pub base: BaseImage,
    /// `FROM --platform=`, expanded.
    pub platform: Option<String>,
    /// The FROM line.
    pub span: Span,
    /// The instructions of the stage.
    pub instructions: Vec<InstructionNode>,
    /// The stages this stage needs (its base, `COPY --from`, `RUN
    /// --mount=from=`), sorted.
    pub depends_on: Vec<usize>,
}

/// What a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum BaseImage {
    /// `FROM scratch`: an empty filesystem.
    Scratch,
    /// An image reference, after ARG expansion.
    Image(String),
    /// An earlier (or later) stage of the same file, by index.
    Stage(usize),
}

/// An instruction with its place in the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstructionNode {
    /// Where it is.
    pub span: Span,
    /// The instruction's text after continuation lines are joined (without
    /// heredoc bodies).
    pub text: String,
    /// The parsed instruction.
    pub instruction: Instruction,
}

/// A Dockerfile instruction (FROM starts a [`Stage`] and is not one of these).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Instruction {
    /// `RUN`
    Run(Run),
    /// `CMD`
    Cmd(CommandForm),
    /// `ENTRYPOINT`
    Entrypoint(CommandForm),
    /// `SHELL ["executable", "args"...]`
    Shell(Vec<String>),
    /// `COPY`
    Copy(FileCopy),
    /// `ADD`
    Add(FileCopy),
    /// `ENV K=V ...` or `ENV K V`
    Env(Vec<KeyValue>),
    /// `ARG NAME[=default] ...`
    Arg(Vec<ArgDecl>),
    /// `WORKDIR path`
    Workdir(String),
    /// `USER user[:group]`
    User(String),
    /// `EXPOSE port[/proto] ...`
    Expose(Vec<String>),
    /// `LABEL K=V ...`
    Label(Vec<KeyValue>),
    /// `VOLUME ["/a"]` or `VOLUME /a /b`
    Volume(Vec<String>),
    /// `STOPSIGNAL signal`
    StopSignal(String),
    /// `HEALTHCHECK`
    Healthcheck(Healthcheck),
    /// `ONBUILD instruction` (run when another build uses this image)
    Onbuild(Box<InstructionNode>),
    /// `MAINTAINER name` (deprecated; Docker turns it into a label)
    Maintainer(String),
}

impl Instruction {
    /// The instruction's keyword, upper-case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::Run(_) => "RUN",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::Copy(_) => "COPY",
            Instruction::Add(_) => "ADD",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::User(_) => "USER",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Label(_) => "LABEL",
            Instruction::Volume(_) => "VOLUME",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild(_) => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

/// A command in exec (JSON array) or shell form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CommandForm {
    /// `["executable", "arg"]`: run directly.
    Exec(Vec<String>),
    /// `command text`: run with the stage's SHELL.
    Shell(String),
}

/// `RUN [--mount=...] [--network=...] [--security=...] command`
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The command; in shell form it still contains the `<<EOF` markers.
    pub command: CommandForm,
    /// Heredoc bodies named in the command, in order.
    pub heredocs: Vec<Heredoc>,
    /// `--mount` options.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<NetworkMode>,
    /// `--security`.
    pub security: Option<SecurityMode>,
}

/// A heredoc: `<<EOF` … `EOF`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word, unquoted.
    pub name: String,
    /// The body, each line ending with `\n`.
    pub content: String,
    /// Whether variables in the body are expanded (false when the delimiter
    /// was quoted).
    pub expand: bool,
    /// `<<-`: leading tabs were stripped from the body and delimiter.
    pub strip_tabs: bool,
    /// A file descriptor prefix, as in `3<<EOF`.
    pub fd: Option<u32>,
}

/// `RUN --network=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NetworkMode {
    /// The default network of the build.
    Default,
    /// No network: only loopback.
    None,
    /// The host's network namespace.
    Host,
}

/// `RUN --security=`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SecurityMode {
    /// The default confinement.
    Sandbox,
    /// Full privileges (needs the builder to allow it).
    Insecure,
}

/// The type of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MountType {
    /// A read-only (by default) view of the context, a stage or an image.
    Bind,
    /// A persistent cache directory shared between builds.
    Cache,
    /// A fresh tmpfs.
    Tmpfs,
    /// A secret file (or environment variable); never part of a layer or key.
    Secret,
    /// An SSH agent socket.
    Ssh,
}

/// `type=cache` sharing mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum CacheSharing {
    /// Concurrent builds use the cache together (the default).
    Shared,
    /// Each concurrent build gets its own copy.
    Private,
    /// Concurrent builds wait for each other.
    Locked,
}

/// One `RUN --mount=...`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    /// `type=` (bind when absent).
    pub kind: MountType,
    /// `target=`/`dst=`/`destination=`; for secrets defaults to
    /// `/run/secrets/<id>` unless `env=` is given.
    pub target: Option<String>,
    /// `source=`/`src=`.
    pub source: Option<String>,
    /// `from=` stage or image (bind and cache).
    pub from: Option<String>,
    /// `id=` (cache, secret, ssh).
    pub id: Option<String>,
    /// Read-only: bind and secret mounts are read-only unless `rw`.
    pub read_only: bool,
    /// `sharing=` (cache).
    pub sharing: Option<CacheSharing>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `required` (secret, ssh): fail when the secret is not provided.
    pub required: bool,
    /// `size=` (tmpfs), in bytes.
    pub size: Option<u64>,
    /// `env=` (secret): expose the secret as this environment variable.
    pub env: Option<String>,
}

impl Mount {
    /// Where the mount appears in the container: `target=`, or for a secret
    /// without one, `/run/secrets/<id>` (`None` for a secret exposed only
    /// through `env=`, and for an ssh mount without a target, whose socket
    /// path the executor chooses).
    pub fn target_path(&self) -> Option<String> {
        match (&self.target, self.kind) {
            (Some(t), _) => Some(t.clone()),
            (None, MountType::Secret) if self.env.is_none() => {
                self.id.as_ref().map(|id| format!("/run/secrets/{id}"))
            }
            _ => None,
        }
    }

    /// The mount's id: `id=`, else (cache and secret) the target, as
    /// BuildKit does.
    pub fn effective_id(&self) -> Option<String> {
        match (&self.id, self.kind) {
            (Some(id), _) => Some(id.clone()),
            (None, MountType::Cache) => self.target.clone(),
            (None, MountType::Secret) => self
                .target
                .as_ref()
                .and_then(|t| t.rsplit('/').next().map(str::to_string)),
            _ => None,
        }
    }
}

/// COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileCopy {
    /// The sources: paths (relative to the context or the `--from` stage) or
    /// heredocs.
    pub sources: Vec<CopySource>,
    /// The destination.
    pub dest: String,
    /// `--from=` stage name, stage index or image (COPY only).
    pub from: Option<String>,
    /// `--chown=user[:group]`.
    pub chown: Option<String>,
    /// `--chmod=` octal or symbolic mode.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents` (COPY only).
    pub parents: bool,
    /// `--exclude=` patterns.
    pub exclude: Vec<String>,
    /// `--checksum=` (ADD only).
    pub checksum: Option<String>,
    /// `--keep-git-dir` (ADD only).
    pub keep_git_dir: bool,
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum CopySource {
    /// A path or glob.
    Path(String),
    /// A heredoc that becomes a file named after its delimiter.
    Heredoc(Heredoc),
}

/// `KEY=value` of ENV and LABEL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key as written.
    pub key: String,
    /// The value as written.
    pub value: String,
}

/// `NAME[=default]` of ARG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default as written.
    pub default: Option<String>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: disable any inherited check.
    None,
    /// `HEALTHCHECK [options] CMD command`
    Cmd(HealthcheckCmd),
}

/// The options and command of `HEALTHCHECK CMD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthcheckCmd {
    /// The command.
    pub command: CommandForm,
    /// `--interval` (zero or absent: the default).
    pub interval: Option<Duration>,
    /// `--timeout`.
    pub timeout: Option<Duration>,
    /// `--start-period`.
    pub start_period: Option<Duration>,
    /// `--start-interval`.
    pub start_interval: Option<Duration>,
    /// `--retries`.
    pub retries: Option<u32>,
}
