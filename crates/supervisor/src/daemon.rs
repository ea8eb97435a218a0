//! Leaving the caller: fork, `setsid`, and the readiness line relayed by
//! the short-lived parent.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use kontti_runtime::sys::process::{self as rproc, Forked};

use crate::spawn::Readiness;

/// The long-lived child's end of the readiness relay.
#[derive(Debug)]
pub struct ReadyWriter {
    pipe: Option<std::fs::File>,
}

impl ReadyWriter {
    /// A writer to `fd` (stdout when `None`) of this very process, for a
    /// failure before there is a child.
    pub fn to_fd(fd: Option<i32>) -> ReadyWriter {
        let owned = match fd {
            Some(fd) => rproc::own_fd(fd).ok(),
            None => io::stdout().as_fd().try_clone_to_owned().ok(),
        };
        ReadyWriter {
            pipe: owned.map(std::fs::File::from),
        }
    }

    /// Sends the readiness line (once; later calls do nothing).
    pub fn send(&mut self, r: &Readiness) {
        if let Some(mut p) = self.pipe.take() {
            let mut line = serde_json::to_vec(r).unwrap_or_default();
            line.push(b'\n');
            let _ = p.write_all(&line);
        }
    }
}

/// Points fds 0, 1 and 2 at `/dev/null`.
pub fn null_stdio() -> io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..3 {
        rproc::dup_onto(null.as_fd(), fd)?;
    }
    Ok(())
}

/// Forks. The parent waits for the child's readiness line, writes it to
/// `ready_fd` (stdout when `None`) and exits: 0 when it carries a pid, 1
/// otherwise. The child starts a new session, puts its stdio on /dev/null,
/// closes its copy of `ready_fd` and returns the writer for the line.
pub fn detach(ready_fd: Option<i32>) -> io::Result<ReadyWriter> {
    let (mut r, w) = io::pipe()?;
    match rproc::clone(0)? {
        Forked::Parent(_) => {
            drop(w);
            // one line, not to EOF: a created container's init holds a
            // copy of the pipe until it execs
            let mut line = Vec::new();
            let mut chunk = [0u8; 512];
            while !line.contains(&b'\n') {
                match r.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => line.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            if line.is_empty() {
                let failed = Readiness::failed(
                    "the supervisor exited before it was ready".into(),
                    kontti_core::ErrorKind::Internal,
                );
                line = serde_json::to_vec(&failed).unwrap_or_default();
                line.push(b'\n');
            }
            let ok = serde_json::from_slice::<Readiness>(&line).is_ok_and(|r| r.pid.is_some());
            let out: Option<OwnedFd> = match ready_fd {
                Some(fd) => rproc::own_fd(fd).ok(),
                None => None,
            };
            match out {
                Some(fd) => {
                    let _ = std::fs::File::from(fd).write_all(&line);
                }
                None => {
                    let _ = io::stdout().write_all(&line);
                }
            }
            rproc::exit_now(if ok { 0 } else { 1 })
        }
        Forked::Child => {
            drop(r);
            rproc::setsid()?;
            null_stdio()?;
            if let Some(fd) = ready_fd.filter(|fd| *fd > 2) {
                drop(rproc::own_fd(fd));
            }
            Ok(ReadyWriter {
                pipe: Some(std::fs::File::from(OwnedFd::from(w))),
            })
        }
    }
}
