//! File-system calls: openat2 confined to a root, mounts, pivot_root, nodes.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::ptr;

use super::{cpath, cvt, cvt_long};

/// `statfs` magic number of procfs.
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
/// `statfs` magic number of sysfs.
pub const SYSFS_MAGIC: i64 = 0x6265_6572;

/// Resolution flags for [`openat2`].
pub const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// Fail on any symlink.
pub const RESOLVE_NO_SYMLINKS: u64 = 0x04;
/// Treat the directory fd as the root: `..` and absolute symlinks stay inside.
pub const RESOLVE_IN_ROOT: u64 = 0x10;

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `openat2(2)`: opens `path` relative to `dir` with `resolve` restrictions.
/// Always adds `O_CLOEXEC`.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: u64::from(mode),
        resolve,
    };
    // SAFETY: `c` is a valid NUL-terminated string and `how` a valid open_how
    // struct of the size passed; both outlive the call. The kernel returns a
    // new fd that nothing else owns.
    let r = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    let fd = cvt_long(r)? as RawFd;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(2)` with `O_CLOEXEC` added.
pub fn openat(dir: BorrowedFd<'_>, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid C string for the duration of the call.
    let fd =
        cvt(unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `mkdirat(2)`.
pub fn mkdirat(dir: BorrowedFd<'_>, name: &Path, mode: u32) -> io::Result<()> {
    let c = cpath(name)?;
    // SAFETY: `c` is a valid C string for the duration of the call.
    cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) }).map(drop)
}

/// `mknodat(2)`.
pub fn mknodat(dir: BorrowedFd<'_>, name: &Path, mode: u32, dev: u64) -> io::Result<()> {
    let c = cpath(name)?;
    // SAFETY: `c` is a valid C string for the duration of the call.
    cvt(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, dev) }).map(drop)
}

/// `symlinkat(2)`: creates `name` in `dir` pointing at `target`.
pub fn symlinkat(target: &Path, dir: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
    let t = cpath(target)?;
    let n = cpath(name)?;
    // SAFETY: both are valid C strings for the duration of the call.
    cvt(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), n.as_ptr()) }).map(drop)
}

/// `fchownat(2)` on the fd itself (`AT_EMPTY_PATH`).
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd.
    cvt(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) }).map(drop)
}

/// `fchmod(2)`.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd.
    cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

/// `mount(2)`. `None` arguments are passed as NULL.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
) -> io::Result<()> {
    let p = |s: Option<&CStr>| s.map_or(ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is NULL or a valid C string alive for the call.
    cvt(unsafe {
        libc::mount(
            p(source),
            target.as_ptr(),
            p(fstype),
            flags as libc::c_ulong,
            p(data).cast(),
        )
    })
    .map(drop)
}

/// `umount2(2)`.
pub fn umount2(target: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: `target` is a valid C string.
    cvt(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &CStr, put_old: &CStr) -> io::Result<()> {
    // SAFETY: both are valid C strings alive for the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) })
        .map(drop)
}

/// `chroot(2)`.
pub fn chroot(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a valid C string.
    cvt(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a valid C string.
    cvt(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `fchdir(2)`.
pub fn fchdir(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd.
    cvt(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(drop)
}

/// `fstatfs(2)`: the file system's magic number.
pub fn fs_magic(fd: BorrowedFd<'_>) -> io::Result<i64> {
    // SAFETY: an all-zero statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid and `st` is a writable statfs.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// `fstat(2)`.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid (O_PATH fds are allowed) and `st` is writable.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `mkfifo(3)`.
pub fn mkfifo(path: &Path, mode: u32) -> io::Result<()> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid C string.
    cvt(unsafe { libc::mkfifo(c.as_ptr(), mode) }).map(drop)
}

/// `flock(2)` exclusive; `nonblock` fails with `EWOULDBLOCK` instead of waiting.
pub fn flock_exclusive(fd: BorrowedFd<'_>, nonblock: bool) -> io::Result<()> {
    let op = libc::LOCK_EX | if nonblock { libc::LOCK_NB } else { 0 };
    // SAFETY: `fd` is a valid open fd.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), op) }).map(drop)
}

/// `umask(2)`; returns the previous mask.
pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask) }
}

/// The path of `/proc/self/fd/<fd>`, used to name an fd to `mount(2)`.
pub fn fd_path(fd: BorrowedFd<'_>) -> std::ffi::CString {
    // a decimal number never holds a NUL byte
    std::ffi::CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default()
}

/// `unlinkat(2)`; `dir_flag` removes a directory.
pub fn unlinkat(dir: BorrowedFd<'_>, name: &Path, dir_flag: bool) -> io::Result<()> {
    let c = cpath(name)?;
    let flags = if dir_flag { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: `c` is a valid C string for the duration of the call.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) }).map(drop)
}

/// The mount flags (`ST_*`, equal to `MS_RDONLY|MS_NOSUID|MS_NODEV|MS_NOEXEC|...`)
/// of the mount holding `fd`.
pub fn mount_flags(fd: BorrowedFd<'_>) -> io::Result<u64> {
    // SAFETY: an all-zero statvfs is a valid value to be overwritten.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is valid and `st` is a writable statvfs.
    cvt(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_flag as u64)
}

/// `execve(2)` by path; returns only on failure.
pub fn execve(
    path: &std::ffi::CStr,
    argv: &[std::ffi::CString],
    envp: &[std::ffi::CString],
) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(ptr::null());
    // SAFETY: `a` and `e` are NULL-terminated arrays of valid C strings that
    // outlive the call; execve only returns on error.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// `open(2)` relative to the current directory, with `O_CLOEXEC` added.
pub fn open(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cpath(path)?;
    // SAFETY: `c` is a valid C string for the duration of the call.
    let fd = cvt(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
