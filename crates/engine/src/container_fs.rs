//! A container's file tree as `kontti cp` sees it: the root filesystem with
//! the container's mounts over it, as docker resolves `cp` paths.
//!
//! A path is walked one component at a time from the container's `/`.
//! When the path reached so far is a mount's destination, the walk goes on
//! in the mount: in a running container, the mount itself as the container
//! sees it, through its `/proc/<pid>/root` (checked to be the container's
//! root); in a stopped one, a volume's or bind mount's directory on the
//! host (a tmpfs exists only while it runs). The deepest mount wins, as
//! the container sees it. Symlinks are read and followed
//! here with the container's `/` as the root (an absolute target restarts
//! the walk from the container's `/`, a `..` at a mount's root goes back
//! to the directory the mount sits on), and every component is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to the
//! directory reached so far: a symlink inside a volume or the root
//! filesystem never takes the walk to a host path.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde_json::Value;

const MAX_SYMLINKS: usize = 40;

/// Why a write is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadOnly {
    /// A read-only volume or bind mount.
    Volume,
    /// `--read-only`.
    Rootfs,
    /// A kernel file system mounted read-only (`/sys`).
    Mount,
}

impl ReadOnly {
    fn message(self) -> &'static str {
        match self {
            ReadOnly::Volume => "mounted volume is marked read-only",
            ReadOnly::Rootfs => "container rootfs is marked read-only",
            ReadOnly::Mount => "the file system mounted there is read-only",
        }
    }
}

/// Why a `cp` path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// The path would leave the container's root.
    #[error("path {0:?} escapes the container's root directory")]
    Escape(String),
    /// A component on the way is missing.
    #[error("{path}: No such file or directory ({component:?} is missing)")]
    Missing {
        /// The path.
        path: String,
        /// The missing component.
        component: OsString,
    },
    /// A component on the way is not a directory.
    #[error("{path}: {component:?} is not a directory")]
    NotADirectory {
        /// The path.
        path: String,
        /// The component.
        component: OsString,
    },
    /// Too many symlinks.
    #[error("{0}: too many levels of symbolic links")]
    Loop(String),
    /// A write where the container's mount is read-only.
    #[error("{path}: {}", .reason.message())]
    ReadOnly {
        /// The path.
        path: String,
        /// Which mount.
        reason: ReadOnly,
    },
    /// A tmpfs or kernel file system of a container that does not run.
    #[error(
        "{path}: the {kind} mounted at {dest} exists only while the container runs; start it first"
    )]
    NotRunning {
        /// The path.
        path: String,
        /// The mount's type.
        kind: String,
        /// Its destination.
        dest: String,
    },
    /// A stopped container's bind mount whose host path has a symlink.
    #[error(
        "{path}: the host path {source_path} of the mount at {dest} goes through a symbolic link; cp reaches it only while the container runs"
    )]
    SymlinkedSource {
        /// The path.
        path: String,
        /// The mount's host path.
        source_path: String,
        /// Its destination.
        dest: String,
    },
    /// A system call failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

#[derive(Debug)]
enum Source {
    /// A bind mount (volumes are bind mounts of their directories).
    Bind(PathBuf),
    /// Anything the kernel makes at mount time: tmpfs, proc, sysfs, ...
    Kernel(String),
}

#[derive(Debug)]
struct MountPoint {
    dest: Vec<OsString>,
    shown: String,
    source: Source,
    readonly: bool,
}

/// An entry found by a walk: `name` in `dir`, where writes may be refused.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The directory holding it.
    pub dir: OwnedFd,
    /// Its name there.
    pub name: OsString,
    /// Why writing it (or into it) is refused.
    pub readonly: Option<ReadOnly>,
    /// Its path in the container.
    pub path: Vec<OsString>,
}

impl Entry {
    /// Refuses a write with the container path `shown`.
    pub(crate) fn writable(&self, shown: &str) -> Result<(), CpError> {
        match self.readonly {
            Some(reason) => Err(CpError::ReadOnly {
                path: shown.to_owned(),
                reason,
            }),
            None => Ok(()),
        }
    }
}

