//! The copy snapshotter: every snapshot is a plain directory holding the
//! whole tree; `prepare` copies the parent. Slower and bigger than overlay,
//! but works on any filesystem. Whiteouts are applied (files removed) when
//! a layer is unpacked.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};

use super::meta::{Meta, syncfs};
use super::{Info, Kind, Mount, Result, SnapshotError, Snapshotter};
use crate::unpack::WhiteoutMode;

/// Snapshots as full copies.
#[derive(Debug, Clone)]
pub struct CopySnapshotter {
    meta: Meta,
}

impl CopySnapshotter {
    /// Opens (creating) a snapshotter rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<CopySnapshotter> {
        Ok(CopySnapshotter {
            meta: Meta::open(root.into())?,
        })
    }

    fn fs_dir(&self, id: u64) -> PathBuf {
        self.meta.dir(id).join("fs")
    }
}

impl Snapshotter for CopySnapshotter {
    fn name(&self) -> &'static str {
        "copy"
    }

    fn stat(&self, key: &str) -> Result<Info> {
        self.meta.read()?.info(key)
    }

    fn list(&self) -> Result<Vec<Info>> {
        let t = self.meta.read()?;
        t.snapshots.keys().map(|k| t.info(k)).collect()
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let id = self.meta.create(key, parent, Kind::Active)?;
        let dest = self.fs_dir(id);
        let made = (|| -> Result<()> {
            match parent {
                Some(p) => {
                    let pid = self.meta.read()?.get(p)?.id;
                    fs::create_dir_all(self.meta.dir(id))
                        .map_err(|e| SnapshotError::io("create directory", self.meta.dir(id), e))?;
                    copy_tree(&self.fs_dir(pid), &dest)
                        .map_err(|e| SnapshotError::io("copy snapshot", &dest, e))
                }
                None => fs::create_dir_all(&dest)
                    .map_err(|e| SnapshotError::io("create directory", &dest, e)),
            }
        })();
        if let Err(e) = made {
            let _ = self.meta.remove(key);
            let _ = self.meta.remove_dir(id);
            return Err(e);
        }
        self.mounts(key)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>> {
        let id = self.meta.create(key, parent, Kind::View)?;
        if parent.is_none() {
            let d = self.fs_dir(id);
            if let Err(e) = fs::create_dir_all(&d) {
                let _ = self.meta.remove(key);
                return Err(SnapshotError::io("create directory", d, e));
            }
        }
        self.mounts(key)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let t = self.meta.read()?;
        let r = t.get(key)?;
        Ok(match (r.kind, &r.parent) {
            (Kind::View, Some(p)) => vec![Mount::bind(self.fs_dir(t.get(p)?.id), true)],
            (Kind::Active, _) => vec![Mount::bind(self.fs_dir(r.id), false)],
            _ => vec![Mount::bind(self.fs_dir(r.id), true)],
        })
    }

    fn commit(&self, name: &str, key: &str) -> Result<()> {
        self.meta.commit(name, key).map(|_| ())
    }

    fn remove(&self, key: &str) -> Result<()> {
        self.meta.remove(key).map(|_| ())
    }

    fn apply_target(&self, key: &str) -> Result<(PathBuf, WhiteoutMode)> {
        let id = self.meta.active_id(key)?;
        Ok((self.fs_dir(id), WhiteoutMode::Remove))
    }

    fn sync(&self, key: &str) -> Result<()> {
        let id = self.meta.read()?.get(key)?.id;
        syncfs(&self.fs_dir(id))
    }
}

impl CopySnapshotter {
    /// Removes directories of snapshots whose creation was interrupted.
    pub fn remove_orphans(&self) -> Result<usize> {
        self.meta.remove_orphans()
    }
}

/// Copies a tree preserving types, modes, owners, times, xattrs and hard
/// links. Never follows symlinks. `dest` must not exist.
pub fn copy_tree(src: &Path, dest: &Path) -> io::Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    copy_entry(src, dest, &mut links)
}

fn copy_entry(src: &Path, dest: &Path, links: &mut HashMap<(u64, u64), PathBuf>) -> io::Result<()> {
    let md = fs::symlink_metadata(src)?;
    let ft = FileType::from_raw_mode(md.mode());
    if ft != FileType::Directory && md.nlink() > 1 {
        if let Some(first) = links.get(&(md.dev(), md.ino())) {
            return fs::hard_link(first, dest);
        }
        links.insert((md.dev(), md.ino()), dest.to_owned());
    }
    match ft {
        FileType::Directory => {
            fs::create_dir(dest)?;
            for e in fs::read_dir(src)? {
                let e = e?;
                copy_entry(&e.path(), &dest.join(e.file_name()), links)?;
            }
        }
        FileType::RegularFile => {
            let mut from = fs::File::open(src)?;
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dest)?;
            io::copy(&mut from, &mut to)?;
        }
        FileType::Symlink => symlink(fs::read_link(src)?, dest)?,
        other => {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                dest,
                other,
                Mode::from_raw_mode(0o600),
                md.rdev(),
            )?;
        }
    }
    rustix::fs::chownat(
        rustix::fs::CWD,
        dest,
        Some(Uid::from_raw(md.uid())),
        Some(Gid::from_raw(md.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if ft != FileType::Symlink {
        rustix::fs::chmod(dest, Mode::from_raw_mode(md.mode() & 0o7777))?;
    }
    copy_xattrs(src, dest, ft == FileType::Symlink)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: md.atime(),
            tv_nsec: md.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: md.mtime(),
            tv_nsec: md.mtime_nsec(),
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, dest, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn copy_xattrs(src: &Path, dest: &Path, is_symlink: bool) -> io::Result<()> {
    let mut names = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(src, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(rustix::io::Errno::RANGE) => {
            names = vec![0u8; 65536];
            rustix::fs::llistxattr(src, &mut names[..])?
        }
        Err(e) => return Err(e.into()),
    };
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = OsStr::from_bytes(name);
        let mut value = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(src, name, &mut value[..])?;
        match rustix::fs::lsetxattr(dest, name, &value[..len], XattrFlags::empty()) {
            Ok(()) => {}
            // user.* xattrs cannot be set on symlinks.
            Err(rustix::io::Errno::PERM) if is_symlink => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
