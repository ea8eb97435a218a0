//! The config's `mounts`: option parsing and mounting onto targets resolved
//! inside the rootfs.
//!
//! Defence (CVE-2021-30465 class): every target is opened with `openat2`
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` from an fd of the rootfs, so a
//! symlink in the image (or one swapped in during setup) resolves inside the
//! rootfs; the mount is then made on `/proc/self/fd/N` of that fd, never on a
//! path that the kernel would walk again. Procfs targets are checked to be
//! procfs after mounting.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::Mount;

use crate::error::{IoContext, RuntimeError};
use crate::sys::fs as sfs;

/// Flags and data parsed from a mount's `options`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the mount itself.
    pub flags: u64,
    /// Flags to clear (`rw`, `suid`, ...), relevant on remount.
    pub clear: u64,
    /// Propagation flags applied after mounting (`MS_PRIVATE`, `MS_SHARED`, ...).
    pub propagation: u64,
    /// `bind` or `rbind` was given.
    pub bind: bool,
    /// Comma-separated file-system data (`mode=755`, `size=...`).
    pub data: String,
}

/// Parses a mount's options.
pub fn parse_options(options: &[String]) -> MountOptions {
    let mut o = MountOptions::default();
    for opt in options {
        let (set, clear, prop): (u64, u64, u64) = match opt.as_str() {
            "ro" => (libc::MS_RDONLY, 0, 0),
            "rw" => (0, libc::MS_RDONLY, 0),
            "nosuid" => (libc::MS_NOSUID, 0, 0),
            "suid" => (0, libc::MS_NOSUID, 0),
            "nodev" => (libc::MS_NODEV, 0, 0),
            "dev" => (0, libc::MS_NODEV, 0),
            "noexec" => (libc::MS_NOEXEC, 0, 0),
            "exec" => (0, libc::MS_NOEXEC, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0, 0),
            "async" => (0, libc::MS_SYNCHRONOUS, 0),
            "dirsync" => (libc::MS_DIRSYNC, 0, 0),
            "remount" => (libc::MS_REMOUNT, 0, 0),
            "mand" => (libc::MS_MANDLOCK, 0, 0),
            "nomand" => (0, libc::MS_MANDLOCK, 0),
            "atime" => (0, libc::MS_NOATIME, 0),
            "noatime" => (libc::MS_NOATIME, 0, 0),
            "diratime" => (0, libc::MS_NODIRATIME, 0),
            "nodiratime" => (libc::MS_NODIRATIME, 0, 0),
            "relatime" => (libc::MS_RELATIME, 0, 0),
            "norelatime" => (0, libc::MS_RELATIME, 0),
            "strictatime" => (libc::MS_STRICTATIME, 0, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME, 0),
            "bind" => {
                o.bind = true;
                (libc::MS_BIND, 0, 0)
            }
            "rbind" => {
                o.bind = true;
                (libc::MS_BIND | libc::MS_REC, 0, 0)
            }
            "private" => (0, 0, libc::MS_PRIVATE),
            "rprivate" => (0, 0, libc::MS_PRIVATE | libc::MS_REC),
            "shared" => (0, 0, libc::MS_SHARED),
            "rshared" => (0, 0, libc::MS_SHARED | libc::MS_REC),
            "slave" => (0, 0, libc::MS_SLAVE),
            "rslave" => (0, 0, libc::MS_SLAVE | libc::MS_REC),
            "unbindable" => (0, 0, libc::MS_UNBINDABLE),
            "runbindable" => (0, 0, libc::MS_UNBINDABLE | libc::MS_REC),
            // runc-specific or no-op options
            "tmpcopyup" | "defaults" | "idmap" | "ridmap" => (0, 0, 0),
            other => {
                if !o.data.is_empty() {
                    o.data.push(',');
                }
                o.data.push_str(other);
                (0, 0, 0)
            }
        };
        o.flags = (o.flags | set) & !clear;
        o.clear |= clear;
        o.propagation |= prop;
    }
    o
}

/// The relative form of an absolute container path (`/a/b` → `a/b`), with
/// `.`/`..` left for `openat2` to confine.
pub fn relative(p: &Path) -> PathBuf {
    let r: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::RootDir))
        .collect();
    if r.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        r
    }
}

const IN_ROOT: u64 = sfs::RESOLVE_IN_ROOT | sfs::RESOLVE_NO_MAGICLINKS;

/// Opens `path` (absolute, container view) inside `root` as `O_PATH`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path) -> std::io::Result<OwnedFd> {
    sfs::openat2(root, &relative(path), libc::O_PATH, 0, IN_ROOT)
}

/// Opens `path` inside `root`, creating missing directories (and the last
/// component as a file when `file` is set), all confined to `root`.
pub fn ensure_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    file: bool,
) -> Result<OwnedFd, RuntimeError> {
    if let Ok(fd) = open_in_root(root, path) {
        return Ok(fd);
    }
    let rel = relative(path);
    let comps: Vec<&std::ffi::OsStr> = rel.iter().collect();
    let mut parent = sfs::openat2(
        root,
        Path::new("."),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        IN_ROOT,
    )
    .ctx(|| "open rootfs".to_owned())?;
    let mut sofar = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        sofar.push(c);
        let last = i + 1 == comps.len();
        match sfs::openat2(root, &sofar, libc::O_PATH, 0, IN_ROOT) {
            Ok(fd) => {
                parent = fd;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("resolve {} in the rootfs", path.display()),
                    e,
                ));
            }
        }
        // `parent` is an O_PATH fd of a directory resolved inside the root; a
        // real directory fd is needed to create in it.
        let dir = sfs::openat(
            parent.as_fd(),
            Path::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
        .ctx(|| format!("open parent of {}", path.display()))?;
        if last && file {
            sfs::openat(
                dir.as_fd(),
                Path::new(c),
                libc::O_CREAT | libc::O_WRONLY | libc::O_NOFOLLOW,
                0o644,
            )
            .or_else(|e| {
                if e.raw_os_error() == Some(libc::EEXIST) {
                    Ok(dir.try_clone()?)
                } else {
                    Err(e)
                }
            })
            .ctx(|| format!("create mount target {}", path.display()))?;
        } else {
            match sfs::mkdirat(dir.as_fd(), Path::new(c), 0o755) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => {
                    return Err(RuntimeError::io(
                        format!("create mount target {}", path.display()),
                        e,
                    ));
                }
            }
        }
        parent = sfs::openat2(root, &sofar, libc::O_PATH, 0, IN_ROOT)
            .ctx(|| format!("resolve {} in the rootfs", path.display()))?;
    }
    Ok(parent)
}

/// Mounts one entry of the config's `mounts` inside `root`.
/// `bundle` resolves relative bind sources; `host_cgroups` lists the host's
/// cgroup hierarchies for `cgroup` mounts.
pub fn mount_one(
    root: BorrowedFd<'_>,
    m: &Mount,
    bundle: &Path,
    userns: bool,
    cgroupns: bool,
) -> Result<(), RuntimeError> {
    let dest = m.destination();
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.bind { "bind" } else { "none" });
    let bind = opts.bind || typ == "bind";
    let what = || format!("mount {} on {}", typ, dest.display());
    if typ == "cgroup" && !bind {
        return crate::cgroupfs::mount_cgroups(root, dest, &opts, cgroupns);
    }
    if bind {
        let src = m.source().as_deref().unwrap_or(Path::new(""));
        let src = if src.is_absolute() {
            src.to_owned()
        } else {
            bundle.join(src)
        };
        let src_fd =
            sfs::open(&src, libc::O_PATH).ctx(|| format!("bind source {}", src.display()))?;
        let is_dir = sfs::fstat(src_fd.as_fd()).ctx(what)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let target = ensure_in_root(root, dest, !is_dir)?;
        let flags = libc::MS_BIND | (opts.flags & libc::MS_REC);
        sfs::mount(
            Some(&sfs::fd_path(src_fd.as_fd())),
            &sfs::fd_path(target.as_fd()),
            None,
            flags,
            None,
        )
        .ctx(what)?;
        let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            let t = open_in_root(root, dest).ctx(what)?;
            let mut keep = sfs::mount_flags(t.as_fd()).ctx(what)?;
            keep &= libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
            if !userns {
                keep &= !opts.clear;
            }
            sfs::mount(
                None,
                &sfs::fd_path(t.as_fd()),
                None,
                libc::MS_BIND | libc::MS_REMOUNT | extra | keep,
                None,
            )
            .ctx(|| format!("remount {} with {:?}", dest.display(), m.options()))?;
        }
    } else {
        let target = ensure_in_root(root, dest, false)?;
        let source = CString::new(
            m.source()
                .as_deref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|| typ.to_owned()),
        )
        .map_err(|_| {
            RuntimeError::Invalid(format!("mount {}: source has a NUL byte", dest.display()))
        })?;
        let fstype = CString::new(typ).map_err(|_| {
            RuntimeError::Invalid(format!("mount {}: type has a NUL byte", dest.display()))
        })?;
        let data = CString::new(opts.data.as_str()).map_err(|_| {
            RuntimeError::Invalid(format!("mount {}: options have a NUL byte", dest.display()))
        })?;
        let tpath = sfs::fd_path(target.as_fd());
        let r = sfs::mount(
            Some(&source),
            &tpath,
            Some(&fstype),
            opts.flags & !libc::MS_REMOUNT,
            (!opts.data.is_empty()).then_some(data.as_c_str()),
        );
        match r {
            Ok(()) => {}
            // sysfs cannot be mounted in a user namespace without its own
            // network namespace: bind the host's, as runc does
            Err(e) if typ == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
                sfs::mount(
                    Some(c"/sys"),
                    &tpath,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .ctx(what)?;
                let t = open_in_root(root, dest).ctx(what)?;
                let _ = sfs::mount(
                    None,
                    &sfs::fd_path(t.as_fd()),
                    None,
                    libc::MS_BIND
                        | libc::MS_REMOUNT
                        | libc::MS_RDONLY
                        | libc::MS_NOSUID
                        | libc::MS_NODEV
                        | libc::MS_NOEXEC,
                    None,
                );
            }
            Err(e) => return Err(RuntimeError::io(what(), e)),
        }
        if typ == "proc" {
            let t = open_in_root(root, dest).ctx(what)?;
            if sfs::fs_magic(t.as_fd()).ctx(what)? != sfs::PROC_SUPER_MAGIC {
                return Err(RuntimeError::Invalid(format!(
                    "mounts: {} is not procfs after mounting proc on it",
                    dest.display()
                )));
            }
        }
    }
    if opts.propagation != 0 {
        let t = open_in_root(root, dest).ctx(what)?;
        sfs::mount(None, &sfs::fd_path(t.as_fd()), None, opts.propagation, None)
            .ctx(|| format!("set propagation of {}", dest.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let o = parse_options(&s(&[
            "nosuid",
            "noexec",
            "mode=755",
            "size=65536k",
            "rprivate",
            "ro",
        ]));
        assert_eq!(o.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_RDONLY);
        assert_eq!(o.propagation, libc::MS_PRIVATE | libc::MS_REC);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert!(!o.bind);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = parse_options(&s(&["rbind", "ro", "rw"]));
        assert!(o.bind);
        assert_eq!(o.flags, libc::MS_BIND | libc::MS_REC);
    }

    #[test]
    fn relative_paths_stay_relative() {
        assert_eq!(relative(Path::new("/a/b")), PathBuf::from("a/b"));
        assert_eq!(relative(Path::new("/")), PathBuf::from("."));
    }
}
