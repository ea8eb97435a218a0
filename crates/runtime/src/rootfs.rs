//! The container's file system: the rootfs bind, mounts, `/dev`, the switch
//! into the rootfs (pivot_root or MS_MOVE + chroot), masked and read-only
//! paths, a read-only root and sysctls. Runs in the container init.
//!
//! Defences: targets resolve inside the rootfs (see [`crate::mounts`]);
//! masked paths are covered with the host's `/dev/null` opened (and checked
//! to be the 1:3 character device) before the switch, so a `/dev/null`
//! symlink in the image cannot redirect the mask; masked and read-only paths
//! are opened with `RESOLVE_NO_SYMLINKS` and, under /proc, checked to be
//! procfs; `/dev/console` is (re)created as an empty file with `O_EXCL |
//! O_NOFOLLOW` before the pty is bound onto it.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};

use crate::error::{IoContext, RuntimeError};
use crate::mounts::{ensure_in_root, mount_one, open_in_root, relative};
use crate::sys::fs as sfs;

/// What the switch into the rootfs needs.
pub struct Prepared {
    /// The rootfs (bound onto itself), as an `O_PATH` fd.
    pub root: OwnedFd,
}

/// Makes the mount tree private to the container, binds the rootfs onto
/// itself, and performs the config's mounts and device setup.
pub fn prepare(
    spec: &Spec,
    rootfs: &Path,
    bundle: &Path,
    userns: bool,
) -> Result<Prepared, RuntimeError> {
    let cgroupns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Cgroup)
        });
    let linux = spec.linux().as_ref();
    let prop = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        Some("private") => libc::MS_PRIVATE,
        Some("rprivate") => libc::MS_PRIVATE | libc::MS_REC,
        Some("shared") | Some("rshared") | Some("slave") | Some("rslave") | None | Some("") => {
            libc::MS_SLAVE | libc::MS_REC
        }
        Some("unbindable") | Some("runbindable") => libc::MS_UNBINDABLE | libc::MS_REC,
        Some(other) => {
            return Err(RuntimeError::Invalid(format!(
                "linux.rootfsPropagation: unknown value {other:?}"
            )));
        }
    };
    sfs::mount(None, c"/", None, prop, None).ctx(|| "make / a slave mount".to_owned())?;
    let croot = crate::sys::cpath(rootfs).map_err(|e| RuntimeError::io("rootfs path", e))?;
    sfs::mount(
        Some(&croot),
        &croot,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(|| format!("bind rootfs {}", rootfs.display()))?;
    let root = sfs::open(rootfs, libc::O_PATH | libc::O_DIRECTORY)
        .ctx(|| format!("open rootfs {}", rootfs.display()))?;
    let mut dev_is_tmpfs = false;
    for m in spec.mounts().iter().flatten() {
        mount_one(root.as_fd(), m, bundle, userns, cgroupns)?;
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
    }
    if dev_is_tmpfs {
        create_devices(
            root.as_fd(),
            linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]),
            userns,
        )?;
        dev_symlinks(root.as_fd())?;
    } else if let Some(devs) = linux.and_then(|l| l.devices().as_deref()) {
        create_devices(root.as_fd(), devs, userns)?;
    }
    Ok(Prepared { root })
}

/// The devices every container gets (OCI runtime spec, "Default Devices").
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

fn create_devices(
    root: BorrowedFd<'_>,
    extra: &[LinuxDevice],
    userns: bool,
) -> Result<(), RuntimeError> {
    for (path, major, minor) in DEFAULT_DEVICES {
        if extra.iter().any(|d| d.path() == Path::new(path)) {
            continue;
        }
        make_device(
            root,
            Path::new(path),
            libc::S_IFCHR,
            major,
            minor,
            0o666,
            0,
            0,
            userns,
        )?;
    }
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(RuntimeError::Invalid(format!(
                    "linux.devices: {}: type 'a' is not a device",
                    d.path().display()
                )));
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(RuntimeError::Invalid(format!(
                "linux.devices: {} is not under /dev",
                d.path().display()
            )));
        }
        make_device(
            root,
            d.path(),
            kind,
            d.major() as u32,
            d.minor() as u32,
            d.file_mode().unwrap_or(0o666) & 0o7777,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
            userns,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    root: BorrowedFd<'_>,
    path: &Path,
    kind: u32,
    major: u32,
    minor: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    userns: bool,
) -> Result<(), RuntimeError> {
    let what = || format!("create device {}", path.display());
    let parent = path.parent().unwrap_or(Path::new("/dev"));
    let name = PathBuf::from(path.file_name().unwrap_or_default());
    let pfd = ensure_in_root(root, parent, false)?;
    let dir = sfs::openat(
        pfd.as_fd(),
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .ctx(what)?;
    match sfs::unlinkat(dir.as_fd(), &name, false) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(RuntimeError::io(what(), e)),
    }
    if userns {
        // mknod is not allowed in a user namespace: bind the host's node
        let f = sfs::openat(
            dir.as_fd(),
            &name,
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
            0o644,
        )
        .ctx(what)?;
        let host = sfs::open(path, libc::O_PATH).ctx(what)?;
        sfs::mount(
            Some(&sfs::fd_path(host.as_fd())),
            &sfs::fd_path(f.as_fd()),
            None,
            libc::MS_BIND,
            None,
        )
        .ctx(what)?;
        return Ok(());
    }
    sfs::mknodat(dir.as_fd(), &name, kind | mode, libc::makedev(major, minor)).ctx(what)?;
    let node = sfs::openat(dir.as_fd(), &name, libc::O_PATH | libc::O_NOFOLLOW, 0).ctx(what)?;
    // chmod again: mknod applies the umask; fchmod does not work on O_PATH
    let node_path = sfs::fd_path(node.as_fd());
    let cp = std::ffi::CStr::to_str(&node_path)
        .unwrap_or_default()
        .to_owned();
    std::fs::set_permissions(&cp, std::os::unix::fs::PermissionsExt::from_mode(mode)).ctx(what)?;
    if uid != 0 || gid != 0 {
        std::os::unix::fs::lchown(&cp, Some(uid), Some(gid)).ctx(what)?;
    }
    Ok(())
}

