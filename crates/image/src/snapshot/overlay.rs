//! The overlayfs snapshotter: every snapshot is a directory `s/<id>/fs`; an
//! active snapshot with a parent is mounted as an overlay whose lower
//! directories are the parent chain's `fs` directories and whose upper is
//! its own `fs` (plus `work`). Committed layers are shared by every snapshot
//! above them, so a layer is on disk once however many images use it.

use std::fs;
use std::path::PathBuf;

use super::meta::{Meta, Record, check_key, syncfs};
use super::{Info, Kind, Mount, Result, SnapshotError, Snapshotter};
use crate::unpack::WhiteoutMode;

/// Snapshots as overlayfs layers.
#[derive(Debug, Clone)]
pub struct OverlaySnapshotter {
    meta: Meta,
}

impl OverlaySnapshotter {
    /// Opens (creating) a snapshotter rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<OverlaySnapshotter> {
        Ok(OverlaySnapshotter {
            meta: Meta::open(root.into())?,
        })
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.meta.dir(id).join("fs")
    }

    /// A committed snapshot needs no overlay work directory.
    fn remove_work_dir(&self, id: u64) {
        let work = self.meta.dir(id).join("work");
        if let Err(e) = fs::remove_dir_all(&work)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %work.display(), error = %e, "cannot remove overlay work dir");
        }
    }

    fn create(&self, key: &str, parent: Option<&str>, kind: Kind) -> Result<Vec<Mount>> {
        let id = self.meta.create(key, parent, kind)?;
        let dir = self.meta.dir(id);
        let made = (|| {
            fs::create_dir_all(dir.join("fs"))?;
            if kind == Kind::Active {
                fs::create_dir_all(dir.join("work"))?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = self.meta.remove(key);
            let _ = self.meta.remove_dir(id);
            return Err(SnapshotError::io("create snapshot directory", dir, e));
        }
        self.mounts(key)
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.meta.read()?.info(key)
    }

    fn list(&self) -> Result<Vec<Info>> {
        let t = self.meta.read()?;
        t.snapshots.keys().map(|k| t.info(k)).collect()
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let t = self.meta.read()?;
        let r = t.get(key)?;
        let lowers: Vec<PathBuf> = match &r.parent {
            Some(p) => t.chain(p)?.into_iter().map(|id| self.fs_dir(id)).collect(),
            None => Vec::new(),
        };
        let own = self.fs_dir(r.id);
        Ok(match (r.kind, lowers.as_slice()) {
            (Kind::Active, []) => vec![Mount::bind(own, false)],
            (Kind::Active, _) => vec![Mount::overlay(
                &lowers,
                Some((own, self.meta.dir(r.id).join("work"))),
            )],
            (_, []) => vec![Mount::bind(own, true)],
            (_, [one]) => vec![Mount::bind(one.clone(), true)],
            (_, _) => vec![Mount::overlay(&lowers, None)],
        })
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        let id = self.meta.commit(name, key)?;
        self.remove_work_dir(id);
        Ok(())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.meta.remove(key).map(|_| ())
    }

    fn apply_target(&self, key: &str) -> Result<(PathBuf, WhiteoutMode)> {
        let id = self.meta.active_id(key)?;
        // The upper directory holds exactly the diff, in overlay's format.
        Ok((self.fs_dir(id), WhiteoutMode::Overlay))
    }

    fn sync(&self, key: &str) -> Result<()> {
        let id = self.meta.read()?.get(key)?.id;
        syncfs(&self.fs_dir(id))
    }

    fn independent_layers(&self) -> bool {
        // An upper directory holds the diff alone, whiteouts included.
        true
    }

    fn commit_on(&self, name: &str, key: &str, parent: Option<&str>) -> Result<()> {
        check_key(name)?;
        let id = self.meta.update(|t| {
            let r = t.get(key)?.clone();
            if r.kind != Kind::Active {
                return Err(SnapshotError::WrongKind {
                    key: key.to_owned(),
                    actual: r.kind,
                    expected: Kind::Active,
                });
            }
            if r.parent.is_some() && r.parent.as_deref() != parent {
                return Err(SnapshotError::ParentMismatch {
                    key: key.to_owned(),
                    parent: parent.unwrap_or("").to_owned(),
                });
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
            if t.snapshots.contains_key(name) {
                return Err(SnapshotError::AlreadyExists(name.to_owned()));
            }
            t.snapshots.remove(key);
            t.snapshots.insert(
                name.to_owned(),
                Record {
                    id: r.id,
                    kind: Kind::Committed,
                    parent: parent.map(str::to_owned),
                },
            );
            Ok(r.id)
        })?;
        self.remove_work_dir(id);
        Ok(())
    }
}

impl OverlaySnapshotter {
    /// Removes directories of snapshots whose creation was interrupted.
    pub fn remove_orphans(&self) -> Result<usize> {
        self.meta.remove_orphans()
    }

    /// The snapshotter's root directory.
    pub fn root(&self) -> &std::path::Path {
        self.meta.root()
    }
}
