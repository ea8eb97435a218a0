//! Container records on disk: `R/containers/<id>/container.json`, written
//! with a temp file and a rename under the container's lock file, so that
//! several CLI processes, exit commands and the node agent can work on one
//! state root at once. Names are unique: creating, renaming and removing
//! hold the root's `names.lock` while they check and write.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};
use crate::options::RunOptions;

/// The file of a container's record inside its directory.
pub const RECORD_FILE: &str = "container.json";

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Frozen.
    Paused,
    /// Exited and waiting for its restart policy's back-off.
    Restarting,
    /// Its process exited.
    Exited,
    /// Being removed.
    Removing,
}

impl Status {
    /// docker's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
        }
    }

    /// Whether a process of the container may be alive.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The changing part of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    /// The status.
    pub status: Status,
    /// The container's init pid while it runs (0 otherwise).
    #[serde(default)]
    pub pid: i32,
    /// The supervisor's pid while it runs (0 otherwise).
    #[serde(default)]
    pub supervisor_pid: i32,
    /// The last start, RFC 3339.
    #[serde(default)]
    pub started_at: Option<String>,
    /// The last exit, RFC 3339.
    #[serde(default)]
    pub finished_at: Option<String>,
    /// The last exit code (128+signal for a signal).
    #[serde(default)]
    pub exit_code: i32,
    /// Whether the kernel's OOM killer killed a process of the last run.
    #[serde(default)]
    pub oom_killed: bool,
    /// Why the last start failed.
    #[serde(default)]
    pub error: Option<String>,
    /// `stop` or `kill` asked for this exit: no restart (unless-stopped
    /// stays stopped; always restarts only at the next `start`).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// The root filesystem is mounted at `bundle/rootfs`.
    #[serde(default)]
    pub rootfs_mounted: bool,
}

impl Default for ContainerState {
    fn default() -> Self {
        ContainerState {
            status: Status::Created,
            pid: 0,
            supervisor_pid: 0,
            started_at: None,
            finished_at: None,
            exit_code: 0,
            oom_killed: false,
            error: None,
            stopped_by_user: false,
            rootfs_mounted: false,
        }
    }
}

/// What the engine remembers about one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// 64 lowercase hex characters.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image as the user named it.
    pub image: String,
    /// The image id (config digest).
    pub image_id: String,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The options it was created with.
    pub options: RunOptions,
    /// The process's arguments as they run (entrypoint + command).
    pub args: Vec<String>,
    /// Signal that stops it.
    pub stop_signal: i32,
    /// Snapshot key of its root filesystem.
    pub snapshot: String,
    /// How many mounts make the root filesystem.
    pub rootfs_mounts: usize,
    /// Volumes it holds (names), released on removal.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Anonymous volumes created for it (removed with `rm -v`).
    #[serde(default)]
    pub anonymous_volumes: Vec<String>,
    /// Its state.
    pub state: ContainerState,
    /// Restarts by the restart policy since the last user start.
    #[serde(default)]
    pub restart_count: u32,
}

impl ContainerRecord {
    /// The short id (12 characters).
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }
}

/// Whether `s` is a valid container (or volume) name.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && s.len() <= 253
}

/// A new random container id: 64 lowercase hex characters.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| EngineError::io("read", "/dev/urandom", e))?;
    // an all-digit short id would read as a number; docker avoids it too
    let id = hex::encode(b);
    if id[..12].bytes().all(|c| c.is_ascii_digit()) {
        return new_id();
    }
    Ok(id)
}

/// An exclusive `flock` on a file, released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock on `path`, creating the file.
    pub fn exclusive(path: &Path) -> Result<Lock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| EngineError::io("open lock", path, e))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| EngineError::io("lock", path, e.into()))?;
        Ok(Lock { _file: file })
    }
}

/// The containers under a state root.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
}

impl Containers {
    /// Opens (creating) `R/containers`.
    pub fn open(root: &Path) -> Result<Containers> {
        let dir = root.join("containers");
        fs::create_dir_all(&dir).map_err(|e| EngineError::io("create", &dir, e))?;
        Ok(Containers { dir })
    }

    /// `R/containers/<id>`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The lock that serialises name changes (create, rename, remove).
    pub fn lock_names(&self) -> Result<Lock> {
        Lock::exclusive(&self.dir.join("names.lock"))
    }

    /// The lock of one container's record.
    pub fn lock(&self, id: &str) -> Result<Lock> {
        let dir = self.dir_of(id);
        if !dir.is_dir() {
            return Err(EngineError::NotFound(id.to_owned()));
        }
        match Lock::exclusive(&dir.join("lock")) {
            // removed between the check and the open
            Err(EngineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Err(EngineError::NotFound(id.to_owned()))
            }
            other => other,
        }
    }