fn dev_symlinks(root: BorrowedFd<'_>) -> Result<(), RuntimeError> {
    let dev = open_in_root(root, Path::new("/dev")).ctx(|| "open /dev".to_owned())?;
    let dir = sfs::openat(
        dev.as_fd(),
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .ctx(|| "open /dev".to_owned())?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        match sfs::symlinkat(Path::new(target), dir.as_fd(), Path::new(name)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(RuntimeError::io(format!("symlink /dev/{name}"), e)),
        }
    }
    if Path::new("/proc/kcore").exists() {
        let _ = sfs::symlinkat(Path::new("/proc/kcore"), dir.as_fd(), Path::new("core"));
    }
    Ok(())
}

/// Makes the rootfs the process's root: pivot_root, or MS_MOVE + chroot
/// with `no_pivot`.
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<(), RuntimeError> {
    let croot = crate::sys::cpath(rootfs).map_err(|e| RuntimeError::io("rootfs path", e))?;
    sfs::chdir(&croot).ctx(|| format!("chdir {}", rootfs.display()))?;
    if no_pivot {
        sfs::mount(Some(&croot), c"/", None, libc::MS_MOVE, None)
            .ctx(|| "move rootfs to /".to_owned())?;
        sfs::chroot(c".").ctx(|| "chroot".to_owned())?;
    } else {
        sfs::pivot_root(c".", c".").ctx(|| format!("pivot_root {}", rootfs.display()))?;
        // the old root is now stacked under "."; keep its unmount private
        sfs::mount(None, c".", None, libc::MS_SLAVE | libc::MS_REC, None)
            .ctx(|| "make old root a slave".to_owned())?;
        sfs::umount2(c".", libc::MNT_DETACH).ctx(|| "unmount old root".to_owned())?;
    }
    sfs::chdir(c"/").ctx(|| "chdir /".to_owned())
}

/// After [`enter`]: masked paths, read-only paths, a read-only root.
pub fn finish(spec: &Spec) -> Result<(), RuntimeError> {
    let root =
        sfs::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY).ctx(|| "open /".to_owned())?;
    let linux = spec.linux().as_ref();
    let masked = linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or(&[]);
    if !masked.is_empty() {
        let dev_null = open_dev_null(root.as_fd())?;
        for p in masked {
            mask(root.as_fd(), Path::new(p), dev_null.as_fd())?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or(&[])
    {
        readonly(root.as_fd(), Path::new(p))?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let keep = sfs::mount_flags(root.as_fd()).ctx(|| "statfs /".to_owned())?
            & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
        sfs::mount(
            None,
            c"/",
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | keep,
            None,
        )
        .ctx(|| "remount / read-only".to_owned())?;
    }
    if let Some(p) = linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        let flag = match p {
            "shared" => libc::MS_SHARED,
            "rshared" => libc::MS_SHARED | libc::MS_REC,
            "private" => libc::MS_PRIVATE,
            "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
            "slave" => libc::MS_SLAVE,
            _ => 0,
        };
        if flag != 0 {
            sfs::mount(None, c"/", None, flag, None).ctx(|| "set rootfs propagation".to_owned())?;
        }
    }
    Ok(())
}

/// The container's `/dev/null`, refusing anything but the null device.
fn open_dev_null(root: BorrowedFd<'_>) -> Result<OwnedFd, RuntimeError> {
    let fd = sfs::openat2(
        root,
        Path::new("dev/null"),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        sfs::RESOLVE_IN_ROOT | sfs::RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| {
        RuntimeError::Invalid(format!(
            "/dev/null in the container cannot cover masked paths: {e}"
        ))
    })?;
    let st = sfs::fstat(fd.as_fd()).ctx(|| "stat /dev/null".to_owned())?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err(RuntimeError::Invalid(
            "/dev/null in the container is not the null device (1:3): refusing to mask paths with it".into(),
        ));
    }
    Ok(fd)
}