/// The root filesystem and the mounts of one container.
#[derive(Debug)]
pub(crate) struct ContainerFs {
    root: OwnedFd,
    root_readonly: bool,
    mounts: Vec<MountPoint>,
    /// The running container's `/` (through `/proc/<pid>/root`).
    live_root: Option<OwnedFd>,
}

fn io_err(path: &str) -> impl Fn(Errno) -> CpError + '_ {
    move |e| CpError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

fn open_dir(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn open_component(dir: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
}

fn dup(fd: &OwnedFd, shown: &str) -> Result<OwnedFd, CpError> {
    fd.try_clone().map_err(|source| CpError::Io {
        path: shown.to_owned(),
        source,
    })
}

/// A container path's components (`..` that climbs above `/` is refused).
pub(crate) fn components(path: &str) -> Result<Vec<OsString>, CpError> {
    let mut out: Vec<OsString> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(CpError::Escape(path.to_owned()));
                }
            }
            Component::Normal(n) => out.push(n.to_owned()),
        }
    }
    Ok(out)
}

/// A component list as a container path, for messages.
pub(crate) fn shown(path: &[OsString]) -> String {
    let mut s = String::new();
    for c in path {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

impl ContainerFs {
    /// The container whose root filesystem is mounted at `rootfs`, with the
    /// OCI spec's `mounts`; `pid` is its init's while it runs.
    pub(crate) fn open(
        rootfs: &Path,
        spec: &Value,
        pid: Option<i32>,
    ) -> Result<ContainerFs, CpError> {
        let shown_root = rootfs.display().to_string();
        let root = open_dir(rootfs).map_err(io_err(&shown_root))?;
        let root_readonly = spec["root"]["readonly"].as_bool().unwrap_or(false);
        let mut mounts = Vec::new();
        for m in spec["mounts"].as_array().into_iter().flatten() {
            let Some(dest) = m["destination"].as_str() else {
                continue;
            };
            let comps = components(dest)?;
            if comps.is_empty() {
                continue;
            }
            let kind = m["type"].as_str().unwrap_or("bind");
            let options: Vec<&str> = m["options"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let is_bind = kind == "bind" || options.iter().any(|o| *o == "bind" || *o == "rbind");
            let source = match (is_bind, m["source"].as_str()) {
                (true, Some(s)) => Source::Bind(PathBuf::from(s)),
                _ => Source::Kernel(kind.to_owned()),
            };
            mounts.push(MountPoint {
                dest: comps,
                shown: dest.to_owned(),
                source,
                readonly: options.contains(&"ro"),
            });
        }
        let live_root = match pid {
            Some(pid) if pid > 0 => live_root(pid, &root),
            _ => None,
        };
        Ok(ContainerFs {
            root,
            root_readonly,
            mounts,
            live_root,
        })
    }

    fn root_ro(&self) -> Option<ReadOnly> {
        self.root_readonly.then_some(ReadOnly::Rootfs)
    }

    /// The mount whose destination is `path` (the last one listed wins, as
    /// it is mounted last).
    fn mount_at(&self, path: &[OsString]) -> Option<&MountPoint> {
        self.mounts.iter().rev().find(|m| m.dest == path)
    }

    /// Where the mount's root is: (its parent directory, its name there,
    /// whether that name may be a symlink to follow). In a running
    /// container, every mount is reached as the container sees it, through
    /// its `/proc/<pid>/root` (a bind mount holds the directory it was made
    /// of, whatever its host path became since); in a stopped one, a bind
    /// mount's source is the host path the user or the volume gave,
    /// followed only if no symlink is on the way.
    fn locate_mount(
        &self,
        m: &MountPoint,
        shown: &str,
    ) -> Result<(OwnedFd, OsString, bool), CpError> {
        if let Some(live) = &self.live_root {
            let mut comps = m.dest.clone();
            let last = comps.pop().unwrap_or_default();
            let (dir, _, _) = self.walk(live, None, comps, false, shown)?;
            return Ok((dir, last, false));
        }
        match &m.source {
            Source::Bind(src) => {
                let (parent, name) = match (src.parent(), src.file_name()) {
                    (Some(p), Some(n)) => (p.to_owned(), n.to_owned()),
                    _ => (src.clone(), OsString::from(".")),
                };
                // no symlink on the way: another container writing below
                // the source's parent cannot redirect the copy
                let fd = rustix::fs::openat2(
                    rustix::fs::CWD,
                    &parent,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                    ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
                )
                .map_err(|e| match e {
                    Errno::LOOP => CpError::SymlinkedSource {
                        path: shown.to_owned(),
                        source_path: src.display().to_string(),
                        dest: m.shown.clone(),
                    },
                    e => CpError::Io {
                        path: format!("{shown} (the source of the mount at {})", m.shown),
                        source: e.into(),
                    },
                })?;
                Ok((fd, name, false))
            }
            Source::Kernel(kind) => Err(CpError::NotRunning {
                path: shown.to_owned(),
                kind: kind.clone(),
                dest: m.shown.clone(),
            }),
        }
    }

    fn mount_ro(m: &MountPoint) -> Option<ReadOnly> {
        match (&m.source, m.readonly) {
            (_, false) => None,
            (Source::Bind(_), true) => Some(ReadOnly::Volume),
            (Source::Kernel(_), true) => Some(ReadOnly::Mount),
        }
    }

    /// Walks `comps` from `base`; with `mounts`, mount destinations switch
    /// to the mount. Returns the directory reached, its container path and
    /// whether it is read-only.
    fn walk(
        &self,
        base: &OwnedFd,
        base_ro: Option<ReadOnly>,
        comps: Vec<OsString>,
        mounts: bool,
        shown: &str,
    ) -> Result<(OwnedFd, Vec<OsString>, Option<ReadOnly>), CpError> {
        let mut queue: VecDeque<OsString> = comps.into();
        let mut stack: Vec<(OwnedFd, Option<ReadOnly>)> = Vec::new();
        let mut path: Vec<OsString> = Vec::new();
        let mut current = dup(base, shown)?;
        let mut ro = base_ro;
        let mut followed = 0usize;
        while let Some(c) = queue.pop_front() {
            if c.is_empty() || c == "." {
                continue;
            }
            if c == ".." {
                let Some((up, up_ro)) = stack.pop() else {
                    return Err(CpError::Escape(shown.to_owned()));
                };
                current = up;
                ro = up_ro;
                path.pop();
                continue;
            }
            path.push(c.clone());
            if mounts && let Some(m) = self.mount_at(&path) {
                let (dir, name, follow) = self.locate_mount(m, shown)?;
                let nofollow = if follow {
                    OFlags::empty()
                } else {
                    OFlags::NOFOLLOW
                };
                let fd = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | nofollow,
                    Mode::empty(),
                )
                .map_err(io_err(shown))?;
                stack.push((std::mem::replace(&mut current, fd), ro));
                ro = Self::mount_ro(m);
                continue;
            }
            match open_component(&current, &c) {
                Ok(fd) => stack.push((std::mem::replace(&mut current, fd), ro)),
                Err(Errno::NOENT) => {
                    return Err(CpError::Missing {
                        path: shown.to_owned(),
                        component: c,
                    });
                }
                Err(Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {
                    path.pop();
                    let st = rustix::fs::statat(&current, &c, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(io_err(shown))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Symlink {
                        return Err(CpError::NotADirectory {
                            path: shown.to_owned(),
                            component: c,
                        });
                    }
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(CpError::Loop(shown.to_owned()));
                    }
                    let target =
                        rustix::fs::readlinkat(&current, &c, Vec::new()).map_err(io_err(shown))?;
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        stack.clear();
                        path.clear();
                        current = dup(base, shown)?;
                        ro = base_ro;
                    }
                    let parts: Vec<OsString> = target
                        .components()
                        .filter_map(|p| match p {
                            Component::Normal(n) => Some(n.to_owned()),
                            Component::ParentDir => Some(OsString::from("..")),
                            _ => None,
                        })
                        .collect();
                    for p in parts.into_iter().rev() {
                        queue.push_front(p);
                    }
                }
                Err(e) => return Err(io_err(shown)(e)),
            }
        }
        Ok((current, path, ro))
    }

    /// Resolves container path `path`: its parent is followed (symlinks,
    /// mounts), its last component is not followed, but a mount there is
    /// entered (its root is what the container sees at that path).
    pub(crate) fn entry(&self, path: &str) -> Result<Entry, CpError> {
        let mut comps = components(path)?;
        let Some(last) = comps.pop() else {
            return self.root_entry(path);
        };
        let (dir, parent, ro) = self.walk(&self.root, self.root_ro(), comps, true, path)?;
        self.child(dir, &parent, last, ro, path)
    }

    /// The container's `/` itself, as an entry (`.` of the root).
    fn root_entry(&self, path: &str) -> Result<Entry, CpError> {
        Ok(Entry {
            dir: dup(&self.root, path)?,
            name: OsString::from("."),
            readonly: self.root_ro(),
            path: Vec::new(),
        })
    }

    /// Entry `name` in directory `dir` (container path `parent`), or the
    /// mount's root when a mount sits there.
    pub(crate) fn child(
        &self,
        dir: OwnedFd,
        parent: &[OsString],
        name: OsString,
        ro: Option<ReadOnly>,
        shown: &str,
    ) -> Result<Entry, CpError> {
        let mut path = parent.to_vec();
        path.push(name.clone());
        if let Some(m) = self.mount_at(&path) {
            let (dir, name, _) = self.locate_mount(m, shown)?;
            return Ok(Entry {
                dir,
                name,
                readonly: Self::mount_ro(m),
                path,
            });
        }
        Ok(Entry {
            dir,
            name,
            readonly: ro,
            path,
        })
    }

    /// Whether a copy of a tree goes into the mount at `path`: volumes and
    /// bind mounts, and a running container's tmpfs mounts; not the kernel
    /// file systems (`/proc`, `/sys`, ...), which docker leaves out too.
    pub(crate) fn descends_into(&self, path: &[OsString]) -> bool {
        match self.mount_at(path).map(|m| &m.source) {
            Some(Source::Bind(_)) => true,
            Some(Source::Kernel(kind)) => kind == "tmpfs" && self.live_root.is_some(),
            None => false,
        }
    }
}

/// `/proc/<pid>/root`, if it is the container's root (same file system and
/// inode as the root filesystem mounted at the bundle): a pid reused by a
/// host process after the container exited is not followed.
fn live_root(pid: i32, root: &OwnedFd) -> Option<OwnedFd> {
    let fd = open_dir(Path::new(&format!("/proc/{pid}/root"))).ok()?;
    let (a, b) = (rustix::fs::fstat(&fd).ok()?, rustix::fs::fstat(root).ok()?);
    if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) {
        Some(fd)
    } else {
        tracing::warn!(pid, "cp: /proc/{pid}/root is not the container's root");
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs_with(dir: &Path, mounts: Value, ro_root: bool) -> ContainerFs {
        let spec = serde_json::json!({"root": {"readonly": ro_root}, "mounts": mounts});
        ContainerFs::open(&dir.join("rootfs"), &spec, None).unwrap()
    }

    fn read(e: &Entry) -> String {
        let fd = rustix::fs::openat(
            &e.dir,
            &e.name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        std::io::read_to_string(std::fs::File::from(fd)).unwrap()
    }

    #[test]
    fn the_deepest_mount_wins_and_symlinks_stay_in_the_container() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for p in ["rootfs/data/sub", "rootfs/etc", "vol/sub", "inner", "host"] {
            std::fs::create_dir_all(d.join(p)).unwrap();
        }
        std::fs::write(d.join("rootfs/data/f"), "image").unwrap();
        std::fs::write(d.join("vol/f"), "volume").unwrap();
        std::fs::write(d.join("inner/f"), "inner").unwrap();
        std::fs::write(d.join("rootfs/etc/passwd"), "container").unwrap();
        std::fs::write(d.join("host/passwd"), "host").unwrap();
        std::os::unix::fs::symlink("/etc", d.join("vol/etc")).unwrap();
        std::os::unix::fs::symlink("../../..", d.join("vol/up")).unwrap();
        std::os::unix::fs::symlink("..", d.join("inner/updir")).unwrap();
        let v = d.join("vol").display().to_string();
        let i = d.join("inner").display().to_string();
        let fs = fs_with(
            d,
            serde_json::json!([
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": v, "options": ["rbind"]},
                {"destination": "/data/sub", "type": "bind", "source": i, "options": ["rbind", "ro"]},
            ]),
            false,
        );
        let e = fs.entry("/data/f").unwrap();
        assert_eq!((read(&e), e.readonly), ("volume".into(), None));
        let e = fs.entry("/data/sub/f").unwrap();
        assert_eq!(
            (read(&e), e.readonly),
            ("inner".into(), Some(ReadOnly::Volume))
        );
        // a symlink to /etc in the volume is the container's /etc
        assert_eq!(read(&fs.entry("/data/etc/passwd").unwrap()), "container");
        // .. at a mount's root goes back to the directory it sits on
        let e = fs.entry("/data/sub/../f").unwrap();
        assert_eq!(read(&e), "volume");
        let e = fs.entry("/data/sub/updir/sub/f").unwrap();
        assert_eq!(read(&e), "inner");
        let e = fs.entry("/data/sub/updir/f").unwrap();
        assert_eq!((read(&e), e.readonly), ("volume".into(), None));
        assert!(matches!(fs.entry("/data/up/x"), Err(CpError::Escape(_))));
        // the mount point itself is the mount's root
        let e = fs.entry("/data/sub").unwrap();
        assert_eq!(
            (e.name.as_os_str(), e.readonly),
            (OsStr::new("inner"), Some(ReadOnly::Volume))
        );
        let e = fs.entry("/proc/1/status").unwrap_err();
        assert!(
            e.to_string().contains("only while the container runs"),
            "{e}"
        );
        assert!(matches!(fs.entry("/nope/x"), Err(CpError::Missing { .. })));
    }

    #[test]
    fn a_stopped_containers_bind_source_is_not_reached_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("rootfs/data")).unwrap();
        std::fs::create_dir_all(d.join("real/src")).unwrap();
        std::fs::write(d.join("real/src/f"), "x").unwrap();
        std::os::unix::fs::symlink(d.join("real"), d.join("link")).unwrap();
        let via = d.join("link/src").display().to_string();
        let fs = fs_with(
            d,
            serde_json::json!([{"destination": "/data", "type": "bind", "source": via}]),
            false,
        );
        let e = fs.entry("/data/f").unwrap_err().to_string();
        assert!(e.contains("goes through a symbolic link"), "{e}");
        let direct = d.join("real/src").display().to_string();
        let fs = fs_with(
            d,
            serde_json::json!([{"destination": "/data", "type": "bind", "source": direct}]),
            false,
        );
        assert_eq!(read(&fs.entry("/data/f").unwrap()), "x");
    }

    #[test]
    fn a_read_only_root_filesystem_refuses_writes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("rootfs/tmp")).unwrap();
        let fs = fs_with(tmp.path(), serde_json::json!([]), true);
        let e = fs.entry("/tmp/x").unwrap();
        let err = e.writable("/tmp/x").unwrap_err().to_string();
        assert_eq!(err, "/tmp/x: container rootfs is marked read-only");
        assert_eq!(fs.entry("/").unwrap().readonly, Some(ReadOnly::Rootfs));
    }
}
