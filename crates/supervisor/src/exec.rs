//! `kontti-supervisor exec`: one extra process in a running container,
//! served on its own socket with the attach protocol. The process starts
//! when the first client connects, so the client sees all its output; its
//! exit code goes to the exit file and, as the exit frame, to the clients.

use std::path::Path;
use std::time::Duration;

use kontti_core::ErrorKind;
use kontti_runtime::exec::{self, ExecOptions};
use kontti_runtime::sys::process as rproc;

use crate::args::ExecArgs;
use crate::daemon;
use crate::exit::ExitRecord;
use crate::pump::{self, Event, Pump};
use crate::run::{SetupError, exit_fields, io_err, listen};
use crate::spawn::Readiness;
use crate::stdio;
use crate::timestamp::Timestamp;

/// How long the exec supervisor waits for its first client.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the `exec` subcommand; returns the process exit code.
pub fn main(args: ExecArgs) -> i32 {
    let mut ready = match daemon::detach(args.ready_fd) {
        Ok(r) => r,
        Err(e) => {
            let line =
                Readiness::failed(format!("detach from the caller: {e}"), ErrorKind::Internal);
            daemon::ReadyWriter::to_fd(args.ready_fd).send(&line);
            return 1;
        }
    };
    let process = match kontti_runtime::config::load_process(&args.process) {
        Ok(p) => p,
        Err(e) => {
            ready.send(&Readiness::failed(e.to_string(), e.kind()));
            return 1;
        }
    };
    let mut pump = match setup(&args) {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&args.socket);
            ready.send(&Readiness::failed(e.to_string(), e.kind()));
            return 1;
        }
    };
    ready.send(&Readiness {
        pid: Some(rproc::getpid()),
        supervisor_pid: Some(rproc::getpid()),
        ..Readiness::default()
    });
    let started_at = Timestamp::now();
    let (exit, error) = serve(&args, &mut pump, process);
    let finished_at = Timestamp::now();
    let _ = pump.drain();
    let (exit_code, signal) = match (exit, &error) {
        (Some(e), _) => exit_fields(e),
        (None, Some((_, ErrorKind::NotFound))) => (127, None),
        (None, _) => (126, None),
    };
    let record = ExitRecord {
        exit_code,
        signal,
        oom_killed: false,
        started_at: started_at.to_string(),
        finished_at: finished_at.to_string(),
        error: error.map(|e| e.0),
    };
    if let Err(e) = record.write(&args.exit_file) {
        tracing::warn!("{e}");
    }
    pump.send_exit(exit_code);
    drop(pump);
    let _ = std::fs::remove_file(&args.socket);
    0
}

fn setup(args: &ExecArgs) -> Result<Pump, SetupError> {
    let none = Path::new("/");
    rproc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0).map_err(io_err("subreaper", none))?;
    let sfd = rproc::signalfd(&pump::SIGNALS).map_err(io_err("signalfd", none))?;
    let listener = listen(&args.socket)?;
    Pump::new(sfd, listener, None).map_err(io_err("socket", &args.socket))
}

type Outcome = (Option<rproc::Exit>, Option<(String, ErrorKind)>);

fn serve(args: &ExecArgs, pump: &mut Pump, process: oci_spec::runtime::Process) -> Outcome {
    let internal =
        |e: std::io::Error| (None, Some((format!("supervise: {e}"), ErrorKind::Internal)));
    match pump.wait_attach(ATTACH_TIMEOUT) {
        Ok(true) => {}
        Ok(false) => {
            let msg = format!("no client connected to {} in time", args.socket.display());
            return (None, Some((msg, ErrorKind::Unavailable)));
        }
        Err(e) => return internal(e),
    }
    let mut console = args.socket.as_os_str().to_owned();
    console.push(".console");
    let console = std::path::PathBuf::from(console);
    let pid_file = {
        let mut p = args.socket.as_os_str().to_owned();
        p.push(".pid");
        std::path::PathBuf::from(p)
    };
    let prepared = match stdio::Prepared::new(args.tty, args.stdin, &console) {
        Ok(p) => p,
        Err(e) => return (None, Some((e.to_string(), e.kind()))),
    };
    let console_short = match crate::sockpath::ShortPath::new(&console) {
        Ok(p) => p,
        Err(e) => return internal(e),
    };
    let opts = ExecOptions {
        id: args.id.clone(),
        root: args.runtime_root.clone(),
        process: Some(process),
        detach: true,
        pid_file: Some(pid_file.clone()),
        console_socket: args.tty.then(|| console_short.path().to_owned()),
        ..ExecOptions::default()
    };
    let r = prepared.with_stdio(|| exec::exec(&opts));
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let _ = std::fs::remove_file(&pid_file);
    match r {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            let _ = std::fs::remove_file(&console);
            return (None, Some((e.to_string(), e.kind())));
        }
        Err(e) => return internal(e),
    }
    let io = match prepared.finish(&console) {
        Ok(io) => io,
        Err(e) => {
            if let Some(pid) = pid {
                let _ = rproc::kill(pid, libc::SIGKILL);
            }
            return (None, Some((e.to_string(), e.kind())));
        }
    };
    if let Err(e) = pump.set_stdio(io) {
        return internal(e);
    }
    let Some(pid) = pid else {
        return (
            None,
            Some((
                "the exec process's pid is unknown".into(),
                ErrorKind::Internal,
            )),
        );
    };
    match pump.run(Some(pid), false) {
        Ok(Event::Exited(e)) => (Some(e), None),
        Ok(Event::Attached) => (None, None),
        Err(e) => internal(e),
    }
}
