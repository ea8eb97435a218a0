//! `create` and `run`: from a bundle to a container whose init waits for
//! `start` (or, for `run`, is started and waited for).
//!
//! The runtime process forks the init directly with `clone(2)` and the
//! `CLONE_NEW*` flags of the namespaces to create; only when namespaces are
//! joined by path does an intermediate process `setns` into them first (a
//! pid namespace applies to children only). Nothing is re-exec'd.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use kontti_core::ContainerId;
use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::cgroups::Cgroup;
use crate::channel::{Channel, Msg};
use crate::config::{self, Bundle};
use crate::error::{IoContext, RuntimeError};
use crate::hooks;
use crate::init::{self, InitContext, StartSignal};
use crate::namespaces::NamespacePlan;
use crate::seccomp_glue;
use crate::state::{self, EXEC_FIFO, Record, StateDir, Status};
use crate::sys::{fs as sfs, process as sp};

/// Options of `create` and `run`.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// State root (`--root`).
    pub root: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to.
    pub console_socket: Option<PathBuf>,
    /// MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Pass fds 3..3+n to the container.
    pub preserve_fds: u32,
    /// Do not create a session keyring.
    pub no_new_keyring: bool,
    /// Once the config is parsed and its seccomp filter compiled, drop the
    /// clean code pages touched so far from this process's page tables (see
    /// [`crate::sys::mem::release_clean_file_pages`]), so that a short-lived
    /// caller's peak RSS holds only the code that container setup runs.
    pub release_parsing_pages: bool,
}

/// Undoes a half-made container on drop unless disarmed.
struct Undo {
    dir: Option<StateDir>,
    cgroup: Option<Cgroup>,
    pid: Option<i32>,
}

impl Undo {
    fn disarm(mut self) -> StateDir {
        self.cgroup = None;
        self.pid = None;
        self.dir.take().expect("state dir set at creation")
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = sp::kill(pid, libc::SIGKILL);
            if sp::waitpid(pid).is_err() {
                wait_gone(pid);
            }
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all(libc::SIGKILL);
            if let Err(e) = cg.destroy() {
                tracing::warn!("cleanup: {e}");
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

/// Waits (up to 5 s) until `pid` is gone or a zombie.
pub(crate) fn wait_gone(pid: i32) {
    for _ in 0..5000 {
        match state::proc_stat(pid) {
            None => return,
            Some((_, 'Z')) | Some((_, 'X')) => return,
            _ => std::thread::sleep(std::time::Duration::from_millis(1)),
        }
    }
}

/// A created container: its record and locked state directory.
pub struct Created {
    /// The record as saved.
    pub record: Record,
    /// The state directory (locked while this value lives).
    pub dir: StateDir,
    chan: Channel,
    /// Our end of the socket the init sends the pty master to, when `run`
    /// proxies the terminal itself.
    tty: Option<OwnedFd>,
}

/// `create`: the init waits on the exec FIFO for `start`.
pub fn create(opts: &CreateOptions) -> Result<Created, RuntimeError> {
    spawn(opts, true, false)
}

/// `run`: create, start, and unless `detach`, wait and delete. Returns the
/// exit status (128 + signal for a signal).
pub fn run(opts: &CreateOptions, detach: bool) -> Result<i32, RuntimeError> {
    if !detach {
        // grandchildren (joined pid namespace) are reparented to us
        sp::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0).ctx(|| "become a subreaper".to_owned())?;
    }
    let created = spawn(opts, false, !detach)?;
    let Created {
        record,
        dir,
        chan,
        tty,
    } = created;
    let pid = record.pid;
    // block the signals to forward before the container can exit
    let sfd = if detach {
        None
    } else {
        Some(forwarding_signalfd()?)
    };
    let started = (|| {
        chan.send(b'S', b"")
            .ctx(|| "start the container".to_owned())?;
        match chan.recv().ctx(|| "wait for exec".to_owned())? {
            Msg::Eof => {}
            Msg::Data(b'E', p) => return Err(channel_error(&p)),
            Msg::Data(t, _) => {
                return Err(RuntimeError::Invalid(format!(
                    "unexpected message {t} from init"
                )));
            }
        }
        let state = state_json(&record, Status::Running);
        hooks::run(
            "poststart",
            record.hooks.as_ref().and_then(|h| h.poststart().as_ref()),
            &state,
        )
    })();
    if let Err(e) = started {
        let _ = sp::kill(pid, libc::SIGKILL);
        let _ = sp::waitpid(pid);
        crate::ops::cleanup(dir, &record);
        return Err(e);
    }
    let Some(sfd) = sfd else { return Ok(0) };
    drop(dir);
    let exit = match tty {
        Some(sock) => {
            let mut name = [0u8; 64];
            let (_, master) = crate::sys::term::recv_fd(sock.as_fd(), &mut name)
                .ctx(|| "receive the pty master".to_owned())?;
            let master =
                master.ok_or_else(|| RuntimeError::Invalid("the init sent no pty".into()))?;
            crate::tty_proxy::proxy(pid, sfd.as_fd(), master)?
        }
        None => wait_forwarding(pid, sfd.as_fd())?,
    };
    // the record is re-locked for deletion
    let dir = StateDir::open(&opts.root, &opts.id)?;
    crate::ops::cleanup(dir, &record);
    Ok(exit.status())
}

fn channel_error(p: &[u8]) -> RuntimeError {
    Channel::decode_error(p)
}

const FORWARDED: [i32; 9] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGCHLD,
];

pub(crate) fn forwarding_signalfd() -> Result<OwnedFd, RuntimeError> {
    sp::signalfd(&FORWARDED).ctx(|| "set up signal forwarding".to_owned())
}

/// Waits for `pid`, reaping other children and forwarding signals to it.
pub(crate) fn wait_forwarding(
    pid: i32,
    sfd: std::os::fd::BorrowedFd<'_>,
) -> Result<sp::Exit, RuntimeError> {
    loop {
        loop {
            match sp::try_wait_any() {
                Ok(Some((p, exit))) if p == pid => return Ok(exit),
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                    // not our child (no subreaper): poll until it is gone
                    wait_gone(pid);
                    return Ok(sp::Exit::Code(0));
                }
                Err(e) => return Err(RuntimeError::io("wait for the container", e)),
            }
        }
        let sig = sp::read_signal(sfd).ctx(|| "read signals".to_owned())?;
        if sig != libc::SIGCHLD {
            let _ = sp::kill(pid, sig);
        }
    }
}

