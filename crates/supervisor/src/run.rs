//! `kontti-supervisor run`: one container from create to delete.
//!
//! After [`crate::daemon::detach`] the supervisor becomes a child subreaper,
//! blocks its signals into a signalfd, listens on `attach.sock`, and creates
//! the container with its stdio on pipes it owns (or a pty whose master it
//! receives over a console socket). It reports readiness, starts the
//! container (at once, or when the first attach client connects), copies
//! output to the CRI log and to clients, and on exit records `exit.json`
//! (with the memory cgroup's OOM-kill count), deletes the container, and
//! runs the exit command.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio as ProcStdio};

use kontti_core::ErrorKind;
use kontti_runtime::RuntimeError;
use kontti_runtime::container::{self, CreateOptions};
use kontti_runtime::ops;
use kontti_runtime::sys::process::{self as rproc, Exit};

use crate::args::RunArgs;
use crate::crilog::LogWriter;
use crate::daemon::{self, ReadyWriter};
use crate::exit::ExitRecord;
use crate::health::HealthTimer;
use crate::pump::{self, Event, Pump};
use crate::sockpath::ShortPath;
use crate::spawn::Readiness;
use crate::stdio;
use crate::timestamp::Timestamp;

/// The attach socket's name in the state directory.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The supervisor's pid file's name.
pub const PID_FILE: &str = "supervisor.pid";
/// The exit record's name.
pub const EXIT_FILE: &str = "exit.json";
const CONSOLE_SOCKET: &str = "console.sock";

/// A failure before the container runs: reported on the ready fd.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The runtime refused or failed.
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    /// A file or socket of the supervisor's.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it is.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The log.
    #[error("{0}")]
    Log(#[from] crate::crilog::LogError),
}

impl SetupError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SetupError::Runtime(e) => e.kind(),
            SetupError::Log(e) => e.kind(),
            SetupError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            SetupError::Io { .. } => ErrorKind::Internal,
        }
    }
}

pub(crate) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SetupError + 'a {
    move |source| SetupError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Binds a unix socket only root can use (0600), replacing a stale one.
pub(crate) fn listen(path: &Path) -> Result<UnixListener, SetupError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("socket", path)(e)),
    }
    let l = crate::sockpath::bind(path).map_err(io_err("socket", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("socket", path))?;
    Ok(l)
}

/// The container's exit code (128 + signal for a signal) and signal.
pub(crate) fn exit_fields(e: Exit) -> (i32, Option<i32>) {
    match e {
        Exit::Code(c) => (c, None),
        Exit::Signal(s) => (128 + s, Some(s)),
    }
}

/// The OOM-kill count of the container's memory cgroup (v1
/// `memory.oom_control`, v2 `memory.events`); 0 when unknown.
pub fn oom_kills(dirs: impl Iterator<Item = PathBuf>) -> u64 {
    for d in dirs {
        for file in ["memory.oom_control", "memory.events"] {
            if let Ok(text) = std::fs::read_to_string(d.join(file)) {
                let n = text
                    .lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok());
                if let Some(n) = n {
                    return n;
                }
            }
        }
    }
    0
}

/// Runs the `run` subcommand; returns the process exit code.
pub fn main(args: RunArgs) -> i32 {
    let mut ready = match daemon::detach(args.ready_fd) {
        Ok(r) => r,
        Err(e) => {
            // still the caller's process: it can tell
            let line =
                Readiness::failed(format!("detach from the caller: {e}"), ErrorKind::Internal);
            daemon_fallback(args.ready_fd, &line);
            return 1;
        }
    };
    let pid_file = args.state_dir.join(PID_FILE);
    let socket = args.state_dir.join(ATTACH_SOCKET);
    match setup(&args, &pid_file, &socket) {
        Ok((pump, init)) => supervise(&args, pump, init, &mut ready, &pid_file, &socket),
        Err(e) => {
            ready.send(&Readiness::failed(e.to_string(), e.kind()));
            1
        }
    }
}

fn daemon_fallback(fd: Option<i32>, line: &Readiness) {
    daemon::ReadyWriter::to_fd(fd).send(line);
}

/// Everything up to a created container; on error nothing is left but the
/// state directory and log file.
fn setup(args: &RunArgs, pid_file: &Path, socket: &Path) -> Result<(Pump, i32), SetupError> {
    rproc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0)
        .map_err(io_err("subreaper", Path::new("/")))?;
    let sfd = rproc::signalfd(&pump::SIGNALS).map_err(io_err("signalfd", Path::new("/")))?;
    std::fs::create_dir_all(&args.state_dir).map_err(io_err("state directory", &args.state_dir))?;
    let max_files = args.log_max_files.unwrap_or(1);
    let log = LogWriter::open(&args.log_path, args.log_max_size, max_files)?;

    // the container first: if its id is taken (a live supervisor of the
    // same container), nothing of that supervisor's is touched
    let console = args.state_dir.join(CONSOLE_SOCKET);
    let prepared = stdio::Prepared::new(args.tty, args.stdin, &console)?;
    let console_short = ShortPath::new(&console).map_err(io_err("console socket", &console))?;
    let opts = CreateOptions {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        root: args.runtime_root.clone(),
        console_socket: args.tty.then(|| console_short.path().to_owned()),
        ..CreateOptions::default()
    };
    let created = prepared.with_stdio(|| container::create(&opts));
    let created = match created {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&console);
            return Err(e.into());
        }
        Err(e) => {
            let _ = std::fs::remove_file(&console);
            return Err(io_err("stdio", Path::new("/dev/null"))(e));
        }
    };
    let init = created.record.pid;
    // unlock the runtime's state for start, kill and delete
    drop(created);
    let after = (|| {
        let io = prepared.finish(&console)?;
        std::fs::write(pid_file, rproc::getpid().to_string())
            .map_err(io_err("pid file", pid_file))?;
        // a previous run's exit record is not this one's
        let _ = std::fs::remove_file(args.state_dir.join(EXIT_FILE));
        let listener = listen(socket)?;
        let mut pump = Pump::new(sfd, listener, Some(log)).map_err(io_err("socket", socket))?;
        pump.set_stdio(io)
            .map_err(io_err("stdio", Path::new("/dev/null")))?;
        Ok(pump)
    })();
    match after {
        Ok(pump) => Ok((pump, init)),
        Err(e) => {
            let _ = ops::delete(&args.runtime_root, &args.id, true);
            let _ = std::fs::remove_file(socket);
            let _ = std::fs::remove_file(pid_file);
            Err(e)
        }
    }
}

