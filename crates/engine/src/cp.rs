//! `kontti cp`: files between the host and a container's root filesystem.
//!
//! Paths inside the container are resolved with `kontti-image::fsroot`
//! (the container's root is `/`, symlinks are followed inside it and never
//! out of it), and every file below is opened with `O_NOFOLLOW` relative to
//! its directory, so a symlink planted in the container cannot make the
//! copy read or write a host file. A stopped container's root filesystem is
//! mounted for the copy; a running one's is used in place (its volumes and
//! bind mounts are not part of it). Devices, sockets and fifos are skipped.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kontti_image::fsroot::Root;
use kontti_image::snapshot;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::error::{EngineError, Result};
use crate::lifecycle::Engine;

fn cerr(path: &str) -> impl Fn(io::Error) -> EngineError + '_ {
    move |e| EngineError::invalid("cp", path, e.to_string())
}

impl Engine {
    /// Runs `f` with the container's root filesystem mounted.
    fn with_rootfs<T>(&self, what: &str, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
        let id = self.containers().resolve(what)?;
        let _lock = self.containers().lock(&id)?;
        let rec = self.containers().load(&id)?;
        let rootfs = self.containers().dir_of(&id).join("bundle").join("rootfs");
        if rec.state.rootfs_mounted {
            return f(&rootfs);
        }
        let sn = snapshot::open_default(self.root())?;
        let mounts = sn.mounts(&rec.snapshot)?;
        snapshot::mount::mount_all(&mounts, &rootfs)
            .map_err(|e| EngineError::io("mount the root filesystem at", &rootfs, e))?;
        let r = f(&rootfs);
        if let Err(e) = snapshot::mount::unmount_all(&rootfs, mounts.len()) {
            tracing::warn!(error = %e, "unmount {}", rootfs.display());
        }
        r
    }

    /// Copies `src` (a path in the container) to `dest` on the host: into
    /// `dest` when it is a directory, else as `dest`.
    pub fn copy_from(&self, what: &str, src: &str, dest: &Path) -> Result<()> {
        self.with_rootfs(what, |rootfs| {
            let root = Root::open(rootfs).map_err(|e| EngineError::io("open", rootfs, e))?;
            let (dir, name) = root
                .parent_of(Path::new(src.trim_start_matches('/')), false)
                .map_err(|e| EngineError::invalid("cp", src, e.to_string()))?;
            let target = if dest.is_dir() {
                dest.join(&name)
            } else {
                dest.to_owned()
            };
            copy_out(&dir, &name, &target).map_err(cerr(src))
        })
    }

    /// Copies `src` on the host to `dest` in the container: into `dest`
    /// when it is a directory there, else as `dest`.
    pub fn copy_to(&self, what: &str, src: &Path, dest: &str) -> Result<()> {
        let shown = src.display().to_string();
        let base = src
            .file_name()
            .ok_or_else(|| EngineError::invalid("cp", &shown, "the source has no file name"))?
            .to_owned();
        std::fs::symlink_metadata(src)
            .map_err(|e| EngineError::invalid("cp", &shown, e.to_string()))?;
        self.with_rootfs(what, |rootfs| {
            let root = Root::open(rootfs).map_err(|e| EngineError::io("open", rootfs, e))?;
            let rel = dest.trim_start_matches('/');
            if rel.trim_end_matches('/').is_empty() {
                // into the container's /
                let top = root
                    .fd()
                    .try_clone()
                    .map_err(|e| EngineError::io("open", rootfs, e))?;
                return copy_in(src, &top, &base).map_err(cerr(dest));
            }
            let (dir, name) = root
                .parent_of(Path::new(rel), false)
                .map_err(|e| EngineError::invalid("cp", dest, e.to_string()))?;
            let is_dir = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
            if is_dir {
                let sub = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| EngineError::invalid("cp", dest, io::Error::from(e).to_string()))?;
                copy_in(src, &sub, &base).map_err(cerr(dest))
            } else {
                copy_in(src, &dir, &name).map_err(cerr(dest))
            }
        })
    }
}

