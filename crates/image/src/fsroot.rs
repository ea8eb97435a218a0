//! Path resolution confined to a directory, for unpacking untrusted layers.
//!
//! Every component is opened on its own with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)` relative to the directory
//! reached so far, so the kernel refuses to cross a symlink or a mount of
//! `..` behind our back. Symlinks met on the way are read with `readlinkat`
//! and followed here, in user space, with the root as `/`: an absolute
//! target restarts from the root (as the container will see it), and a `..`
//! that would climb above the root is refused as an escape. Nothing is
//! decided on a path string that the filesystem could change afterwards: a
//! symlink swapped in mid-extraction is simply read and judged like any other.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

const MAX_SYMLINKS: usize = 40;

/// Why a path cannot be resolved inside the root.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The path would leave the root.
    #[error("path {path:?} escapes the root directory ({how})")]
    Escape {
        /// The path being resolved.
        path: PathBuf,
        /// How it escapes.
        how: &'static str,
    },
    /// A component in the middle is not a directory.
    #[error("path {path:?}: component {component:?} is not a directory")]
    NotADirectory {
        /// The path being resolved.
        path: PathBuf,
        /// The offending component.
        component: OsString,
    },
    /// Too many symlinks.
    #[error("path {0:?}: too many levels of symbolic links")]
    Loop(PathBuf),
    /// A system call failed.
    #[error("path {path:?}: {source}")]
    Io {
        /// The path being resolved.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// A directory that paths are resolved beneath.
pub struct Root {
    fd: OwnedFd,
}

fn open_component(dir: impl AsFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

impl Root {
    /// Opens `path` as a root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// The root directory's fd.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Splits `path` (relative to the root) into its parent directory,
    /// resolved and opened (`O_PATH`) inside the root, and its last
    /// component, which is not followed. With `create`, missing directories
    /// on the way are created with mode 0755.
    pub fn parent_of(
        &self,
        path: &Path,
        create: bool,
    ) -> Result<(OwnedFd, OsString), ResolveError> {
        let mut comps = lexical_components(path)?;
        let Some(last) = comps.pop() else {
            return Err(ResolveError::Escape {
                path: path.to_owned(),
                how: "it names the root itself",
            });
        };
        let dir = self.resolve_dir(path, comps, create)?;
        Ok((dir, last))
    }

    /// Opens directory `path` inside the root (following symlinks within it).
    pub fn dir(&self, path: &Path, create: bool) -> Result<OwnedFd, ResolveError> {
        let comps = lexical_components(path)?;
        self.resolve_dir(path, comps, create)
    }

    fn resolve_dir(
        &self,
        path: &Path,
        comps: Vec<OsString>,
        create: bool,
    ) -> Result<OwnedFd, ResolveError> {
        let io_err = |e: Errno| ResolveError::Io {
            path: path.to_owned(),
            source: e.into(),
        };
        let dup = |fd: &OwnedFd| {
            fd.try_clone().map_err(|source| ResolveError::Io {
                path: path.to_owned(),
                source,
            })
        };
        let mut queue: VecDeque<OsString> = comps.into();
        let mut stack: Vec<OwnedFd> = Vec::new();
        let mut current = dup(&self.fd)?;
        let mut followed = 0usize;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                match stack.pop() {
                    Some(up) => current = up,
                    None => {
                        return Err(ResolveError::Escape {
                            path: path.to_owned(),
                            how: "a symbolic link climbs above the root",
                        });
                    }
                }
                continue;
            }
            match open_component(&current, &c) {
                Ok(fd) => {
                    stack.push(std::mem::replace(&mut current, fd));
                }
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&current, &c, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err(e)),
                    }
                    queue.push_front(c);
                }
                Err(Errno::NOTDIR) | Err(Errno::LOOP) | Err(Errno::XDEV) => {
                    let st = rustix::fs::statat(&current, &c, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_err)?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                        return Err(ResolveError::NotADirectory {
                            path: path.to_owned(),
                            component: c,
                        });
                    }
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(ResolveError::Loop(path.to_owned()));
                    }
                    let target =
                        rustix::fs::readlinkat(&current, &c, Vec::new()).map_err(io_err)?;
                    let target = OsStr::from_bytes(target.as_bytes()).to_owned();
                    let target_path = Path::new(&target);
                    if target_path.is_absolute() {
                        stack.clear();
                        current = dup(&self.fd)?;
                    }
                    let mut parts: Vec<OsString> = target_path
                        .components()
                        .filter_map(|p| match p {
                            Component::Normal(n) => Some(n.to_owned()),
                            Component::ParentDir => Some(OsString::from("..")),
                            _ => None,
                        })
                        .collect();
                    while let Some(p) = parts.pop() {
                        queue.push_front(p);
                    }
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(current)
    }
}

/// The components of an entry path, refusing absolute paths and `..` that
/// climbs above the root lexically.
pub fn lexical_components(path: &Path) -> Result<Vec<OsString>, ResolveError> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(ResolveError::Escape {
                    path: path.to_owned(),
                    how: "it is absolute",
                });
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(ResolveError::Escape {
                        path: path.to_owned(),
                        how: "'..' climbs above the root",
                    });
                }
            }
            Component::Normal(n) => out.push(n.to_owned()),
        }
    }
    Ok(out)
}

/// Removes `name` in `dir` and, for a directory, everything below it,
/// never following symlinks.
pub fn remove_all_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    remove_children_at(dir, name, &|_| true)?;
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes the children of directory `name` in `dir` for which `remove`
/// returns true, never following symlinks.
pub fn remove_children_at(
    dir: impl AsFd,
    name: &OsStr,
    remove: &dyn Fn(&OsStr) -> bool,
) -> io::Result<()> {
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    let it = rustix::fs::Dir::read_from(&sub)?;
    for entry in it {
        let entry = entry?;
        let n = OsStr::from_bytes(entry.file_name().to_bytes());
        if n == "." || n == ".." || !remove(n) {
            continue;
        }
        names.push(n.to_owned());
    }
    for n in names {
        remove_all_at(&sub, &n)?;
    }
    Ok(())
}
