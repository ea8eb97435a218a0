//! The container process, set up by the init just before exec: executable
//! lookup, cwd, rlimits, oom score, user and groups, capabilities, umask,
//! no_new_privs, the terminal, and the exec itself.
//!
//! Defences: the executable (and every `#!` interpreter it names) is checked
//! not to be the runtime binary (CVE-2019-5736 class: `/proc/self/exe` of the
//! init is the runtime until exec, and the init is non-dumpable so that no
//! container process can open it through /proc); the cwd is opened with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS` so that neither `..` nor a
//! `/proc/self/fd/N` magic link leaves the container (CVE-2024-21626 class);
//! every fd above the preserved ones is close-on-exec before exec.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{PosixRlimitType, Process};

use crate::caps::{self, CapMasks};
use crate::error::{IoContext, RuntimeError};
use crate::sys::{self, fs as sfs, process as sp, term};

/// What to exec.
#[derive(Debug)]
pub struct ExecPlan {
    /// Resolved executable path (container view).
    pub path: CString,
    /// argv.
    pub argv: Vec<CString>,
    /// envp.
    pub envp: Vec<CString>,
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Finds `args[0]` (through `PATH` from `env` when it has no `/`) inside the
/// current root and checks it is not the runtime binary.
pub fn resolve(process: &Process) -> Result<ExecPlan, RuntimeError> {
    let args = process.args().as_deref().unwrap_or(&[]);
    let env = process.env().as_deref().unwrap_or(&[]);
    let Some(arg0) = args.first() else {
        return Err(RuntimeError::Invalid("process.args: empty".into()));
    };
    let path = if arg0.contains('/') {
        let p = PathBuf::from(arg0);
        if !is_executable(&p) {
            return Err(RuntimeError::ExecNotFound(format!(
                "{arg0:?} in the container (process.args[0])"
            )));
        }
        p
    } else {
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        search
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(arg0))
            .find(|p| is_executable(p))
            .ok_or_else(|| not_found_exec(RuntimeError::NotFound(format!("{arg0:?} in $PATH"))))?
    };
    refuse_runtime_binary(&path)?;
    let c = |s: &str| {
        sys::cstring(s)
            .map_err(|_| RuntimeError::Invalid(format!("process: {s:?} contains a NUL byte")))
    };
    Ok(ExecPlan {
        path: sys::cpath(&path)
            .map_err(|_| RuntimeError::Invalid("process.args[0] contains a NUL byte".into()))?,
        argv: args.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
        envp: env.iter().map(|a| c(a)).collect::<Result<_, _>>()?,
    })
}

