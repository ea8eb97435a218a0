//! Starting a supervisor from the engine: the command line, the ready pipe,
//! and the readiness line.
//!
//! The supervisor is spawned with its readiness fd on its stdout (a pipe of
//! ours); its first process forks the long-lived supervisor, relays the one
//! line of readiness JSON (`{"pid": N, "supervisorPid": M}` or
//! `{"error": "...", "kind": "..."}`)
//! and exits. [`SupervisorCommand::spawn`] reads that line and reaps the
//! short-lived process, so the caller never owns the supervisor.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kontti_core::ErrorKind;
use serde::{Deserialize, Serialize};

/// The binary's file name.
pub const BINARY: &str = "kontti-supervisor";

/// Where the supervisor binary is: `$KONTTI_SUPERVISOR`, else
/// `kontti-supervisor` next to the running executable (or next to its
/// directory, for test binaries in `target/*/deps`), else the bare name (found
/// on `PATH` when run).
pub fn locate() -> PathBuf {
    if let Some(p) = std::env::var_os("KONTTI_SUPERVISOR").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        let mut dir = exe.parent();
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let p = d.join(BINARY);
            if p.is_file() {
                return p;
            }
            dir = d.parent();
        }
    }
    PathBuf::from(BINARY)
}

/// The line a supervisor writes to its ready fd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Readiness {
    /// The container init's pid (for `exec`, the exec supervisor's pid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// The long-lived supervisor's own pid.
    #[serde(
        default,
        rename = "supervisorPid",
        skip_serializing_if = "Option::is_none"
    )]
    pub supervisor_pid: Option<i32>,
    /// Why the supervisor could not set the container up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's kind (`ErrorKind`'s display form, e.g. `not found`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Readiness {
    /// The line for an error.
    pub fn failed(message: String, kind: ErrorKind) -> Readiness {
        Readiness {
            pid: None,
            supervisor_pid: None,
            error: Some(message),
            kind: Some(kind.to_string()),
        }
    }
}

fn kind_from_str(s: &str) -> ErrorKind {
    match s {
        "not found" => ErrorKind::NotFound,
        "already exists" => ErrorKind::AlreadyExists,
        "conflict" => ErrorKind::Conflict,
        "invalid" => ErrorKind::Invalid,
        "unavailable" => ErrorKind::Unavailable,
        "forbidden" => ErrorKind::Forbidden,
        _ => ErrorKind::Internal,
    }
}

/// A supervisor that is running and has reported readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The container init's pid (for `exec`, the exec supervisor's).
    pub pid: i32,
    /// The supervisor's pid (0 if it did not say).
    pub supervisor_pid: i32,
}

/// Starting a supervisor failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The binary could not be run.
    #[error("run {binary}: {source}")]
    Exec {
        /// The binary.
        binary: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The supervisor reported an error (its message, as is).
    #[error("{message}")]
    Failed {
        /// The supervisor's one-line message.
        message: String,
        /// Its kind.
        kind: ErrorKind,
    },
    /// The supervisor exited without a readiness line.
    #[error("{binary} exited ({status}) without reporting readiness{detail}")]
    NoReadiness {
        /// The binary.
        binary: PathBuf,
        /// How it exited.
        status: String,
        /// `: ` and its stderr, if it wrote any.
        detail: String,
    },
}

impl SpawnError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SpawnError::Exec { .. } => ErrorKind::Unavailable,
            SpawnError::Failed { kind, .. } => *kind,
            SpawnError::NoReadiness { .. } => ErrorKind::Internal,
        }
    }
}

