//! The `cgroup` mount inside a container: the host's hierarchies, seen from
//! the container's cgroup namespace.
//!
//! On cgroup v2 this is one `cgroup2` mount. On v1 (and hybrid) it is a tmpfs
//! holding one mount per host hierarchy (named as on the host, with symlinks
//! for co-mounted controllers such as `cpu` → `cpu,cpuacct`), as runc lays it
//! out.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::error::{IoContext, RuntimeError};
use crate::mounts::{MountOptions, ensure_in_root, open_in_root};
use crate::sys::fs as sfs;

/// One host cgroup hierarchy.
struct Hierarchy {
    /// Directory name under /sys/fs/cgroup (`cpu,cpuacct`, `unified`).
    name: String,
    /// `cgroup` or `cgroup2`.
    fstype: &'static str,
    /// Mount data (`cpu,cpuacct`, `name=systemd`, empty for v2).
    data: String,
}

fn host_hierarchies() -> Vec<Hierarchy> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in info.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = pre.split(' ').nth(4).unwrap_or("");
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let super_opts = post.nth(1).unwrap_or("");
        let Some(name) = mount_point.strip_prefix("/sys/fs/cgroup/") else {
            if mount_point == "/sys/fs/cgroup" && fstype == "cgroup2" {
                out.push(Hierarchy {
                    name: String::new(),
                    fstype: "cgroup2",
                    data: String::new(),
                });
            }
            continue;
        };
        if name.contains('/') {
            continue;
        }
        match fstype {
            "cgroup" => {
                let data: Vec<&str> = super_opts
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "relatime" | "nosuid" | "nodev" | "noexec")
                            && !o.starts_with("release_agent")
                    })
                    .collect();
                out.push(Hierarchy {
                    name: name.to_owned(),
                    fstype: "cgroup",
                    data: data.join(","),
                });
            }
            "cgroup2" => out.push(Hierarchy {
                name: name.to_owned(),
                fstype: "cgroup2",
                data: String::new(),
            }),
            _ => {}
        }
    }
    out
}

/// This process's cgroup path in a hierarchy, from /proc/self/cgroup:
/// `controllers` is the hierarchy's mount data (`cpu,cpuacct`,
/// `name=systemd`), empty for cgroup2.
fn own_path(table: &str, controllers: &str) -> Option<String> {
    table.lines().find_map(|l| {
        let mut it = l.splitn(3, ':');
        let (_, ctl, path) = (it.next()?, it.next()?, it.next()?);
        let matches = if controllers.is_empty() {
            ctl.is_empty()
        } else {
            // mount data may carry options (xattr) beside the controllers
            !ctl.is_empty()
                && ctl
                    .split(',')
                    .all(|c| controllers.split(',').any(|d| d == c))
        };
        matches.then(|| path.to_owned())
    })
}