    /// Reads a record.
    pub fn load(&self, id: &str) -> Result<ContainerRecord> {
        let path = self.dir_of(id).join(RECORD_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(EngineError::NotFound(id.to_owned()));
            }
            Err(e) => return Err(EngineError::io("read", &path, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes a record atomically (temp file, fsync, rename).
    pub fn save(&self, rec: &ContainerRecord) -> Result<()> {
        let dir = self.dir_of(&rec.id);
        let path = dir.join(RECORD_FILE);
        let tmp = dir.join(format!(".{RECORD_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| EngineError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| EngineError::io("write", &path, e))
    }

    /// The ids of every container directory with a record.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = fs::read_dir(&self.dir).map_err(|e| EngineError::io("read", &self.dir, e))?;
        let mut ids = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && e.path().join(RECORD_FILE).is_file() {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every record (records that vanish while listing are skipped).
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(r) => out.push(r),
                Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Finds a container by full id, name, or unique id prefix.
    pub fn resolve(&self, what: &str) -> Result<String> {
        if what.is_empty() {
            return Err(EngineError::NotFound(what.to_owned()));
        }
        let ids = self.ids()?;
        if ids.iter().any(|i| i == what) {
            return Ok(what.to_owned());
        }
        if valid_name(what) {
            for id in &ids {
                if let Ok(r) = self.load(id)
                    && r.name == what
                {
                    return Ok(id.clone());
                }
            }
        }
        let hits: Vec<&String> = ids.iter().filter(|i| i.starts_with(what)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(EngineError::NotFound(what.to_owned())),
            _ => Err(EngineError::Ambiguous(what.to_owned())),
        }
    }

    /// The id of the container named `name`, if any.
    pub fn by_name(&self, name: &str) -> Result<Option<String>> {
        for r in self.list()? {
            if r.name == name {
                return Ok(Some(r.id));
            }
        }
        Ok(None)
    }
}

/// docker's generated names: an adjective and a scientist.
pub fn generate_name(id: &str) -> String {
    const LEFT: &[&str] = &[
        "brave", "calm", "eager", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nifty",
        "proud", "quiet", "sharp", "swift", "tender", "vivid", "wise", "zen",
    ];
    const RIGHT: &[&str] = &[
        "lovelace", "turing", "hopper", "noether", "curie", "euler", "gauss", "hamilton", "kepler",
        "lamarr", "meitner", "ritchie", "shannon", "thompson", "torvalds", "wozniak",
    ];
    let n = u64::from_str_radix(&id[..12.min(id.len())], 16).unwrap_or(0);
    let l = LEFT[(n % LEFT.len() as u64) as usize];
    let r = RIGHT[((n / LEFT.len() as u64) % RIGHT.len() as u64) as usize];
    format!("{l}_{r}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> ContainerRecord {
        ContainerRecord {
            id: id.to_owned(),
            name: name.to_owned(),
            image: "busybox".into(),
            image_id: "sha256:00".into(),
            created: "2026-01-01T00:00:00Z".into(),
            options: RunOptions::default(),
            args: vec!["sh".into()],
            stop_signal: 15,
            snapshot: "k".into(),
            rootfs_mounts: 1,
            volumes: vec![],
            anonymous_volumes: vec![],
            state: ContainerState::default(),
            restart_count: 0,
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-web"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        let id = new_id().unwrap();
        assert_eq!(id.len(), 64);
        assert!(valid_name(&generate_name(&id)));
    }

    #[test]
    fn records_round_trip_and_resolve() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Containers::open(tmp.path()).unwrap();
        let a = "a".repeat(63) + "1";
        let b = "ab".to_owned() + &"c".repeat(62);
        for (id, name) in [(&a, "one"), (&b, "two")] {
            fs::create_dir_all(c.dir_of(id)).unwrap();
            let _l = c.lock(id).unwrap();
            c.save(&record(id, name)).unwrap();
        }
        assert_eq!(c.load(&a).unwrap(), record(&a, "one"));
        assert_eq!(c.resolve("two").unwrap(), b);
        assert_eq!(c.resolve(&a[..5]).unwrap(), a);
        assert!(matches!(c.resolve("a"), Err(EngineError::Ambiguous(_))));
        assert!(matches!(c.resolve("zzz"), Err(EngineError::NotFound(_))));
        assert_eq!(c.by_name("one").unwrap().as_deref(), Some(a.as_str()));
        assert_eq!(c.list().unwrap().len(), 2);
    }
}