/// Runs `binary args... --ready-fd 1` and waits for its readiness line.
pub fn spawn_ready(binary: &Path, args: &[OsString]) -> Result<Ready, SpawnError> {
    let mut child = Command::new(binary)
        .args(args)
        .arg("--ready-fd")
        .arg("1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| SpawnError::Exec {
            binary: binary.to_owned(),
            source,
        })?;
    let mut line = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut line);
    }
    if let Some(e) = child.stderr.take() {
        let _ = e.take(4096).read_to_end(&mut stderr);
    }
    let status = child.wait().map_err(|source| SpawnError::Exec {
        binary: binary.to_owned(),
        source,
    })?;
    let ready: Option<Readiness> = serde_json::from_slice(line.trim_ascii()).ok();
    match ready {
        Some(Readiness {
            pid: Some(pid),
            supervisor_pid,
            ..
        }) => Ok(Ready {
            pid,
            supervisor_pid: supervisor_pid.unwrap_or(0),
        }),
        Some(Readiness {
            error: Some(message),
            kind,
            ..
        }) => Err(SpawnError::Failed {
            message,
            kind: kind.as_deref().map_or(ErrorKind::Internal, kind_from_str),
        }),
        _ => {
            let text = String::from_utf8_lossy(&stderr);
            let text = text.trim();
            let first = text.lines().next().unwrap_or("");
            Err(SpawnError::NoReadiness {
                binary: binary.to_owned(),
                status: status.to_string(),
                detail: if first.is_empty() {
                    String::new()
                } else {
                    format!(": {first}")
                },
            })
        }
    }
}

/// `kontti-supervisor run ...` for one container.
#[derive(Debug, Clone)]
pub struct SupervisorCommand {
    /// The supervisor binary (default: [`locate`]).
    pub binary: PathBuf,
    /// Container id.
    pub id: String,
    /// The OCI bundle.
    pub bundle: PathBuf,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// The supervisor's state directory (`attach.sock`, `exit.json`, ...).
    pub state_dir: PathBuf,
    /// The CRI log file.
    pub log_path: PathBuf,
    /// Rotate the log past this size.
    pub log_max_size: Option<u64>,
    /// Keep this many log files in all (with `log_max_size`).
    pub log_max_files: Option<u32>,
    /// Give the container a terminal.
    pub tty: bool,
    /// Keep the container's stdin open for attach clients.
    pub stdin: bool,
    /// Start the container only when the first attach client connects.
    pub wait_attach: bool,
    /// Run this when the container has exited and been deleted.
    pub exit_command: Option<PathBuf>,
    /// Its arguments.
    pub exit_command_args: Vec<String>,
    /// Run this every `health_interval_ms` while the container runs (one
    /// at a time): the engine's one-shot health check.
    pub health_command: Option<(PathBuf, Vec<String>)>,
    /// Between the end of a check and the start of the next.
    pub health_interval_ms: u64,
}

impl SupervisorCommand {
    /// A command with the required arguments and the located binary.
    pub fn new(
        id: &str,
        bundle: &Path,
        runtime_root: &Path,
        state_dir: &Path,
        log_path: &Path,
    ) -> SupervisorCommand {
        SupervisorCommand {
            binary: locate(),
            id: id.to_owned(),
            bundle: bundle.to_owned(),
            runtime_root: runtime_root.to_owned(),
            state_dir: state_dir.to_owned(),
            log_path: log_path.to_owned(),
            log_max_size: None,
            log_max_files: None,
            tty: false,
            stdin: false,
            wait_attach: false,
            exit_command: None,
            exit_command_args: Vec::new(),
            health_command: None,
            health_interval_ms: 30_000,
        }
    }

    /// The arguments after the binary (without `--ready-fd`).
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["run".into(), "--id".into(), self.id.clone().into()];
        for (k, v) in [
            ("--bundle", &self.bundle),
            ("--runtime-root", &self.runtime_root),
            ("--state-dir", &self.state_dir),
            ("--log-path", &self.log_path),
        ] {
            a.push(k.into());
            a.push(v.into());
        }
        if let Some(n) = self.log_max_size {
            a.extend(["--log-max-size".into(), n.to_string().into()]);
        }
        if let Some(n) = self.log_max_files {
            a.extend(["--log-max-files".into(), n.to_string().into()]);
        }
        for (flag, on) in [
            ("--tty", self.tty),
            ("--stdin", self.stdin),
            ("--wait-attach", self.wait_attach),
        ] {
            if on {
                a.push(flag.into());
            }
        }
        if let Some(c) = &self.exit_command {
            a.extend(["--exit-command".into(), c.into()]);
            for arg in &self.exit_command_args {
                a.extend(["--exit-command-arg".into(), arg.into()]);
            }
        }
        if let Some((c, args)) = &self.health_command {
            a.extend(["--health-command".into(), c.into()]);
            for arg in args {
                a.extend(["--health-command-arg".into(), arg.into()]);
            }
            let ms = self.health_interval_ms.max(1).to_string();
            a.extend(["--health-interval-ms".into(), ms.into()]);
        }
        a
    }

    /// Spawns the supervisor and waits until the container is created (or
    /// failed to be, in which case nothing of it is left).
    pub fn spawn(&self) -> Result<Ready, SpawnError> {
        spawn_ready(&self.binary, &self.args())
    }
}