fn not_found_exec(e: RuntimeError) -> RuntimeError {
    match e {
        RuntimeError::NotFound(what) => RuntimeError::ExecNotFound(what),
        other => other,
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Refuses to exec the runtime itself, directly or as a `#!` interpreter
/// (up to the kernel's four levels).
fn refuse_runtime_binary(path: &Path) -> Result<(), RuntimeError> {
    let own = std::fs::metadata("/proc/self/exe").ok().map(|m| {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    });
    let mut cur = path.to_owned();
    for _ in 0..5 {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&cur).ctx(|| format!("stat {}", cur.display()))?;
        if Some((m.dev(), m.ino())) == own {
            return Err(RuntimeError::Forbidden(format!(
                "refusing to execute {}: it is the runtime binary (/proc/self/exe)",
                path.display()
            )));
        }
        let mut head = [0u8; 256];
        let n = std::fs::File::open(&cur)
            .and_then(|mut f| f.read(&mut head))
            .unwrap_or(0);
        let Some(rest) = head[..n].strip_prefix(b"#!") else {
            return Ok(());
        };
        let line = rest.split(|b| *b == b'\n').next().unwrap_or(&[]);
        let interp = line
            .split(|b| *b == b' ' || *b == b'\t')
            .find(|w| !w.is_empty())
            .unwrap_or(&[]);
        if interp.is_empty() {
            return Ok(());
        }
        cur = PathBuf::from(std::ffi::OsStr::from_bytes(interp));
    }
    Ok(())
}

/// Changes into `cwd`, resolved inside the current root without magic links.
pub fn enter_cwd(cwd: &Path) -> Result<(), RuntimeError> {
    let root =
        sfs::open(Path::new("/"), libc::O_PATH | libc::O_DIRECTORY).ctx(|| "open /".to_owned())?;
    let fd = sfs::openat2(
        root.as_fd(),
        &crate::mounts::relative(cwd),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
        sfs::RESOLVE_IN_ROOT | sfs::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| {
        RuntimeError::Invalid(format!(
            "process.cwd: {}: not a directory inside the container: {e}",
            cwd.display()
        ))
    })?;
    sfs::fchdir(fd.as_fd()).ctx(|| format!("chdir {}", cwd.display()))
}

fn rlimit_resource(t: PosixRlimitType) -> u32 {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Applies `process.rlimits`. Raising a hard limit needs CAP_SYS_RESOURCE,
/// which this host may lack: that fails with an error naming the limit.
pub fn set_rlimits(process: &Process) -> Result<(), RuntimeError> {
    for r in process.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(RuntimeError::Invalid(format!(
                "process.rlimits: {:?}: soft limit {} is above the hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
        let res = rlimit_resource(r.typ());
        if let Err(e) = sp::setrlimit(res, r.soft(), r.hard()) {
            let current = sp::getrlimit(res).map(|l| l.1).unwrap_or(0);
            if e.raw_os_error() == Some(libc::EPERM) {
                return Err(RuntimeError::Forbidden(format!(
                    "process.rlimits: {}: hard limit {} is above the host's {} and raising it needs CAP_SYS_RESOURCE",
                    r.typ(),
                    r.hard(),
                    current
                )));
            }
            return Err(RuntimeError::io(format!("set rlimit {}", r.typ()), e));
        }
    }
    Ok(())
}

/// Writes `process.oomScoreAdj`. Lowering it needs CAP_SYS_RESOURCE: then the
/// current value is kept with a warning, as the spec allows.
pub fn set_oom_score_adj(process: &Process) -> Result<(), RuntimeError> {
    let Some(v) = process.oom_score_adj() else {
        return Ok(());
    };
    if !(-1000..=1000).contains(&v) {
        return Err(RuntimeError::Invalid(format!(
            "process.oomScoreAdj: {v} is outside -1000..1000"
        )));
    }
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", v.to_string()) {
        if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            let cur = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
            tracing::warn!(
                "process.oomScoreAdj: cannot lower the oom score from {} to {v} without CAP_SYS_RESOURCE; keeping {}",
                cur.trim(),
                cur.trim()
            );
            return Ok(());
        }
        return Err(RuntimeError::io("write /proc/self/oom_score_adj", e));
    }
    Ok(())
}

/// Switches to the process's user and groups and sets its capabilities.
/// `setgroups_allowed` is false in a user namespace whose setgroups is denied.
pub fn set_identity(process: &Process, setgroups_allowed: bool) -> Result<(), RuntimeError> {
    let masks = CapMasks::from_spec(process.capabilities().as_ref());
    let user = process.user();
    sp::prctl(libc::PR_SET_KEEPCAPS, 1, 0).ctx(|| "keep capabilities across setuid".to_owned())?;
    caps::drop_bounding(masks.bounding)?;
    if setgroups_allowed {
        let gids = user.additional_gids().as_deref().unwrap_or(&[]);
        sp::setgroups(gids).ctx(|| format!("process.user.additionalGids: set {gids:?}"))?;
    }
    sp::setgid_all(user.gid()).ctx(|| format!("process.user.gid: set {}", user.gid()))?;
    sp::setuid_all(user.uid()).ctx(|| format!("process.user.uid: set {}", user.uid()))?;
    caps::set(&masks)?;
    sp::prctl(libc::PR_SET_KEEPCAPS, 0, 0).ctx(|| "clear keepcaps".to_owned())?;
    if let Some(mask) = user.umask() {
        sfs::umask(mask & 0o777);
    } else {
        sfs::umask(0o022);
    }
    Ok(())
}

/// Sets no_new_privs when asked.
pub fn set_no_new_privs(process: &Process) -> Result<(), RuntimeError> {
    if process.no_new_privileges().unwrap_or(false) {
        sp::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0).ctx(|| "set no_new_privs".to_owned())?;
    }
    Ok(())
}

/// Opens a pty in the container's devpts, binds it onto /dev/console (when
/// `bind_console`), sends the master to `console` and makes the peer the
/// controlling terminal and stdio.
pub fn setup_terminal(
    process: &Process,
    console: &OwnedFd,
    bind_console: bool,
) -> Result<(), RuntimeError> {
    let what = || "set up the terminal".to_owned();
    let master = sfs::open(Path::new("/dev/pts/ptmx"), libc::O_RDWR | libc::O_NOCTTY)
        .ctx(|| "open /dev/pts/ptmx".to_owned())?;
    let slave = term::open_pty_peer(master.as_fd()).ctx(what)?;
    if let Some(size) = process.console_size() {
        term::set_winsize(slave.as_fd(), size.height() as u16, size.width() as u16).ctx(what)?;
    }
    if bind_console {
        crate::rootfs::bind_console(slave.as_fd())?;
    }
    let name = format!("/dev/pts/{}", term::pty_number(master.as_fd()).ctx(what)?);
    term::send_fd(console.as_fd(), master.as_fd(), name.as_bytes())
        .ctx(|| "send the pty master to the console socket".to_owned())?;
    drop(master);
    sp::setsid().ctx(what)?;
    term::set_controlling_tty(slave.as_fd()).ctx(what)?;
    for target in 0..3 {
        sp::dup_onto(slave.as_fd(), target).ctx(what)?;
    }
    Ok(())
}

/// Marks fds from `3 + preserve` up close-on-exec, clears it on the
/// preserved ones, resets signals and execs. Returns only on failure.
pub fn exec(plan: &ExecPlan, preserve: u32) -> RuntimeError {
    for fd in 3..3 + preserve as i32 {
        if let Ok(owned) = sp::own_fd(fd) {
            let _ = sp::dup_onto(owned.as_fd(), fd);
            std::mem::forget(owned);
        }
    }
    if let Err(e) = sp::cloexec_from(3 + preserve) {
        return RuntimeError::io("close inherited fds", e);
    }
    sp::reset_signals();
    let e = sfs::execve(&plan.path, &plan.argv, &plan.envp);
    RuntimeError::io(format!("exec {}", sp::lossy(&plan.path)), e)
}
