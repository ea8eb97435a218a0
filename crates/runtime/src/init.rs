//! The container's init: the process forked by `create` (and by `exec`) that
//! sets up namespaces' contents, the rootfs and the process, waits for
//! `start`, and execs the user's program. Every step's error goes back to the
//! runtime over the [`Channel`] and the init exits.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use oci_spec::runtime::{Process, Spec};

use crate::channel::{Channel, Msg};
use crate::error::{IoContext, RuntimeError};
use crate::process::{self, ExecPlan};
use crate::seccomp_glue::Seccomp;
use crate::sys::{fs as sfs, process as sp};
use crate::{hooks, rootfs};

/// How the init learns that `start` was called.
#[derive(Debug)]
pub enum StartSignal {
    /// Block opening this FIFO (an `O_PATH` fd) for writing, as runc's exec.fifo.
    Fifo(OwnedFd),
    /// Wait for an `S` message on the channel (`run`, `exec`).
    Channel,
}

/// Everything the init needs; it is a fork of the runtime, so it borrows.
pub struct InitContext<'a> {
    /// The config.
    pub spec: &'a Spec,
    /// The process to run.
    pub process: &'a Process,
    /// Bundle directory.
    pub bundle: &'a Path,
    /// Rootfs directory.
    pub rootfs: &'a Path,
    /// The init's end of the channel.
    pub chan: &'a Channel,
    /// How to wait for start.
    pub start: StartSignal,
    /// A connected console socket when `process.terminal` is set.
    pub console: Option<OwnedFd>,
    /// `--no-pivot`.
    pub no_pivot: bool,
    /// A new user namespace was created (maps are written by the runtime).
    pub new_userns: bool,
    /// Unshare the cgroup namespace once in the container's cgroup.
    pub new_cgroupns: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
    /// The compiled seccomp filter.
    pub seccomp: Option<&'a Seccomp>,
    /// The state directory's lock fd, inherited by the fork: closed first.
    pub lock_fd: i32,
}

/// Runs the container init; never returns.
pub fn container_init(ctx: InitContext<'_>) -> ! {
    // the lock belongs to the runtime process; the init must not hold it
    sp::close_raw(ctx.lock_fd);
    let chan = ctx.chan;
    match setup_container(ctx) {
        Ok(never) => match never {},
        Err(e) => {
            chan.send_error(&e);
            sp::exit_now(1)
        }
    }
}

enum Never {}

fn wait_go(chan: &Channel) -> Result<(), RuntimeError> {
    match chan.recv().ctx(|| "wait for the runtime".to_owned())? {
        Msg::Data(b'G', _) => Ok(()),
        _ => Err(RuntimeError::Invalid(
            "runtime went away during setup".into(),
        )),
    }
}