/// Binds the host hierarchy `host` (its mount point) at this process's own
/// cgroup onto `target`: the container sees its cgroup as the root, as
/// runc does without a cgroup namespace.
fn bind_own(
    host: &Path,
    controllers: &str,
    table: &str,
    root: BorrowedFd<'_>,
    dest: &Path,
    flags: u64,
) -> Result<(), RuntimeError> {
    let what = || format!("bind cgroup {}", host.display());
    let Some(path) = own_path(table, controllers) else {
        tracing::warn!(
            "cgroup hierarchy {} has no entry in /proc/self/cgroup",
            host.display()
        );
        return Ok(());
    };
    let src = host.join(path.trim_start_matches('/'));
    let src_fd = sfs::open(&src, libc::O_PATH | libc::O_DIRECTORY).ctx(what)?;
    let target = ensure_in_root(root, dest, false)?;
    sfs::mount(
        Some(&sfs::fd_path(src_fd.as_fd())),
        &sfs::fd_path(target.as_fd()),
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(what)?;
    // the new mount is on top of the old fd's directory: open it again
    let top = open_in_root(root, dest).ctx(what)?;
    sfs::mount(
        None,
        &sfs::fd_path(top.as_fd()),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags,
        None,
    )
    .ctx(what)
}

/// Mounts the cgroup hierarchies at `dest` inside `root`. With a cgroup
/// namespace each hierarchy is mounted afresh (its root is the container's
/// cgroup); without one, the container's own cgroup directories are bound.
pub fn mount_cgroups(
    root: BorrowedFd<'_>,
    dest: &Path,
    opts: &MountOptions,
    cgroupns: bool,
) -> Result<(), RuntimeError> {
    let table = if cgroupns {
        String::new()
    } else {
        std::fs::read_to_string("/proc/self/cgroup").ctx(|| "read /proc/self/cgroup".to_owned())?
    };
    let what = || format!("mount cgroup on {}", dest.display());
    let flags =
        opts.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME);
    let hs = host_hierarchies();
    let target = ensure_in_root(root, dest, false)?;
    if hs.len() == 1 && hs[0].name.is_empty() {
        // pure v2
        if !cgroupns {
            return bind_own(
                Path::new("/sys/fs/cgroup"),
                "",
                &table,
                root,
                dest,
                flags | (opts.flags & libc::MS_RDONLY),
            );
        }
        sfs::mount(
            Some(c"cgroup"),
            &sfs::fd_path(target.as_fd()),
            Some(c"cgroup2"),
            flags | (opts.flags & libc::MS_RDONLY),
            None,
        )
        .ctx(what)?;
        return Ok(());
    }
    sfs::mount(
        Some(c"tmpfs"),
        &sfs::fd_path(target.as_fd()),
        Some(c"tmpfs"),
        flags,
        Some(c"mode=755"),
    )
    .ctx(what)?;
    let dir_fd = open_in_root(root, dest).ctx(what)?;
    let dir = sfs::openat(
        dir_fd.as_fd(),
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .ctx(what)?;
    for h in &hs {
        if h.name.is_empty() {
            continue;
        }
        let sub = dest.join(&h.name);
        let t = ensure_in_root(root, &sub, false)?;
        if !cgroupns {
            let host = Path::new("/sys/fs/cgroup").join(&h.name);
            let controllers = if h.fstype == "cgroup2" {
                ""
            } else {
                h.data.as_str()
            };
            drop(t);
            bind_own(
                &host,
                controllers,
                &table,
                root,
                &sub,
                flags | (opts.flags & libc::MS_RDONLY),
            )?;
            if h.name.contains(',') {
                for part in h.name.split(',') {
                    let _ = sfs::symlinkat(Path::new(&h.name), dir.as_fd(), Path::new(part));
                }
            }
            continue;
        }
        let fstype = CString::new(h.fstype).unwrap_or_default();
        let data = CString::new(h.data.as_str()).unwrap_or_default();
        let r = sfs::mount(
            Some(c"cgroup"),
            &sfs::fd_path(t.as_fd()),
            Some(&fstype),
            flags | (opts.flags & libc::MS_RDONLY),
            (!h.data.is_empty()).then_some(data.as_c_str()),
        );
        if let Err(e) = r {
            tracing::warn!(
                "cgroup hierarchy {} not mounted in the container: {e}",
                h.name
            );
            continue;
        }
        if h.name.contains(',') {
            for part in h.name.split(',') {
                let _ = sfs::symlinkat(Path::new(&h.name), dir.as_fd(), Path::new(part));
            }
        }
    }
    if opts.flags & libc::MS_RDONLY != 0 {
        let t = open_in_root(root, dest).ctx(what)?;
        sfs::mount(
            None,
            &sfs::fd_path(t.as_fd()),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | flags,
            None,
        )
        .ctx(what)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::own_path;

    const TABLE: &str = "9:name=systemd:/a\n4:cpu,cpuacct:/b\n3:memory:/c\n0::/d\n";

    #[test]
    fn own_path_matches_controllers_ignoring_mount_options() {
        assert_eq!(own_path(TABLE, "xattr,name=systemd").as_deref(), Some("/a"));
        assert_eq!(own_path(TABLE, "cpu,cpuacct").as_deref(), Some("/b"));
        assert_eq!(own_path(TABLE, "memory").as_deref(), Some("/c"));
        assert_eq!(own_path(TABLE, "").as_deref(), Some("/d"));
        assert_eq!(own_path(TABLE, "pids"), None);
    }
}