fn copy_out(dir: &impl AsFd, name: &OsStr, dest: &Path) -> io::Result<()> {
    copy_tree_out(dir, name, dest, false)
}

/// Copies `name` in `dir` to `dest`; with `owners`, keeps uid and gid.
fn copy_tree_out(dir: &impl AsFd, name: &OsStr, dest: &Path, owners: bool) -> io::Result<()> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    let mode = st.st_mode & 0o7777;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            match std::fs::create_dir(dest) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dest.is_dir() => {}
                Err(e) => return Err(e),
            }
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut names = Vec::new();
            for entry in rustix::fs::Dir::read_from(&fd)? {
                let entry = entry?;
                let n = entry.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(OsStr::from_bytes(n).to_owned());
                }
            }
            for n in names {
                copy_tree_out(&fd, &n, &dest.join(&n), owners)?;
            }
            chown(dest, &st, owners)?;
            std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))
        }
        FileType::RegularFile => {
            let fd = rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let mut from = File::from(fd);
            let mut to = File::create(dest)?;
            io::copy(&mut from, &mut to)?;
            chown(dest, &st, owners)?;
            to.set_permissions(std::fs::Permissions::from_mode(mode))
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
            std::os::unix::fs::symlink(OsStr::from_bytes(target.as_bytes()), dest)?;
            chown(dest, &st, owners)
        }
        _ => {
            tracing::warn!(path = %dest.display(), "cp: skipping a special file");
            Ok(())
        }
    }
}

fn chown(dest: &Path, st: &rustix::fs::Stat, owners: bool) -> io::Result<()> {
    if owners {
        std::os::unix::fs::lchown(dest, Some(st.st_uid), Some(st.st_gid))?;
    }
    Ok(())
}

/// Copies what the image has at `path` (inside `rootfs`) into a new,
/// empty volume directory `dest`, keeping modes and owners, as docker
/// does for a volume mounted over image content. Nothing when the image
/// has no directory there.
pub(crate) fn copy_up(rootfs: &Path, path: &str, dest: &Path) -> io::Result<()> {
    let root = Root::open(rootfs)?;
    let rel = path.trim_start_matches('/');
    let Ok((dir, name)) = root.parent_of(Path::new(rel), false) else {
        return Ok(());
    };
    let is_dir = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
    if !is_dir || std::fs::read_dir(dest)?.next().is_some() {
        return Ok(());
    }
    copy_tree_out(&dir, &name, dest, true)
}

fn copy_in(src: &Path, dir: &impl AsFd, name: &OsStr) -> io::Result<()> {
    let md = std::fs::symlink_metadata(src)?;
    let mode = Mode::from_raw_mode(md.mode() & 0o7777);
    let ft = md.file_type();
    if ft.is_dir() {
        match rustix::fs::mkdirat(dir, name, mode) {
            Ok(()) => {}
            Err(rustix::io::Errno::EXIST) => {
                let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
                if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                    return Err(io::Error::other(format!(
                        "{} exists and is not a directory",
                        PathBuf::from(name).display()
                    )));
                }
            }
            Err(e) => return Err(e.into()),
        }
        let fd: OwnedFd = rustix::fs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_in(&entry.path(), &fd, &entry.file_name())?;
        }
        Ok(())
    } else if ft.is_file() {
        // O_NOFOLLOW: a symlink planted at the destination is refused (ELOOP)
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            mode,
        )?;
        let mut to = File::from(fd);
        io::copy(&mut File::open(src)?, &mut to)?;
        to.set_permissions(std::fs::Permissions::from_mode(mode.bits()))
    } else if ft.is_symlink() {
        let target = std::fs::read_link(src)?;
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        rustix::fs::symlinkat(&target, dir, name)?;
        Ok(())
    } else {
        tracing::warn!(path = %src.display(), "cp: skipping a special file");
        Ok(())
    }
}
