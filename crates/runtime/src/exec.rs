//! `exec`: a new process in a running container's namespaces and cgroup.
//!
//! The runtime forks an intermediate that `setns`es into every namespace of
//! the container that differs from its own (user first), then forks the
//! process itself (a joined pid namespace applies to children only), which
//! takes the container's root from `/proc/<pid>/root`. The runtime is a
//! subreaper, so the process becomes its child when the intermediate exits.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::channel::{Channel, Msg};
use crate::container::{forwarding_signalfd, wait_forwarding, write_pid_file};
use crate::error::{IoContext, RuntimeError};
use crate::init::{StartSignal, finish_process, install_late_seccomp, wait_start};
use crate::namespaces::{clone_flag, proc_name};
use crate::seccomp_glue::{self, Seccomp};
use crate::state::{StateDir, Status};
use crate::sys::{fs as sfs, process as sp};

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Container id.
    pub id: String,
    /// State root.
    pub root: PathBuf,
    /// The process (`--process` file, or built from the container's config
    /// and the command line).
    pub process: Option<Process>,
    /// Plain args (when no process file).
    pub args: Vec<String>,
    /// `--cwd`.
    pub cwd: Option<PathBuf>,
    /// `--env` entries.
    pub env: Vec<String>,
    /// `--user uid[:gid]`.
    pub user: Option<(u32, Option<u32>)>,
    /// `--additional-gids`.
    pub additional_gids: Vec<u32>,
    /// `--tty`.
    pub tty: bool,
    /// `--detach`.
    pub detach: bool,
    /// `--pid-file`.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`.
    pub console_socket: Option<PathBuf>,
    /// `--no-new-privs`.
    pub no_new_privs: bool,
    /// `--preserve-fds`.
    pub preserve_fds: u32,
}

const NS_ORDER: [LinuxNamespaceType; 7] = [
    LinuxNamespaceType::User,
    LinuxNamespaceType::Ipc,
    LinuxNamespaceType::Uts,
    LinuxNamespaceType::Network,
    LinuxNamespaceType::Pid,
    LinuxNamespaceType::Cgroup,
    LinuxNamespaceType::Mount,
];

/// Runs `exec`; returns the process's exit status, or 0 with `detach`.
pub fn exec(opts: &ExecOptions) -> Result<i32, RuntimeError> {
    let dir = StateDir::open(&opts.root, &opts.id)?;
    let rec = dir.load()?;
    let status = dir.status(&rec);
    if !matches!(status, Status::Running | Status::Created) {
        return Err(RuntimeError::WrongState {
            id: opts.id.clone(),
            status: status.to_string(),
            op: "exec (it is not running)",
        });
    }
    let spec = crate::container::bundle_spec(&rec.bundle)?;
    let process = build_process(opts, spec.process().as_ref())?;
    crate::config::validate_process(&process)?;
    let seccomp = seccomp_glue::compile(&spec)?;
    let terminal = process.terminal().unwrap_or(false);
    let console = match (&opts.console_socket, terminal) {
        (Some(p), true) => {
            Some(OwnedFd::from(UnixStream::connect(p).ctx(|| {
                format!("connect to console socket {}", p.display())
            })?))
        }
        (None, true) => {
            return Err(RuntimeError::Invalid("--tty needs --console-socket".into()));
        }
        _ => None,
    };
    let mut join: Vec<(i32, OwnedFd)> = Vec::new();
    let mut pid_ns = false;
    for t in NS_ORDER {
        let theirs = format!("/proc/{}/ns/{}", rec.pid, proc_name(t));
        let ours = format!("/proc/self/ns/{}", proc_name(t));
        let (Ok(a), Ok(b)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours)) else {
            continue;
        };
        if a.ino() == b.ino() && a.dev() == b.dev() {
            continue;
        }
        pid_ns |= t == LinuxNamespaceType::Pid;
        join.push((
            clone_flag(t),
            sfs::open(Path::new(&theirs), libc::O_RDONLY).ctx(|| format!("open {theirs}"))?,
        ));
    }
    let new_userns = join.iter().any(|(f, _)| *f == libc::CLONE_NEWUSER);
    let root_fd = sfs::open(
        Path::new(&format!("/proc/{}/root", rec.pid)),
        libc::O_PATH | libc::O_DIRECTORY,
    )
    .ctx(|| format!("open the root of container {}", opts.id))?;
    drop(dir);

    sp::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0).ctx(|| "become a subreaper".to_owned())?;
    let (chan, child_chan) = Channel::pair().ctx(|| "create the exec channel".to_owned())?;
    let sfd = if opts.detach {
        None
    } else {
        Some(forwarding_signalfd()?)
    };
    // non-dumpable before forking: the children inherit it, so there is no
    // moment in which a container process could open their /proc entries
    sp::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "set non-dumpable".to_owned())?;
    let mid = match sp::clone(0).ctx(|| "fork".to_owned())? {
        sp::Forked::Child => {
            drop(chan);
            intermediate(
                &join,
                pid_ns,
                &root_fd,
                &child_chan,
                &process,
                console,
                seccomp.as_ref(),
                opts.preserve_fds,
                new_userns,
            )
        }
        sp::Forked::Parent(p) => p,
    };
    drop(child_chan);
    let _ = sp::waitpid(mid);
    let pid = match chan.recv().ctx(|| "wait for exec".to_owned())? {
        Msg::Data(b'P', p) => i32::from_le_bytes(
            p.as_slice()
                .try_into()
                .map_err(|_| RuntimeError::Invalid("bad pid message".into()))?,
        ),
        Msg::Data(b'E', p) => return Err(Channel::decode_error(&p)),
        _ => {
            return Err(RuntimeError::Invalid(
                "the exec process exited early".into(),
            ));
        }
    };
    let result = (|| {
        if let Some(cg) = &rec.cgroup {
            cg.add_process(pid)?;
        }
        chan.send(b'G', b"")
            .ctx(|| "signal the exec process".to_owned())?;
        match chan.recv().ctx(|| "wait for the exec process".to_owned())? {
            Msg::Data(b'R', _) => {}
            Msg::Data(b'E', p) => return Err(Channel::decode_error(&p)),
            _ => {
                return Err(RuntimeError::Invalid(
                    "the exec process exited during setup".into(),
                ));
            }
        }
        chan.send(b'S', b"")
            .ctx(|| "start the exec process".to_owned())?;
        match chan.recv().ctx(|| "wait for the exec process".to_owned())? {
            Msg::Eof => Ok(()),
            Msg::Data(b'E', p) => Err(Channel::decode_error(&p)),
            _ => Err(RuntimeError::Invalid(
                "unexpected message from the exec process".into(),
            )),
        }
    })();
    if let Err(e) = result {
        let _ = sp::kill(pid, libc::SIGKILL);
        let _ = sp::waitpid(pid);
        return Err(e);
    }
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, pid)?;
    }
    let Some(sfd) = sfd else { return Ok(0) };
    Ok(wait_forwarding(pid, sfd.as_fd())?.status())
}

