//! Per-container state under the runtime root: `<root>/<id>/state.json`
//! written atomically (temp file + rename), a lock per container (`flock` on
//! the container's directory) and the status derived from the live process.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::runtime::Hooks;
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::{IoContext, RuntimeError};
use crate::sys;

/// The file holding a container's record.
const STATE_FILE: &str = "state.json";
/// The FIFO the init blocks on until `start` (as runc's `exec.fifo`).
pub const EXEC_FIFO: &str = "exec.fifo";

/// A container's status, as the OCI runtime spec (plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// The process has exited.
    Stopped,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What the runtime remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Container id.
    pub id: String,
    /// Host pid of the container's init.
    pub pid: i32,
    /// The init's start time (clock ticks since boot), to tell pid reuse.
    pub start_time: u64,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// Root file system directory.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The config's annotations.
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// The container's cgroup.
    pub cgroup: Option<Cgroup>,
    /// Hooks to run later (poststart, poststop).
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Set by `pause`, cleared by `resume`.
    #[serde(default)]
    pub paused: bool,
    /// The container has a pid namespace of its own (killing init kills all).
    #[serde(default)]
    pub own_pid_ns: bool,
}

/// The directory of one container's state.
#[derive(Debug)]
pub struct StateDir {
    dir: PathBuf,
    // held for the lifetime of the value: the container's lock
    _lock: OwnedFd,
}

impl StateDir {
    /// Creates `<root>/<id>` and locks it; fails if it exists.
    pub fn create(root: &Path, id: &str) -> Result<StateDir, RuntimeError> {
        fs::create_dir_all(root).ctx(|| format!("create state root {}", root.display()))?;
        let dir = root.join(id);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists(id.to_owned()));
            }
            Err(e) => return Err(RuntimeError::io(format!("create {}", dir.display()), e)),
        }
        let lock = lock_dir(&dir, false)?;
        Ok(StateDir { dir, _lock: lock })
    }

    /// Opens and locks the existing `<root>/<id>`.
    pub fn open(root: &Path, id: &str) -> Result<StateDir, RuntimeError> {
        let dir = root.join(id);
        let lock = match lock_dir(&dir, false) {
            Ok(l) => l,
            Err(RuntimeError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(RuntimeError::NotFound(id.to_owned()));
            }
            Err(e) => return Err(e),
        };
        if !dir.join(STATE_FILE).exists() {
            return Err(RuntimeError::NotFound(id.to_owned()));
        }
        Ok(StateDir { dir, _lock: lock })
    }

    /// The lock's fd number (a forked init closes its copy).
    pub fn lock_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self._lock.as_raw_fd()
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes the record atomically.
    pub fn save(&self, rec: &Record) -> Result<(), RuntimeError> {
        let tmp = self.dir.join(".state.json.tmp");
        let data =
            serde_json::to_vec(rec).map_err(|e| RuntimeError::io("encode state", e.into()))?;
        let mut f = File::create(&tmp).ctx(|| format!("write {}", tmp.display()))?;
        f.write_all(&data)
            .ctx(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, self.dir.join(STATE_FILE)).ctx(|| format!("rename {}", tmp.display()))
    }

    /// Reads the record.
    pub fn load(&self) -> Result<Record, RuntimeError> {
        let p = self.dir.join(STATE_FILE);
        let data = fs::read(&p).ctx(|| format!("read {}", p.display()))?;
        serde_json::from_slice(&data).map_err(|e| RuntimeError::Config {
            file: p.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// The record's live status.
    pub fn status(&self, rec: &Record) -> Status {
        if !process_alive(rec.pid, rec.start_time) {
            return Status::Stopped;
        }
        if self.dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if rec.paused {
            return Status::Paused;
        }
        Status::Running
    }

    /// Removes the directory and everything in it.
    pub fn remove(self) -> Result<(), RuntimeError> {
        fs::remove_dir_all(&self.dir).ctx(|| format!("remove {}", self.dir.display()))
    }
}

fn lock_dir(dir: &Path, nonblock: bool) -> Result<OwnedFd, RuntimeError> {
    let f = File::open(dir).ctx(|| format!("open {}", dir.display()))?;
    let fd: OwnedFd = f.into();
    sys::fs::flock_exclusive(fd.as_fd(), nonblock).ctx(|| format!("lock {}", dir.display()))?;
    Ok(fd)
}

/// The ids of every container under `root`, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>, RuntimeError> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RuntimeError::io(format!("read {}", root.display()), e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// Field 22 of `/proc/<pid>/stat` (start time) and the state letter.
pub fn proc_stat(pid: i32) -> Option<(u64, char)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces and parentheses: split after the last ')'
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    let start = it.nth(18)?.parse().ok()?;
    Some((start, state))
}

/// Whether `pid` is alive (not a zombie) and is the process started at `start_time`.
pub fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match proc_stat(pid) {
        Some((start, state)) => start == start_time && state != 'Z' && state != 'X',
        None => false,
    }
}

/// Now as RFC 3339 in UTC with nanoseconds, as runc prints `created`.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn own_process_is_alive_and_pid_reuse_is_detected() {
        let pid = sys::process::getpid();
        let (start, _) = proc_stat(pid).unwrap();
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
        assert!(!process_alive(0, 0));
    }

    #[test]
    fn create_twice_is_already_exists_and_missing_is_not_found() {
        let root = tempfile::tempdir().unwrap();
        let d = StateDir::create(root.path(), "c1").unwrap();
        drop(d);
        assert!(matches!(
            StateDir::create(root.path(), "c1"),
            Err(RuntimeError::AlreadyExists(_))
        ));
        assert!(matches!(
            StateDir::open(root.path(), "nope"),
            Err(RuntimeError::NotFound(_))
        ));
    }
}
