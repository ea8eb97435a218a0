//! Snapshot metadata shared by the snapshotters: one JSON file, rewritten
//! under an exclusive flock and renamed into place, so readers in other
//! processes always see a whole, consistent file.
//!
//! ```text
//! <root>/metadata.json   {"next_id": N, "snapshots": {key: {id, kind, parent}}}
//! <root>/metadata.lock
//! <root>/s/<id>/         one directory per snapshot (short names keep
//!                        overlay's lowerdir option short)
//! ```

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use serde::{Deserialize, Serialize};

use super::{Info, Kind, Result, SnapshotError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub id: u64,
    pub kind: Kind,
    pub parent: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Table {
    pub next_id: u64,
    pub snapshots: BTreeMap<String, Record>,
}

impl Table {
    pub fn get(&self, key: &str) -> Result<&Record> {
        self.snapshots
            .get(key)
            .ok_or_else(|| SnapshotError::NotFound(key.to_owned()))
    }

    pub fn info(&self, key: &str) -> Result<Info> {
        let r = self.get(key)?;
        Ok(Info {
            key: key.to_owned(),
            parent: r.parent.clone(),
            kind: r.kind,
        })
    }

    /// The ids of `key` and its ancestors, nearest first.
    pub fn chain(&self, key: &str) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        let mut cur = Some(key.to_owned());
        while let Some(k) = cur {
            let r = self.get(&k)?;
            out.push(r.id);
            cur = r.parent.clone();
            if out.len() > 1000 {
                return Err(SnapshotError::BadMetadata {
                    path: PathBuf::from(key),
                    reason: "parent chain loops".into(),
                });
            }
        }
        Ok(out)
    }

    pub fn children(&self, key: &str) -> usize {
        self.snapshots
            .values()
            .filter(|r| r.parent.as_deref() == Some(key))
            .count()
    }
}

/// The metadata of one snapshotter root.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    root: PathBuf,
}

pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > 512 || key.contains('\0') {
        return Err(SnapshotError::BadKey(key.to_owned()));
    }
    Ok(())
}

impl Meta {
    pub fn open(root: PathBuf) -> Result<Meta> {
        let s = root.join("s");
        fs::create_dir_all(&s).map_err(|e| SnapshotError::io("create directory", &s, e))?;
        Ok(Meta { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.root.join("s").join(id.to_string())
    }

    fn path(&self) -> PathBuf {
        self.root.join("metadata.json")
    }

    pub fn read(&self) -> Result<Table> {
        let p = self.path();
        match fs::read(&p) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| SnapshotError::BadMetadata {
                path: p,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Table {
                next_id: 1,
                snapshots: BTreeMap::new(),
            }),
            Err(e) => Err(SnapshotError::io("read", p, e)),
        }
    }

    /// Runs `f` on the table under the lock and writes the result back.
    pub fn update<T>(&self, f: impl FnOnce(&mut Table) -> Result<T>) -> Result<T> {
        let lp = self.root.join("metadata.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lp)
            .map_err(|e| SnapshotError::io("open", &lp, e))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| SnapshotError::io("lock", &lp, e.into()))?;
        let mut table = self.read()?;
        let out = f(&mut table)?;
        let data = serde_json::to_vec_pretty(&table).map_err(|e| SnapshotError::BadMetadata {
            path: self.path(),
            reason: e.to_string(),
        })?;
        let tmp = self.root.join(format!(".metadata.{}", std::process::id()));
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
            fs::rename(&tmp, self.path())?;
            File::open(&self.root)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(SnapshotError::io("write", self.path(), e));
        }
        Ok(out)
    }

    /// Adds a record for a new snapshot, checking the parent; returns its id.
    pub fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<u64> {
        check_key(key)?;
        self.update(|t| {
            if t.snapshots.contains_key(key) {
                return Err(SnapshotError::AlreadyExists(key.to_owned()));
            }
            if let Some(p) = parent {
                let pr = t.get(p)?;
                if pr.kind != Kind::Committed {
                    return Err(SnapshotError::WrongKind {
                        key: p.to_owned(),
                        actual: pr.kind,
                        expected: Kind::Committed,
                    });
                }
            }
            let id = t.next_id.max(1);
            t.next_id = id + 1;
            t.snapshots.insert(
                key.to_owned(),
                Record {
                    id,
                    kind,
                    parent: parent.map(str::to_owned),
                },
            );
            Ok(id)
        })
    }

    /// Renames active `key` to committed `name`.
    pub fn commit(&self, name: &str, key: &str) -> Result<u64> {
        check_key(name)?;
        self.update(|t| {
            let r = t.get(key)?.clone();
            if r.kind != Kind::Active {
                return Err(SnapshotError::WrongKind {
                    key: key.to_owned(),
                    actual: r.kind,
                    expected: Kind::Active,
                });
            }
            if t.snapshots.contains_key(name) {
                return Err(SnapshotError::AlreadyExists(name.to_owned()));
            }
            t.snapshots.remove(key);
            t.snapshots.insert(
                name.to_owned(),
                Record {
                    kind: Kind::Committed,
                    ..r.clone()
                },
            );
            Ok(r.id)
        })
    }

    /// Removes snapshot `key` (which must have no children): first its
    /// directory, which frees space (removal must work on a full disk),
    /// then its record.
    pub fn remove(&self, key: &str) -> Result<u64> {
        self.update(|t| {
            let id = t.get(key)?.id;
            let children = t.children(key);
            if children > 0 {
                return Err(SnapshotError::HasChildren {
                    key: key.to_owned(),
                    children,
                });
            }
            self.remove_dir(id)?;
            t.snapshots.remove(key);
            Ok(id)
        })
    }

    /// Removes a snapshot directory, also one of a crashed creation.
    pub fn remove_dir(&self, id: u64) -> Result<()> {
        let d = self.dir(id);
        match fs::remove_dir_all(&d) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SnapshotError::io("remove", d, e)),
        }
    }

    /// The id of active snapshot `key`; an error if it is missing or not active.
    pub fn active_id(&self, key: &str) -> Result<u64> {
        let t = self.read()?;
        let r = t.get(key)?;
        if r.kind != Kind::Active {
            return Err(SnapshotError::WrongKind {
                key: key.to_owned(),
                actual: r.kind,
                expected: Kind::Active,
            });
        }
        Ok(r.id)
    }

    /// Removes the directories of snapshots whose creation was interrupted.
    pub fn remove_orphans(&self) -> Result<usize> {
        let ids = self.orphan_dirs()?;
        for id in &ids {
            self.remove_dir(*id)?;
        }
        Ok(ids.len())
    }

    /// Directories under `s/` with no record (left by a killed process).
    pub fn orphan_dirs(&self) -> Result<Vec<u64>> {
        let t = self.read()?;
        let known: std::collections::BTreeSet<u64> = t.snapshots.values().map(|r| r.id).collect();
        let s = self.root.join("s");
        let rd = fs::read_dir(&s).map_err(|e| SnapshotError::io("read directory", &s, e))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            if let Ok(id) = e.file_name().to_string_lossy().parse::<u64>()
                && id < t.next_id
                && !known.contains(&id)
            {
                out.push(id);
            }
        }
        Ok(out)
    }
}

/// Syncs the filesystem holding `path`.
pub(crate) fn syncfs(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| SnapshotError::io("open", path, e))?;
    rustix::fs::syncfs(&f).map_err(|e| SnapshotError::io("sync", path, e.into()))
}