/// Opens a masked or read-only path without following any symlink; `None`
/// if it does not exist. Paths under /proc must be on procfs.
fn open_protected(root: BorrowedFd<'_>, p: &Path) -> Result<Option<OwnedFd>, RuntimeError> {
    let fd = match sfs::openat2(
        root,
        &relative(p),
        libc::O_PATH | libc::O_NOFOLLOW,
        0,
        sfs::RESOLVE_IN_ROOT | sfs::RESOLVE_NO_SYMLINKS,
    ) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(RuntimeError::Invalid(format!(
                "{} is a symlink or lies under one: refusing to cover it",
                p.display()
            )));
        }
        Err(e) => return Err(RuntimeError::io(format!("open {}", p.display()), e)),
    };
    if p.starts_with("/proc")
        && sfs::fs_magic(fd.as_fd()).ctx(|| format!("statfs {}", p.display()))?
            != sfs::PROC_SUPER_MAGIC
    {
        return Err(RuntimeError::Invalid(format!(
            "{} is not on procfs: refusing to cover it",
            p.display()
        )));
    }
    Ok(Some(fd))
}

fn mask(root: BorrowedFd<'_>, p: &Path, dev_null: BorrowedFd<'_>) -> Result<(), RuntimeError> {
    let Some(fd) = open_protected(root, p)? else {
        return Ok(());
    };
    let what = || format!("mask {}", p.display());
    let st = sfs::fstat(fd.as_fd()).ctx(what)?;
    let target = sfs::fd_path(fd.as_fd());
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        sfs::mount(
            Some(c"tmpfs"),
            &target,
            Some(c"tmpfs"),
            libc::MS_RDONLY,
            Some(c"size=0,mode=0555"),
        )
        .ctx(what)
    } else {
        sfs::mount(
            Some(&sfs::fd_path(dev_null)),
            &target,
            None,
            libc::MS_BIND,
            None,
        )
        .ctx(what)
    }
}

fn readonly(root: BorrowedFd<'_>, p: &Path) -> Result<(), RuntimeError> {
    let Some(fd) = open_protected(root, p)? else {
        return Ok(());
    };
    let what = || format!("make {} read-only", p.display());
    let target = sfs::fd_path(fd.as_fd());
    sfs::mount(
        Some(&target),
        &target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .ctx(what)?;
    let Some(top) = open_protected(root, p)? else {
        return Ok(());
    };
    let keep = sfs::mount_flags(top.as_fd()).ctx(what)?
        & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    sfs::mount(
        None,
        &sfs::fd_path(top.as_fd()),
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC | keep,
        None,
    )
    .ctx(what)
}

/// Writes the config's sysctls under /proc/sys (after [`enter`]).
pub fn sysctls(spec: &Spec) -> Result<(), RuntimeError> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    if map.is_empty() {
        return Ok(());
    }
    let root =
        sfs::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY).ctx(|| "open /".to_owned())?;
    for (k, v) in map {
        if k.contains("..") || k.contains('\0') {
            return Err(RuntimeError::Invalid(format!(
                "linux.sysctl: invalid key {k:?}"
            )));
        }
        let rel = PathBuf::from("proc/sys").join(k.replace('.', "/"));
        // no O_TRUNC: nothing may change before the procfs check below
        // (a file bound over /proc/sys would be emptied otherwise)
        let fd = sfs::openat2(
            root.as_fd(),
            &rel,
            libc::O_WRONLY,
            0,
            sfs::RESOLVE_IN_ROOT | sfs::RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| RuntimeError::Invalid(format!("linux.sysctl: {k}: {e}")))?;
        if sfs::fs_magic(fd.as_fd()).ctx(|| format!("statfs sysctl {k}"))? != sfs::PROC_SUPER_MAGIC
        {
            return Err(RuntimeError::Invalid(format!(
                "linux.sysctl: {k}: /proc/sys is not procfs"
            )));
        }
        let mut f = std::fs::File::from(fd);
        std::io::Write::write_all(&mut f, v.as_bytes())
            .map_err(|e| RuntimeError::Invalid(format!("linux.sysctl: {k}={v}: {e}")))?;
    }
    Ok(())
}

/// Binds the pty `slave` onto `/dev/console`, recreated as an empty file
/// with `O_EXCL | O_NOFOLLOW` so that an image symlink cannot redirect it.
pub fn bind_console(slave: BorrowedFd<'_>) -> Result<(), RuntimeError> {
    let what = || "bind the pty onto /dev/console".to_owned();
    let root = sfs::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY).ctx(what)?;
    let Ok(dev) = open_in_root(root.as_fd(), Path::new("/dev")) else {
        return Ok(());
    };
    let dir = sfs::openat(
        dev.as_fd(),
        Path::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .ctx(what)?;
    match sfs::unlinkat(dir.as_fd(), Path::new("console"), false) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(RuntimeError::io(what(), e)),
    }
    let f = sfs::openat(
        dir.as_fd(),
        Path::new("console"),
        libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
        0o600,
    )
    .ctx(what)?;
    let src: CString = sfs::fd_path(slave);
    sfs::mount(
        Some(&src),
        &sfs::fd_path(f.as_fd()),
        None,
        libc::MS_BIND,
        None,
    )
    .ctx(what)
}
