//! Process calls: clone, wait, signals, credentials, capabilities, prctl, exec.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{cvt, cvt_long};

/// Which side of a [`clone`] this process is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The caller; holds the child's pid.
    Parent(i32),
}

/// `clone(2)` without a new stack (fork-like) creating the namespaces in
/// `flags` (`CLONE_NEW*`); the child gets `SIGCHLD` semantics.
///
/// The caller must be single-threaded: the child continues on a copy of the
/// caller's only thread.
pub fn clone(flags: u64) -> io::Result<Forked> {
    // SAFETY: with a NULL stack, clone behaves like fork: the child runs on a
    // copy of the parent's address space. The runtime process is
    // single-threaded (documented contract of the library), so no lock is held
    // by another thread at the time of the copy.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as u64,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0u64,
        )
    };
    match cvt_long(r)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as i32)),
    }
}

/// Leaves the process immediately (no atexit handlers, no stdio flush):
/// what a forked child must do.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no process-shared state.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with a status.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    /// The shell convention: the code, or 128 + signal.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// `waitpid(2)` for `pid` (or any child for -1), retrying on `EINTR`.
/// Returns the pid that ended and how.
pub fn waitpid(pid: i32) -> io::Result<(i32, Exit)> {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid writable int.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        if libc::WIFEXITED(status) {
            return Ok((r, Exit::Code(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok((r, Exit::Signal(libc::WTERMSIG(status))));
        }
    }
}

/// `kill(2)`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, sig) }).map(drop)
}

/// `getpid(2)`.
pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

/// `setns(2)`.
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> io::Result<()> {
    // SAFETY: `fd` is a valid open fd.
    cvt(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(drop)
}

/// `unshare(2)`.
pub fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: unshare has no memory-safety preconditions.
    cvt(unsafe { libc::unshare(flags) }).map(drop)
}

/// `setsid(2)`.
pub fn setsid() -> io::Result<()> {
    // SAFETY: setsid has no memory-safety preconditions.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// `sethostname(2)`.
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    cvt(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `setdomainname(2)`.
pub fn setdomainname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    cvt(unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `setresuid(2)` with all three ids set to `uid`.
pub fn setuid_all(uid: u32) -> io::Result<()> {
    // SAFETY: no memory-safety preconditions.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
}

/// `setresgid(2)` with all three ids set to `gid`.
pub fn setgid_all(gid: u32) -> io::Result<()> {
    // SAFETY: no memory-safety preconditions.
    cvt_long(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
}

/// `setgroups(2)`.
pub fn setgroups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe `gids`. The raw syscall is used
    // so that only this thread is affected (the process has one thread).
    cvt_long(unsafe { libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) }).map(drop)
}

/// `prlimit(2)` on this process.
pub fn setrlimit(resource: u32, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit64; the old-limit pointer is NULL.
    cvt(unsafe { libc::prlimit64(0, resource as _, &lim, std::ptr::null_mut()) }).map(drop)
}

/// `getrlimit(2)`: `(soft, hard)`.
pub fn getrlimit(resource: u32) -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is writable; the new-limit pointer is NULL.
    cvt(unsafe { libc::prlimit64(0, resource as _, std::ptr::null(), &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// `prctl(2)` with integer arguments.
pub fn prctl(option: i32, a2: u64, a3: u64) -> io::Result<i32> {
    // SAFETY: only integer-argument options are passed by this crate.
    cvt(unsafe {
        libc::prctl(
            option,
            a2 as libc::c_ulong,
            a3 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    })
}

/// The five capability sets as 64-bit masks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    /// Effective set.
    pub effective: u64,
    /// Permitted set.
    pub permitted: u64,
    /// Inheritable set.
    pub inheritable: u64,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// `capset(2)` for this thread (version 3, 64-bit sets).
pub fn capset(sets: CapSets) -> io::Result<()> {
    let hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: sets.effective as u32,
            permitted: sets.permitted as u32,
            inheritable: sets.inheritable as u32,
        },
        CapData {
            effective: (sets.effective >> 32) as u32,
            permitted: (sets.permitted >> 32) as u32,
            inheritable: (sets.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: `hdr` and the two-element `data` array match the v3 ABI.
    cvt_long(unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) })
        .map(drop)
}

/// `execveat(2)` of an open executable with `argv` and `envp`; returns only
/// on failure.
pub fn fexecve(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    let empty = c"";
    // SAFETY: `a` and `e` are NULL-terminated arrays of pointers to C strings
    // that outlive the call; `fd` is valid. execveat only returns on error.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            empty.as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// Marks every fd from `first` up as close-on-exec (`close_range(2)`).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds.
    cvt_long(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
    .map(drop)
}

/// `dup3(2)` of `fd` onto `target` (without close-on-exec).
pub fn dup_onto(fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    if fd.as_raw_fd() == target {
        // dup3 refuses equal fds; clear close-on-exec instead
        // SAFETY: fcntl F_SETFD on a valid fd.
        return cvt(unsafe { libc::fcntl(target, libc::F_SETFD, 0) }).map(drop);
    }
    // SAFETY: both are fd numbers; dup3 replaces `target` atomically.
    cvt(unsafe { libc::dup3(fd.as_raw_fd(), target, 0) }).map(drop)
}

/// Takes ownership of an fd number inherited from the parent.
///
/// # Safety contract
/// Callers pass only fd numbers that this process owns exclusively (e.g. the
/// ones named by `--preserve-fds` or `LISTEN_FDS`), checked to be open here.
pub fn own_fd(fd: i32) -> io::Result<OwnedFd> {
    // SAFETY: fcntl F_GETFD only checks that `fd` is open.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: the fd is open and, per the contract above, owned by the caller.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Resets every signal's disposition to default and unblocks all signals,
/// as a fresh process expects after exec.
pub fn reset_signals() {
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; errors for invalid
        // numbers (32, 33 reserved by libc) are ignored.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty set is a valid sigset_t after sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Blocks `signals` in this process and returns a signalfd that reports them.
pub fn signalfd(signals: &[i32]) -> io::Result<OwnedFd> {
    // SAFETY: the set is initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for s in signals {
        // SAFETY: `set` is valid; invalid numbers only make sigaddset fail.
        unsafe { libc::sigaddset(&mut set, *s) };
    }
    // SAFETY: `set` is valid; the old-mask pointer is NULL.
    cvt(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: `set` is valid; -1 asks for a new fd.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one signal number from a signalfd.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: an all-zero siginfo is a valid buffer.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is a writable buffer of `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    if n != size as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(info.ssi_signo as i32)
}

/// `waitpid(WNOHANG)` for any child: `Some((pid, exit))` if one ended.
pub fn try_wait_any() -> io::Result<Option<(i32, Exit)>> {
    let mut status = 0;
    // SAFETY: `status` is a valid writable int.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    if r == 0 {
        return Ok(None);
    }
    if libc::WIFSIGNALED(status) {
        return Ok(Some((r, Exit::Signal(libc::WTERMSIG(status)))));
    }
    Ok(Some((r, Exit::Code(libc::WEXITSTATUS(status)))))
}

/// The signal number of a name such as `KILL`, `SIGTERM` or `9`.
pub fn signal_number(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let n = name.strip_prefix("SIG").unwrap_or(name);
    let table: [(&str, i32); 32] = [
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("ILL", libc::SIGILL),
        ("TRAP", libc::SIGTRAP),
        ("ABRT", libc::SIGABRT),
        ("IOT", libc::SIGIOT),
        ("BUS", libc::SIGBUS),
        ("FPE", libc::SIGFPE),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("SEGV", libc::SIGSEGV),
        ("USR2", libc::SIGUSR2),
        ("PIPE", libc::SIGPIPE),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("STKFLT", libc::SIGSTKFLT),
        ("CHLD", libc::SIGCHLD),
        ("CONT", libc::SIGCONT),
        ("STOP", libc::SIGSTOP),
        ("TSTP", libc::SIGTSTP),
        ("TTIN", libc::SIGTTIN),
        ("TTOU", libc::SIGTTOU),
        ("URG", libc::SIGURG),
        ("XCPU", libc::SIGXCPU),
        ("XFSZ", libc::SIGXFSZ),
        ("VTALRM", libc::SIGVTALRM),
        ("PROF", libc::SIGPROF),
        ("WINCH", libc::SIGWINCH),
        ("IO", libc::SIGIO),
        ("PWR", libc::SIGPWR),
        ("SYS", libc::SIGSYS),
    ];
    table
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(n))
        .map(|(_, v)| *v)
}

/// Ensures `s` names a C string for logs; helper for error messages.
pub fn lossy(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

/// Joins a new session keyring named `name` (`keyctl(KEYCTL_JOIN_SESSION_KEYRING)`).
pub fn join_session_keyring(name: &str) -> io::Result<()> {
    let c = super::cstring(name)?;
    // SAFETY: `c` is a valid C string for the duration of the call.
    cvt_long(unsafe { libc::syscall(libc::SYS_keyctl, 1 as libc::c_long, c.as_ptr()) }).map(drop)
}

/// Closes an fd number that this process does not otherwise own as an
/// `OwnedFd` (a forked child's copy of the parent's lock).
pub fn close_raw(fd: i32) {
    // SAFETY: closing an fd number only affects this process's fd table; the
    // caller guarantees no live `OwnedFd` in this process will use it again
    // (the forked child never returns to the code that owns it).
    unsafe { libc::close(fd) };
}