fn supervise(
    args: &RunArgs,
    mut pump: Pump,
    init: i32,
    ready: &mut ReadyWriter,
    pid_file: &Path,
    socket: &Path,
) -> i32 {
    ready.send(&Readiness {
        pid: Some(init),
        supervisor_pid: Some(rproc::getpid()),
        ..Readiness::default()
    });
    let mut error: Option<(String, ErrorKind)> = None;
    let mut exit = None;
    if args.wait_attach {
        kontti_runtime::sys::mem::release_clean_file_pages();
        match pump.run(Some(init), true) {
            Ok(Event::Exited(e)) => exit = Some(e),
            Ok(Event::Attached) => {}
            Err(e) => error = Some((format!("supervise: {e}"), ErrorKind::Internal)),
        }
    }
    let started_at = Timestamp::now();
    if exit.is_none()
        && error.is_none()
        && let Err(e) = ops::start(&args.runtime_root, &args.id)
    {
        let gone = matches!(
            kontti_runtime::state::proc_stat(init),
            None | Some((_, 'Z' | 'X'))
        );
        if !gone {
            // it cannot run: make sure it does not, and say why
            error = Some((e.to_string(), e.kind()));
            let _ = rproc::kill(init, libc::SIGKILL);
        }
        // killed before it was started: its exit is the record
        match pump.run(Some(init), false) {
            Ok(Event::Exited(e)) if gone => exit = Some(e),
            Ok(_) => {}
            Err(e) => tracing::warn!("reap the container: {e}"),
        }
    }
    if exit.is_none() && error.is_none() {
        if let (Some(cmd), Some(ms)) = (&args.health_command, args.health_interval_ms) {
            pump.set_health_timer(HealthTimer::new(
                cmd.clone(),
                args.health_command_args.clone(),
                std::time::Duration::from_millis(ms),
            ));
        }
        // setup's code is not needed again while the container runs
        kontti_runtime::sys::mem::release_clean_file_pages();
        match pump.run(Some(init), false) {
            Ok(Event::Exited(e)) => exit = Some(e),
            Ok(Event::Attached) => {}
            Err(e) => error = Some((format!("supervise: {e}"), ErrorKind::Internal)),
        }
    }
    let finished_at = Timestamp::now();
    let _ = pump.drain();
    let oom = ops::state(&args.runtime_root, &args.id)
        .ok()
        .and_then(|i| i.record.cgroup)
        .map_or(0, |cg| oom_kills(cg.dirs()));
    let (exit_code, signal) = match (exit, &error) {
        (Some(e), _) => exit_fields(e),
        (None, Some((_, ErrorKind::NotFound))) => (127, None),
        (None, _) => (126, None),
    };
    let record = ExitRecord {
        exit_code,
        signal,
        oom_killed: oom > 0,
        started_at: started_at.to_string(),
        finished_at: finished_at.to_string(),
        error: error.map(|e| e.0),
    };
    if let Err(e) = record.write(&args.state_dir.join(EXIT_FILE)) {
        tracing::warn!("{e}");
    }
    pump.send_exit(exit_code);
    if let Err(e) = ops::delete(&args.runtime_root, &args.id, true) {
        tracing::warn!("delete container {}: {e}", args.id);
    }
    drop(pump);
    let _ = std::fs::remove_file(socket);
    let _ = std::fs::remove_file(pid_file);
    if let Some(cmd) = &args.exit_command {
        let spawned = Command::new(cmd)
            .args(&args.exit_command_args)
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::null())
            .stderr(ProcStdio::null())
            .spawn();
        if let Err(e) = spawned {
            tracing::warn!("exit command {}: {e}", cmd.display());
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counter_reads_v1_and_v2_files() {
        let d = tempfile::tempdir().unwrap();
        let v1 = d.path().join("v1");
        let v2 = d.path().join("v2");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills([v1].into_iter()), 2);
        assert_eq!(oom_kills([d.path().to_owned(), v2].into_iter()), 1);
        assert_eq!(oom_kills(std::iter::empty()), 0);
    }

    #[test]
    fn exit_fields_follow_the_shell_convention() {
        assert_eq!(exit_fields(Exit::Code(3)), (3, None));
        assert_eq!(exit_fields(Exit::Signal(9)), (137, Some(9)));
    }
}
