//! The container's stdio as the supervisor sets it up: pipes whose far ends
//! become the init's fds 0-2 for the duration of `create` (or `exec`), or a
//! console socket over which the init sends its pty master.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use kontti_runtime::sys::process as rproc;
use kontti_runtime::sys::term;

use crate::daemon::null_stdio;
use crate::pump::Stdio;
use crate::run::{SetupError, io_err, listen};

/// How long to wait for the pty master after create.
const CONSOLE_TIMEOUT_MS: i32 = 10_000;

/// Stdio made before `create`, handed to the loop after it.
pub struct Prepared {
    tty: bool,
    stdin_enabled: bool,
    /// (ours, theirs) per stream.
    stdin: Option<(OwnedFd, OwnedFd)>,
    out: Option<(OwnedFd, OwnedFd)>,
    err: Option<(OwnedFd, OwnedFd)>,
    console: Option<UnixListener>,
}

fn pipe(ours_reads: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = io::pipe()?;
    let (r, w) = (OwnedFd::from(r), OwnedFd::from(w));
    Ok(if ours_reads { (r, w) } else { (w, r) })
}

impl Prepared {
    /// Pipes, or with `tty` a console socket listening at `console`.
    pub fn new(tty: bool, stdin: bool, console: &Path) -> Result<Prepared, SetupError> {
        let p = |e| io_err("pipe", Path::new("pipe"))(e);
        if tty {
            return Ok(Prepared {
                tty,
                stdin_enabled: stdin,
                stdin: None,
                out: None,
                err: None,
                console: Some(listen(console)?),
            });
        }
        Ok(Prepared {
            tty,
            stdin_enabled: stdin,
            stdin: if stdin {
                Some(pipe(false).map_err(p)?)
            } else {
                None
            },
            out: Some(pipe(true).map_err(p)?),
            err: Some(pipe(true).map_err(p)?),
            console: None,
        })
    }

    /// Runs `f` with the container's ends on fds 0-2 (so the init inherits
    /// them), then puts /dev/null back.
    pub fn with_stdio<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        for (fd, target) in [(&self.stdin, 0), (&self.out, 1), (&self.err, 2)] {
            if let Some((_, theirs)) = fd {
                rproc::dup_onto(theirs.as_fd(), target)?;
            }
        }
        let r = f();
        null_stdio()?;
        Ok(r)
    }

    /// Closes the container's ends and, with a terminal, receives the pty
    /// master the init sent (removing the console socket).
    pub fn finish(self, console: &Path) -> Result<Stdio, SetupError> {
        let ours = |p: Option<(OwnedFd, OwnedFd)>| p.map(|(o, _)| o);
        let mut io = Stdio {
            out: ours(self.out),
            err: ours(self.err),
            stdin: ours(self.stdin),
            tty: self.tty,
            stdin_enabled: self.stdin_enabled,
        };
        if let Some(l) = self.console {
            let r = receive_master(&l);
            let _ = std::fs::remove_file(console);
            io.out = Some(r.map_err(io_err("console socket", console))?);
        }
        Ok(io)
    }
}

fn receive_master(l: &UnixListener) -> io::Result<OwnedFd> {
    let ready = term::poll(&[(l.as_fd(), libc::POLLIN)], CONSOLE_TIMEOUT_MS)?;
    if ready[0] == 0 {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the container sent no terminal",
        ));
    }
    let (conn, _) = l.accept()?;
    let mut name = [0u8; 256];
    let (_, master) = term::recv_fd(conn.as_fd(), &mut name)?;
    master
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "the container sent no terminal"))
}
