//! Operations on an existing container: start, state, kill, delete, list,
//! ps, pause, resume, update.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::container::{state_json, wait_gone};
use crate::error::{IoContext, RuntimeError};
use crate::hooks;
use crate::state::{self, EXEC_FIFO, Record, StateDir, Status};
use crate::sys::process as sp;

/// A container's record and live status.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    /// The record.
    pub record: Record,
    /// Its status now.
    pub status: Status,
}

impl ContainerInfo {
    /// The OCI state JSON (runc's superset: rootfs, created, owner).
    pub fn state_json(&self) -> Vec<u8> {
        state_json(&self.record, self.status)
    }
}

fn open(root: &Path, id: &str) -> Result<(StateDir, Record, Status), RuntimeError> {
    let dir = StateDir::open(root, id)?;
    let rec = dir.load()?;
    let status = dir.status(&rec);
    Ok((dir, rec, status))
}

/// `state`.
pub fn state(root: &Path, id: &str) -> Result<ContainerInfo, RuntimeError> {
    let (_dir, record, status) = open(root, id)?;
    Ok(ContainerInfo { record, status })
}

/// `list`: every container under `root`.
pub fn list(root: &Path) -> Result<Vec<ContainerInfo>, RuntimeError> {
    let mut out = Vec::new();
    for id in state::list_ids(root)? {
        match state(root, &id) {
            Ok(i) => out.push(i),
            Err(RuntimeError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// `start`: lets a created container's init exec the user process.
pub fn start(root: &Path, id: &str) -> Result<(), RuntimeError> {
    let (dir, rec, status) = open(root, id)?;
    if status != Status::Created {
        return Err(RuntimeError::WrongState {
            id: id.to_owned(),
            status: status.to_string(),
            op: "start (only a created container can be started)",
        });
    }
    let fifo = dir.path().join(EXEC_FIFO);
    // opening the read end releases the init blocked on the write end; it
    // is non-blocking so that an init that died before can be noticed
    let f = crate::sys::fs::open(&fifo, libc::O_RDONLY | libc::O_NONBLOCK)
        .ctx(|| format!("open {}", fifo.display()))?;
    let n = read_start_byte(&f, rec.pid).ctx(|| format!("read {}", fifo.display()))?;
    std::fs::remove_file(&fifo).ctx(|| format!("remove {}", fifo.display()))?;
    if n != 1 {
        return Err(RuntimeError::Init {
            message: format!("container {id} exited before it was started"),
            kind: kontti_core::ErrorKind::Conflict,
        });
    }
    let state = state_json(&rec, Status::Running);
    hooks::run(
        "poststart",
        rec.hooks.as_ref().and_then(|h| h.poststart().as_ref()),
        &state,
    )
}

/// Waits for the init's byte on the exec FIFO; 0 when the init is gone
/// without writing it (killed before `start`).
fn read_start_byte(f: &std::os::fd::OwnedFd, pid: i32) -> std::io::Result<usize> {
    use std::os::fd::AsFd;
    let mut b = [0u8; 1];
    loop {
        match crate::sys::term::read(f.as_fd(), &mut b) {
            Ok(1) => return Ok(1),
            // 0: no writer (not yet, or no more); EAGAIN: no byte yet
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if matches!(state::proc_stat(pid), None | Some((_, 'Z' | 'X'))) {
            // a byte written just before it exited still counts
            return match crate::sys::term::read(f.as_fd(), &mut b) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            };
        }
        crate::sys::term::poll(&[(f.as_fd(), libc::POLLIN)], 10)?;
    }
}

/// `kill`: sends `signal` to the init, or to every process with `all`.
pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
    let (_dir, rec, status) = open(root, id)?;
    if status == Status::Stopped {
        return Err(RuntimeError::WrongState {
            id: id.to_owned(),
            status: status.to_string(),
            op: "kill (it has no running process)",
        });
    }
    if let (true, Some(cg)) = (all, &rec.cgroup) {
        return cg.kill_all(signal).map_err(RuntimeError::from);
    }
    sp::kill(rec.pid, signal).ctx(|| format!("kill {} (pid {})", id, rec.pid))
}

/// `delete`: removes a stopped (or, with `force`, any) container.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), RuntimeError> {
    let (dir, rec, status) = open(root, id)?;
    match status {
        Status::Stopped | Status::Created => {}
        _ if force => {}
        _ => {
            return Err(RuntimeError::WrongState {
                id: id.to_owned(),
                status: status.to_string(),
                op: "delete (stop it first or use --force)",
            });
        }
    }
    if status != Status::Stopped {
        if let Some(cg) = &rec.cgroup {
            if status == Status::Paused {
                let _ = cg.thaw();
            }
            let _ = cg.kill_all(libc::SIGKILL);
        }
        let _ = sp::kill(rec.pid, libc::SIGKILL);
        wait_gone(rec.pid);
    }
    cleanup(dir, &rec);
    Ok(())
}

/// Destroys the cgroup, runs poststop hooks, removes the state directory.
/// Failures are logged: deletion goes as far as it can.
pub(crate) fn cleanup(dir: StateDir, rec: &Record) {
    if let Some(cg) = &rec.cgroup {
        if !rec.own_pid_ns {
            let _ = cg.kill_all(libc::SIGKILL);
        }
        if let Err(e) = cg.destroy() {
            tracing::warn!("delete {}: {e}", rec.id);
        }
    }
    let state = state_json(rec, Status::Stopped);
    if let Err(e) = hooks::run(
        "poststop",
        rec.hooks.as_ref().and_then(|h| h.poststop().as_ref()),
        &state,
    ) {
        tracing::warn!("delete {}: {e}", rec.id);
    }
    if let Err(e) = dir.remove() {
        tracing::warn!("delete {}: {e}", rec.id);
    }
}

/// `ps`: the container's pids.
pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, RuntimeError> {
    let (_dir, rec, status) = open(root, id)?;
    match &rec.cgroup {
        Some(cg) => Ok(cg.pids()?),
        None if status != Status::Stopped => Ok(vec![rec.pid]),
        None => Ok(Vec::new()),
    }
}

/// `pause`: freezes every process of a running container.
pub fn pause(root: &Path, id: &str) -> Result<(), RuntimeError> {
    let (dir, mut rec, status) = open(root, id)?;
    if status != Status::Running {
        return Err(RuntimeError::WrongState {
            id: id.to_owned(),
            status: status.to_string(),
            op: "pause (only a running container can be paused)",
        });
    }
    let cg = rec
        .cgroup
        .clone()
        .ok_or_else(|| RuntimeError::Unsupported("pause without a cgroup".into()))?;
    cg.freeze()?;
    rec.paused = true;
    dir.save(&rec)
}

/// `resume`: thaws a paused container.
pub fn resume(root: &Path, id: &str) -> Result<(), RuntimeError> {
    let (dir, mut rec, status) = open(root, id)?;
    if status != Status::Paused {
        return Err(RuntimeError::WrongState {
            id: id.to_owned(),
            status: status.to_string(),
            op: "resume (only a paused container can be resumed)",
        });
    }
    let cg = rec
        .cgroup
        .clone()
        .ok_or_else(|| RuntimeError::Unsupported("resume without a cgroup".into()))?;
    cg.thaw()?;
    rec.paused = false;
    dir.save(&rec)
}

/// `update`: applies new resource limits.
pub fn update(root: &Path, id: &str, resources: &LinuxResources) -> Result<(), RuntimeError> {
    let (_dir, rec, status) = open(root, id)?;
    if status == Status::Stopped {
        return Err(RuntimeError::WrongState {
            id: id.to_owned(),
            status: status.to_string(),
            op: "update",
        });
    }
    let cg = rec
        .cgroup
        .as_ref()
        .ok_or_else(|| RuntimeError::Unsupported("update without a cgroup".into()))?;
    Ok(cg.apply(resources)?)
}
