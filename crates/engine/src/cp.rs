//! `kontti cp`: files between the host and a container, through its mounts.
//!
//! Paths inside the container are resolved by [`crate::container_fs`] as
//! docker does: against the container's root filesystem with its volumes,
//! bind mounts and (while it runs) tmpfs mounts over it, symlinks followed
//! inside the container and never out of it. Every file below is opened
//! with `O_NOFOLLOW` relative to its directory, so a symlink planted in the
//! container or a volume cannot make the copy read or write a host file.
//! Writes into a read-only volume or a `--read-only` root filesystem are
//! refused. A stopped container's root filesystem is mounted for the copy;
//! a running one's is used in place. Devices, sockets and fifos are skipped.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kontti_image::fsroot::Root;
use kontti_image::snapshot;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::container_fs::{ContainerFs, CpError, Entry};
use crate::error::{EngineError, Result};
use crate::lifecycle::Engine;

fn cerr(path: &str) -> impl Fn(io::Error) -> EngineError + '_ {
    move |e| EngineError::invalid("cp", path, e.to_string())
}

fn cp_err(path: &str) -> impl Fn(CpError) -> EngineError + '_ {
    move |e| EngineError::invalid("cp", path, e.to_string())
}

/// A [`CpError`] met deep in a copy, carried as an I/O error.
fn io_of(e: CpError) -> io::Error {
    io::Error::other(e.to_string())
}

impl Engine {
    /// Runs `f` with the container's file tree: its root filesystem mounted
    /// and its mounts known.
    fn with_container_fs<T>(
        &self,
        what: &str,
        f: impl FnOnce(&ContainerFs) -> Result<T>,
    ) -> Result<T> {
        let id = self.containers().resolve(what)?;
        let _lock = self.containers().lock(&id)?;
        let rec = self.view(self.containers().load(&id)?);
        let bundle = self.containers().dir_of(&id).join("bundle");
        let config = bundle.join("config.json");
        let spec: serde_json::Value = std::fs::read(&config)
            .map_err(|e| EngineError::io("read", &config, e))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| EngineError::Corrupt {
                    path: config.clone(),
                    reason: e.to_string(),
                })
            })?;
        let pid = rec.state.status.is_live().then_some(rec.state.pid);
        let rootfs = bundle.join("rootfs");
        let open = |rootfs: &Path| {
            let fs = ContainerFs::open(rootfs, &spec, pid).map_err(cp_err(what))?;
            f(&fs)
        };
        if rec.state.rootfs_mounted {
            return open(&rootfs);
        }
        let sn = snapshot::open_default(self.root())?;
        let mounts = sn.mounts(&rec.snapshot)?;
        snapshot::mount::mount_all(&mounts, &rootfs)
            .map_err(|e| EngineError::io("mount the root filesystem at", &rootfs, e))?;
        let r = open(&rootfs);
        if let Err(e) = snapshot::mount::unmount_all(&rootfs, mounts.len()) {
            tracing::warn!(error = %e, "unmount {}", rootfs.display());
        }
        r
    }

    /// Copies `src` (a path in the container) to `dest` on the host: into
    /// `dest` when it is a directory, else as `dest`.
    pub fn copy_from(&self, what: &str, src: &str, dest: &Path) -> Result<()> {
        self.with_container_fs(what, |fs| {
            let e = fs.entry(src).map_err(cp_err(src))?;
            let base = e
                .path
                .last()
                .cloned()
                .unwrap_or_else(|| OsString::from("."));
            let target = if dest.is_dir() {
                dest.join(&base)
            } else {
                dest.to_owned()
            };
            let path = e.path.clone();
            copy_tree_out(&e.dir, &e.name, &target, false, Some((fs, &path))).map_err(cerr(src))
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
        self.with_container_fs(what, |fs| {
            let e = fs.entry(dest).map_err(cp_err(dest))?;
            let is_dir = rustix::fs::statat(&e.dir, &e.name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
            let target = if is_dir {
                let sub = rustix::fs::openat(
                    &e.dir,
                    &e.name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|err| {
                    EngineError::invalid("cp", dest, io::Error::from(err).to_string())
                })?;
                fs.child(sub, &e.path, base, e.readonly, dest)
                    .map_err(cp_err(dest))?
            } else {
                e
            };
            target.writable(dest).map_err(cp_err(dest))?;
            copy_in(src, &target, fs, dest).map_err(cerr(dest))
        })
    }
}

/// Copies `name` in `dir` to `dest`; with `owners`, keeps uid and gid. With
/// a container's file tree and the entry's path in it, mounts met below are
/// copied from the mount.
fn copy_tree_out(
    dir: &impl AsFd,
    name: &OsStr,
    dest: &Path,
    owners: bool,
    view: Option<(&ContainerFs, &[OsString])>,
) -> io::Result<()> {
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
                let to = dest.join(&n);
                match view {
                    Some((fs, path)) => {
                        let mut child = path.to_vec();
                        child.push(n.clone());
                        if fs.descends_into(&child) {
                            let shown = crate::container_fs::shown(&child);
                            let e = fs
                                .child(fd.try_clone()?, path, n, None, &shown)
                                .map_err(io_of)?;
                            copy_tree_out(&e.dir, &e.name, &to, owners, Some((fs, &child)))?;
                        } else {
                            copy_tree_out(&fd, &n, &to, owners, Some((fs, &child)))?;
                        }
                    }
                    None => copy_tree_out(&fd, &n, &to, owners, None)?,
                }
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
    copy_tree_out(&dir, &name, dest, true, None)
}

/// Copies `src` on the host to `target` in the container; a directory's
/// entries that land on a mount go into the mount.
fn copy_in(src: &Path, target: &Entry, fs: &ContainerFs, shown: &str) -> io::Result<()> {
    target.writable(shown).map_err(io_of)?;
    let (dir, name) = (&target.dir, target.name.as_os_str());
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
            let child = fs
                .child(
                    fd.try_clone()?,
                    &target.path,
                    entry.file_name(),
                    target.readonly,
                    shown,
                )
                .map_err(io_of)?;
            copy_in(&entry.path(), &child, fs, shown)?;
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