/// `kontti-supervisor exec ...` for one extra process in a container.
#[derive(Debug, Clone)]
pub struct ExecCommand {
    /// The supervisor binary (default: [`locate`]).
    pub binary: PathBuf,
    /// Container id.
    pub id: String,
    /// The runtime's state root.
    pub runtime_root: PathBuf,
    /// The OCI process JSON file.
    pub process: PathBuf,
    /// The socket to serve the process's stdio on.
    pub socket: PathBuf,
    /// Where to write `{"exitCode": ...}`.
    pub exit_file: PathBuf,
    /// The process has a terminal (`terminal: true` in the process file).
    pub tty: bool,
    /// Pass clients' stdin to the process.
    pub stdin: bool,
}

impl ExecCommand {
    /// A command with the located binary and no tty or stdin.
    pub fn new(
        id: &str,
        runtime_root: &Path,
        process: &Path,
        socket: &Path,
        exit_file: &Path,
    ) -> ExecCommand {
        ExecCommand {
            binary: locate(),
            id: id.to_owned(),
            runtime_root: runtime_root.to_owned(),
            process: process.to_owned(),
            socket: socket.to_owned(),
            exit_file: exit_file.to_owned(),
            tty: false,
            stdin: false,
        }
    }

    /// The arguments after the binary (without `--ready-fd`).
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["exec".into(), "--id".into(), self.id.clone().into()];
        for (k, v) in [
            ("--runtime-root", &self.runtime_root),
            ("--process", &self.process),
            ("--socket", &self.socket),
            ("--exit-file", &self.exit_file),
        ] {
            a.push(k.into());
            a.push(v.into());
        }
        if self.tty {
            a.push("--tty".into());
        }
        if self.stdin {
            a.push("--stdin".into());
        }
        a
    }

    /// Spawns the exec supervisor; it is ready when its socket listens (the
    /// process starts when the first client connects).
    pub fn spawn(&self) -> Result<Ready, SpawnError> {
        spawn_ready(&self.binary, &self.args())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_follows_the_contract() {
        let mut c = SupervisorCommand::new(
            "abc",
            Path::new("/b"),
            Path::new("/r"),
            Path::new("/s"),
            Path::new("/s/container.log"),
        );
        c.log_max_size = Some(1000);
        c.log_max_files = Some(3);
        c.tty = true;
        c.wait_attach = true;
        c.exit_command = Some("/bin/kontti".into());
        c.exit_command_args = vec!["cleanup".into(), "abc".into()];
        let a: Vec<String> = c
            .args()
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            a.join(" "),
            "run --id abc --bundle /b --runtime-root /r --state-dir /s --log-path /s/container.log \
             --log-max-size 1000 --log-max-files 3 --tty --wait-attach --exit-command /bin/kontti \
             --exit-command-arg cleanup --exit-command-arg abc"
        );
    }

    #[test]
    fn readiness_lines_parse_both_ways() {
        let ok: Readiness = serde_json::from_str("{\"pid\": 42}").unwrap();
        assert_eq!(ok.pid, Some(42));
        let line =
            serde_json::to_string(&Readiness::failed("x".into(), ErrorKind::NotFound)).unwrap();
        assert_eq!(line, "{\"error\":\"x\",\"kind\":\"not found\"}");
        assert_eq!(kind_from_str("not found"), ErrorKind::NotFound);
        assert_eq!(kind_from_str("weird"), ErrorKind::Internal);
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let e = spawn_ready(Path::new("/nonexistent/kontti-supervisor"), &[]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("run /nonexistent/kontti-supervisor: "),
            "{e}"
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn a_binary_without_readiness_reports_its_stderr() {
        let e = spawn_ready(
            Path::new("/bin/sh"),
            &["-c".into(), "echo bad flag >&2; exit 2".into()],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("without reporting readiness: bad flag"),
            "{e}"
        );
    }
}