/// The state JSON given to hooks and printed by `state`.
pub fn state_json(rec: &Record, status: Status) -> Vec<u8> {
    let v = serde_json::json!({
        "ociVersion": "1.2.0",
        "id": rec.id,
        "status": status.as_str(),
        "pid": if status == Status::Stopped { 0 } else { rec.pid },
        "bundle": rec.bundle,
        "rootfs": rec.rootfs,
        "created": rec.created,
        "owner": "",
        "annotations": rec.annotations,
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

fn write_id_map(
    pid: i32,
    file: &str,
    maps: Option<&Vec<LinuxIdMapping>>,
) -> Result<(), RuntimeError> {
    let Some(maps) = maps else { return Ok(()) };
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    let path = format!("/proc/{pid}/{file}");
    std::fs::write(&path, text).map_err(|e| {
        RuntimeError::Invalid(format!(
            "linux.{}: write {path}: {e}",
            if file == "uid_map" {
                "uidMappings"
            } else {
                "gidMappings"
            }
        ))
    })
}

/// `proxy_tty`: a terminal without a console socket is proxied by the
/// caller (`run` in the foreground) instead of refused.
fn spawn(opts: &CreateOptions, use_fifo: bool, proxy_tty: bool) -> Result<Created, RuntimeError> {
    ContainerId::new(opts.id.as_str()).map_err(|e| RuntimeError::Invalid(e.to_string()))?;
    let Bundle {
        dir: bundle,
        rootfs,
        spec,
    } = config::load_bundle(&opts.bundle)?;
    let seccomp = seccomp_glue::compile(&spec)?;
    if opts.release_parsing_pages {
        let n = crate::sys::mem::release_clean_file_pages();
        tracing::debug!(mappings = n, "released clean code pages after parsing");
    }
    let linux = spec.linux().as_ref();
    let plan = NamespacePlan::new(linux.and_then(|l| l.namespaces().as_deref()).unwrap_or(&[]))?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::Invalid("process: missing".into()))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !proxy_tty {
        return Err(RuntimeError::Invalid(
            "process.terminal is true but --console-socket was not given".into(),
        ));
    }
    let mut tty = None;
    let console = match &opts.console_socket {
        Some(p) if terminal => {
            Some(OwnedFd::from(UnixStream::connect(p).ctx(|| {
                format!("connect to console socket {}", p.display())
            })?))
        }
        None if terminal => {
            let (ours, theirs) = UnixStream::pair().ctx(|| "create the pty socket".to_owned())?;
            tty = Some(OwnedFd::from(ours));
            Some(OwnedFd::from(theirs))
        }
        _ => None,
    };

    let mut undo = Undo {
        dir: Some(StateDir::create(&opts.root, &opts.id)?),
        cgroup: None,
        pid: None,
    };
    let dir_path = undo
        .dir
        .as_ref()
        .map(|d| d.path().to_owned())
        .unwrap_or_default();
    let fifo = if use_fifo {
        let p = dir_path.join(EXEC_FIFO);
        sfs::mkfifo(&p, 0o622).ctx(|| format!("create {}", p.display()))?;
        Some(sfs::open(&p, libc::O_PATH).ctx(|| format!("open {}", p.display()))?)
    } else {
        None
    };
    let cgroups_path = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = Cgroup::create(cgroups_path.as_deref(), &opts.id)?;
    undo.cgroup = Some(cgroup.clone());
    if let Some(res) = linux.and_then(|l| l.resources().as_ref()) {
        cgroup.apply(res)?;
    }
    let (chan, init_chan) = Channel::pair().ctx(|| "create the init channel".to_owned())?;
    let ctx = InitContext {
        spec: &spec,
        process,
        bundle: &bundle,
        rootfs: &rootfs,
        chan: &init_chan,
        start: match fifo {
            Some(fd) => StartSignal::Fifo(fd),
            None => StartSignal::Channel,
        },
        console,
        no_pivot: opts.no_pivot,
        new_userns: plan.new_user,
        new_cgroupns: plan.new_cgroup,
        preserve_fds: opts.preserve_fds,
        seccomp: seccomp.as_ref(),
        lock_fd: undo.dir.as_ref().map_or(-1, StateDir::lock_fd),
    };
    let pid = fork_init(
        &plan,
        ctx,
        &chan,
        (!opts.no_new_keyring).then_some(opts.id.as_str()),
    )?;
    drop(init_chan);
    undo.pid = Some(pid);
    cgroup.add_process(pid)?;
    if plan.new_user {
        write_id_map(
            pid,
            "uid_map",
            linux.and_then(|l| l.uid_mappings().as_ref()),
        )?;
        write_id_map(
            pid,
            "gid_map",
            linux.and_then(|l| l.gid_mappings().as_ref()),
        )?;
    }
    let start_time = state::proc_stat(pid).map(|s| s.0).unwrap_or(0);
    let mut record = Record {
        id: opts.id.clone(),
        pid,
        start_time,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: state::now_rfc3339(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        cgroup: Some(cgroup),
        hooks: spec.hooks().clone(),
        paused: false,
        own_pid_ns: plan.pid_ns,
    };
    chan.send(b'G', b"").ctx(|| "signal the init".to_owned())?;
    loop {
        match chan.recv().ctx(|| "wait for the init".to_owned())? {
            Msg::Data(b'H', _) => {
                let state = state_json(&record, Status::Creating);
                let h = spec.hooks().as_ref();
                #[allow(deprecated)]
                hooks::run("prestart", h.and_then(|h| h.prestart().as_ref()), &state)?;
                hooks::run(
                    "createRuntime",
                    h.and_then(|h| h.create_runtime().as_ref()),
                    &state,
                )?;
                chan.send(b'C', &state)
                    .ctx(|| "signal the init".to_owned())?;
            }
            Msg::Data(b'R', _) => break,
            Msg::Data(b'E', p) => return Err(channel_error(&p)),
            Msg::Data(t, _) => {
                return Err(RuntimeError::Invalid(format!(
                    "unexpected message {t} from init"
                )));
            }
            Msg::Eof => {
                return Err(RuntimeError::Init {
                    message: "the init exited during setup".into(),
                    kind: kontti_core::ErrorKind::Internal,
                });
            }
        }
    }
    record.start_time = state::proc_stat(pid).map(|s| s.0).unwrap_or(start_time);
    let dir = undo
        .dir
        .as_ref()
        .ok_or_else(|| RuntimeError::Invalid("state dir".into()))?;
    dir.save(&record)?;
    if let Some(p) = &opts.pid_file {
        write_pid_file(p, pid)?;
    }
    let dir = undo.disarm();
    Ok(Created {
        record,
        dir,
        chan,
        tty,
    })
}

/// Writes a pid file atomically.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), RuntimeError> {
    let tmp = path.with_extension("kontti-tmp");
    std::fs::write(&tmp, pid.to_string()).ctx(|| format!("write pid file {}", tmp.display()))?;
    std::fs::rename(&tmp, path).ctx(|| format!("write pid file {}", path.display()))
}

/// Forks the init (directly, or through an intermediate that joins
/// namespaces by path) and returns its host pid.
fn fork_init(
    plan: &NamespacePlan,
    ctx: InitContext<'_>,
    chan: &Channel,
    keyring: Option<&str>,
) -> Result<i32, RuntimeError> {
    // non-dumpable before forking: the init inherits it from its first
    // instruction, so a process in a joined pid namespace never sees a
    // dumpable runtime in /proc
    sp::prctl(libc::PR_SET_DUMPABLE, 0, 0).ctx(|| "set non-dumpable".to_owned())?;
    if plan.join.is_empty() {
        match sp::clone(plan.clone_flags as u64).ctx(|| "clone the container init".to_owned())? {
            sp::Forked::Parent(pid) => return Ok(pid),
            sp::Forked::Child => {
                let _ = sp::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as u64, 0);
                join_keyring(keyring);
                init::container_init(ctx)
            }
        }
    }
    match sp::clone(0).ctx(|| "fork".to_owned())? {
        sp::Forked::Parent(mid) => {
            let r = chan.recv();
            let _ = sp::waitpid(mid);
            match r.ctx(|| "wait for the intermediate process".to_owned())? {
                Msg::Data(b'P', p) => {
                    let b: [u8; 4] = p
                        .as_slice()
                        .try_into()
                        .map_err(|_| RuntimeError::Invalid("bad pid message".into()))?;
                    Ok(i32::from_le_bytes(b))
                }
                Msg::Data(b'E', p) => Err(channel_error(&p)),
                _ => Err(RuntimeError::Invalid(
                    "the intermediate process exited early".into(),
                )),
            }
        }
        sp::Forked::Child => {
            for (flag, fd, path) in &plan.join {
                if let Err(e) = sp::setns(fd.as_fd(), *flag) {
                    ctx.chan.send_error(&RuntimeError::Invalid(format!(
                        "linux.namespaces: join {}: {e}",
                        path.display()
                    )));
                    sp::exit_now(1);
                }
            }
            match sp::clone(plan.clone_flags as u64) {
                Ok(sp::Forked::Child) => {
                    join_keyring(keyring);
                    init::container_init(ctx)
                }
                Ok(sp::Forked::Parent(pid)) => {
                    let _ = ctx.chan.send(b'P', &pid.to_le_bytes());
                    sp::exit_now(0)
                }
                Err(e) => {
                    ctx.chan
                        .send_error(&RuntimeError::io("clone the container init", e));
                    sp::exit_now(1)
                }
            }
        }
    }
}

fn join_keyring(name: Option<&str>) {
    if let Some(Err(e)) = name.map(crate::sys::process::join_session_keyring) {
        tracing::debug!("no session keyring for the container: {e}");
    }
}

/// The config of a bundle, for `exec` defaults.
pub(crate) fn bundle_spec(bundle: &Path) -> Result<Spec, RuntimeError> {
    Ok(config::load_bundle(bundle)?.spec)
}