#[allow(clippy::too_many_arguments)]
fn intermediate(
    join: &[(i32, OwnedFd)],
    pid_ns: bool,
    root: &OwnedFd,
    chan: &Channel,
    process: &Process,
    console: Option<OwnedFd>,
    seccomp: Option<&Seccomp>,
    preserve: u32,
    userns: bool,
) -> ! {
    for (flag, fd) in join {
        if let Err(e) = sp::setns(fd.as_fd(), *flag) {
            chan.send_error(&RuntimeError::io(format!("join namespace {flag:#x}"), e));
            sp::exit_now(1);
        }
    }
    let _ = pid_ns;
    match sp::clone(0) {
        Ok(sp::Forked::Parent(pid)) => {
            let _ = chan.send(b'P', &pid.to_le_bytes());
            sp::exit_now(0)
        }
        Ok(sp::Forked::Child) => {}
        Err(e) => {
            chan.send_error(&RuntimeError::io("fork the exec process", e));
            sp::exit_now(1)
        }
    }
    let r = (|| -> Result<std::convert::Infallible, RuntimeError> {
        sp::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "set non-dumpable".to_owned())?;
        sfs::fchdir(root.as_fd()).ctx(|| "enter the container root".to_owned())?;
        sfs::chroot(c".").ctx(|| "enter the container root".to_owned())?;
        match chan.recv().ctx(|| "wait for the runtime".to_owned())? {
            Msg::Data(b'G', _) => {}
            _ => return Err(RuntimeError::Invalid("runtime went away".into())),
        }
        if let Some(c) = &console {
            crate::process::setup_terminal(process, c, false)?;
        }
        let setgroups = !userns
            || std::fs::read_to_string("/proc/self/setgroups")
                .map_or(true, |s| s.trim() == "allow");
        let plan = finish_process(
            process,
            seccomp,
            setgroups,
            process.oom_score_adj().is_some(),
        )?;
        chan.send(b'R', b"")
            .ctx(|| "notify the runtime".to_owned())?;
        wait_start(chan, StartSignal::Channel)?;
        install_late_seccomp(process, seccomp)?;
        Err(crate::process::exec(&plan, preserve))
    })();
    let Err(e) = r;
    chan.send_error(&e);
    sp::exit_now(1)
}

fn build_process(opts: &ExecOptions, template: Option<&Process>) -> Result<Process, RuntimeError> {
    if let Some(p) = &opts.process {
        return Ok(p.clone());
    }
    if opts.args.is_empty() {
        return Err(RuntimeError::Invalid(
            "exec: no command given (args or --process)".into(),
        ));
    }
    let mut p = template.cloned().unwrap_or_default();
    p.set_args(Some(opts.args.clone()));
    p.set_terminal(Some(opts.tty));
    if let Some(cwd) = &opts.cwd {
        p.set_cwd(cwd.clone());
    }
    if !opts.env.is_empty() {
        let mut env = p.env().clone().unwrap_or_default();
        for kv in &opts.env {
            let key = kv.split('=').next().unwrap_or("");
            env.retain(|e| e.split('=').next() != Some(key));
            env.push(kv.clone());
        }
        p.set_env(Some(env));
    }
    if let Some((uid, gid)) = opts.user {
        let u = p.user_mut();
        u.set_uid(uid);
        u.set_gid(gid.unwrap_or(0));
        if !opts.additional_gids.is_empty() {
            u.set_additional_gids(Some(opts.additional_gids.clone()));
        }
    }
    if opts.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    // the container's oom score is inherited; exec does not set it again
    p.set_oom_score_adj(None);
    Ok(p)
}