fn setup_container(ctx: InitContext<'_>) -> Result<Never, RuntimeError> {
    // no container process may open this process's /proc entries (exe, fds)
    sp::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "set non-dumpable".to_owned())?;
    wait_go(ctx.chan)?;
    if ctx.new_userns {
        sp::setgid_all(0).ctx(|| "become root in the user namespace".to_owned())?;
        sp::setuid_all(0).ctx(|| "become root in the user namespace".to_owned())?;
    }
    if ctx.new_cgroupns {
        sp::unshare(libc::CLONE_NEWCGROUP).ctx(|| "create the cgroup namespace".to_owned())?;
    }
    let prepared = rootfs::prepare(ctx.spec, ctx.rootfs, ctx.bundle, ctx.new_userns)?;
    ctx.chan
        .send(b'H', b"")
        .ctx(|| "notify the runtime".to_owned())?;
    let state = match ctx.chan.recv().ctx(|| "wait for the runtime".to_owned())? {
        Msg::Data(b'C', state) => state,
        _ => {
            return Err(RuntimeError::Invalid(
                "runtime went away during setup".into(),
            ));
        }
    };
    let hooks = ctx.spec.hooks().as_ref();
    hooks::run(
        "createContainer",
        hooks.and_then(|h| h.create_container().as_ref()),
        &state,
    )?;
    drop(prepared.root);
    rootfs::enter(ctx.rootfs, ctx.no_pivot)?;
    let terminal = ctx.process.terminal().unwrap_or(false);
    if terminal {
        let console = ctx.console.as_ref().ok_or_else(|| {
            RuntimeError::Invalid("process.terminal is set but no console socket was given".into())
        })?;
        process::setup_terminal(ctx.process, console, true)?;
    }
    // sysctls go in before /proc/sys becomes read-only
    rootfs::sysctls(ctx.spec)?;
    rootfs::finish(ctx.spec)?;
    if let Some(h) = ctx.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sp::sethostname(h).ctx(|| format!("hostname: set {h:?}"))?;
    }
    if let Some(d) = ctx.spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        sp::setdomainname(d).ctx(|| format!("domainname: set {d:?}"))?;
    }
    let setgroups = !ctx.new_userns || setgroups_allowed();
    let plan = finish_process(ctx.process, ctx.seccomp, setgroups, true)?;
    // `create` exits once the container is created: the init must outlive it
    let _ = sp::prctl(libc::PR_SET_PDEATHSIG, 0, 0);
    ctx.chan
        .send(b'R', b"")
        .ctx(|| "notify the runtime".to_owned())?;
    wait_start(ctx.chan, ctx.start)?;
    hooks::run(
        "startContainer",
        hooks.and_then(|h| h.start_container().as_ref()),
        &state,
    )?;
    install_late_seccomp(ctx.process, ctx.seccomp)?;
    Err(process::exec(&plan, ctx.preserve_fds))
}

fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
}

/// The steps shared by the container init and `exec`: executable, cwd,
/// limits, identity, seccomp (early when no_new_privs is off).
pub(crate) fn finish_process(
    process: &Process,
    seccomp: Option<&Seccomp>,
    setgroups: bool,
    oom: bool,
) -> Result<ExecPlan, RuntimeError> {
    let plan = process::resolve(process)?;
    process::enter_cwd(process.cwd())?;
    process::set_rlimits(process)?;
    if oom {
        process::set_oom_score_adj(process)?;
    }
    let nnp = process.no_new_privileges().unwrap_or(false);
    if !nnp {
        // without no_new_privs the filter needs CAP_SYS_ADMIN: install it
        // before the capabilities are dropped
        if let Some(s) = seccomp {
            s.install()?;
        }
    }
    process::set_identity(process, setgroups)?;
    process::set_no_new_privs(process)?;
    Ok(plan)
}

/// With no_new_privs, the filter goes in as late as possible.
pub(crate) fn install_late_seccomp(
    process: &Process,
    seccomp: Option<&Seccomp>,
) -> Result<(), RuntimeError> {
    match seccomp {
        Some(s) if process.no_new_privileges().unwrap_or(false) => s.install(),
        _ => Ok(()),
    }
}

pub(crate) fn wait_start(chan: &Channel, start: StartSignal) -> Result<(), RuntimeError> {
    match start {
        StartSignal::Fifo(fd) => {
            // open for writing blocks until `start` opens the read end
            let path = sfs::fd_path(fd.as_fd());
            let p = std::path::PathBuf::from(path.to_string_lossy().into_owned());
            let w = sfs::open(&p, libc::O_WRONLY).ctx(|| "open exec fifo".to_owned())?;
            let mut f = std::fs::File::from(w);
            std::io::Write::write_all(&mut f, b"0").ctx(|| "write exec fifo".to_owned())?;
            Ok(())
        }
        StartSignal::Channel => match chan.recv().ctx(|| "wait for start".to_owned())? {
            Msg::Data(b'S', _) => Ok(()),
            _ => Err(RuntimeError::Invalid(
                "runtime went away before start".into(),
            )),
        },
    }
}
