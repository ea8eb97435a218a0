//! A container's life: create, start (through its own `kontti-supervisor`),
//! stop, kill, remove, the exit command's cleanup and the restart policy.
//!
//! Every change of a record happens under the container's lock. The
//! supervisor writes `exit.json` when the container exits and runs the exit
//! command (`kontti container cleanup ID`), which calls [`Engine::cleanup`]:
//! it records the exit, tears down the mounts, network and pinned namespace,
//! and restarts by the restart policy with docker's back-off, or removes a
//! `--rm` container. Whoever takes the lock first after an exit (the exit
//! command, `stop`, `rm`) consumes `exit.json`, so the work is done once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kontti_image::snapshot::{self, Snapshotter};
use kontti_image::{ContentStore, ImageConfig};
use kontti_supervisor::exit::ExitRecord;
use kontti_supervisor::spawn::SupervisorCommand;
use serde_json::json;

use crate::container::{self, ContainerRecord, ContainerState, Containers, Status};
use crate::error::{EngineError, Result};
use crate::network::{self, AttachRequest, NetworkMode};
use crate::options::RunOptions;
use crate::spec::{self, NetnsChoice, SpecInput};
use crate::volume::Volumes;

/// The supervisor's exit record in a container's directory.
pub const EXIT_FILE: &str = "exit.json";
/// The CRI log in a container's directory.
pub const LOG_FILE: &str = "container.log";
/// The attach socket in a container's directory.
pub const ATTACH_SOCKET: &str = "attach.sock";

/// How long `stop` waits by default before SIGKILL.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// What `create` needs.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// `--name` (generated when `None`).
    pub name: Option<String>,
    /// The image (name, id or digest) in the local store.
    pub image: String,
    /// The options.
    pub options: RunOptions,
}

/// The containers of one state root.
#[derive(Debug, Clone)]
pub struct Engine {
    pub(crate) root: PathBuf,
    containers: Containers,
    pub(crate) exit_command: Option<(PathBuf, Vec<String>)>,
    supervisor: Option<PathBuf>,
}

impl Engine {
    /// Opens the state root `root` (creating `containers/`).
    pub fn open(root: &Path) -> Result<Engine> {
        Ok(Engine {
            root: root.to_owned(),
            containers: Containers::open(root)?,
            exit_command: None,
            supervisor: None,
        })
    }

    /// The command a supervisor runs after its container exited; the
    /// container id is appended. The CLI passes itself:
    /// `kontti --root R container cleanup`.
    pub fn with_exit_command(mut self, program: PathBuf, args: Vec<String>) -> Engine {
        self.exit_command = Some((program, args));
        self
    }

    /// Uses this supervisor binary instead of the located one.
    pub fn with_supervisor(mut self, binary: PathBuf) -> Engine {
        self.supervisor = Some(binary);
        self
    }

    /// The state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The records.
    pub fn containers(&self) -> &Containers {
        &self.containers
    }

    /// `R/runtime`: the runtime's state root.
    pub fn runtime_root(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// `R/netns/<id>`: where a container's network namespace is pinned.
    pub fn netns_path(&self, id: &str) -> PathBuf {
        self.root.join("netns").join(id)
    }

    pub(crate) fn dir(&self, id: &str) -> PathBuf {
        self.containers.dir_of(id)
    }

    pub(crate) fn rootfs(&self, id: &str) -> PathBuf {
        self.dir(id).join("bundle").join("rootfs")
    }

    pub(crate) fn snapshotter(&self) -> Result<Box<dyn Snapshotter>> {
        Ok(snapshot::open_default(&self.root)?)
    }

    /// Creates a container: its record, root filesystem snapshot, volumes
    /// and OCI bundle. Nothing is left behind on failure.
    pub fn create(&self, req: &CreateRequest) -> Result<ContainerRecord> {
        self.create_with(req, false)
    }

    /// [`Engine::create`] for a start that follows at once (`run`): the
    /// root filesystem, mounted to generate the spec, stays mounted (the
    /// record says so) instead of being unmounted and mounted again; an
    /// unmount of an overlay syncs its upper file system and costs tens of
    /// milliseconds. `rm` and a failed start unmount it as usual.
    pub fn create_for_start(&self, req: &CreateRequest) -> Result<ContainerRecord> {
        self.create_with(req, true)
    }

    fn create_with(&self, req: &CreateRequest, keep_mounted: bool) -> Result<ContainerRecord> {
        if let Some(n) = &req.name
            && !container::valid_name(n)
        {
            return Err(EngineError::BadName(n.clone()));
        }
        let mode: NetworkMode = req.options.network.as_deref().unwrap_or("bridge").parse()?;
        let mode = network::resolve_mode(&self.root, mode)?;
        let store = ContentStore::open(kontti_image::content_dir(&self.root))
            .map_err(kontti_image::ImageError::from)?;
        let found = kontti_image::local::find(&store, &req.image)?;
        let image_config = found.image.config.config.clone().unwrap_or_default();
        // fail early on a command that cannot be made or a bad -p
        spec::process_args(&image_config, &req.options)?;
        parse_ports(&req.options.publish)?;
        let id = container::new_id()?;
        let _span = tracing::info_span!("create", container = %&id[..12]).entered();
        let _names = self.containers.lock_names()?;
        let name = match &req.name {
            Some(n) => n.clone(),
            None => self.free_generated_name(&id)?,
        };
        if let Some(other) = self.containers.by_name(&name)? {
            return Err(EngineError::NameInUse {
                name,
                id: other[..12].to_owned(),
            });
        }
        let netns = match &mode {
            NetworkMode::Host => NetnsChoice::Host,
            NetworkMode::Container(other) => {
                let other_id = self.containers.resolve(other)?;
                NetnsChoice::Join(self.netns_path(&other_id))
            }
            _ => NetnsChoice::Join(self.netns_path(&id)),
        };
        let dir = self.dir(&id);
        std::fs::create_dir_all(dir.join("bundle").join("rootfs"))
            .map_err(|e| EngineError::io("create", &dir, e))?;
        let sn = self.snapshotter()?;
        let key = format!("container-{id}");
        let mut undo = CreateUndo {
            engine: self,
            id: &id,
            snapshot: None,
            sn: sn.as_ref(),
            mounted: 0,
            volumes: Vec::new(),
            armed: true,
        };
        // Leases the image's layers until the container's snapshot sits on
        // them, so a concurrent prune cannot take them in between.
        let mounts = kontti_image::rootfs::prepare_rootfs(&store, &found.image, sn.as_ref(), &key)?;
        undo.snapshot = Some(key.clone());
        let rootfs = self.rootfs(&id);
        snapshot::mount::mount_all(&mounts, &rootfs)
            .map_err(|e| EngineError::io("mount the root filesystem at", &rootfs, e))?;
        undo.mounted = mounts.len();

        let (extra_mounts, volumes, anonymous) =
            self.volume_mounts(&id, &image_config, &req.options, &mut undo.volumes)?;
        let hostname = req
            .options
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_owned());
        let write = |file: &str, text: &str| {
            let p = dir.join(file);
            std::fs::write(&p, text).map_err(|e| EngineError::io("write", &p, e))
        };
        write("hostname", &format!("{hostname}\n"))?;
        if mode != NetworkMode::Host {
            write("hosts", &network::hosts_file(None, &hostname, &name))?;
            write("resolv.conf", "")?;
        }
        let generated = spec::generate(&SpecInput {
            id: &id,
            image: &image_config,
            options: &req.options,
            rootfs: &rootfs,
            container_dir: &dir,
            netns,
            extra_mounts,
            init_binary: spec::find_init_binary(),
        })?;
        let config = dir.join("bundle").join("config.json");
        let bytes =
            serde_json::to_vec_pretty(&generated.spec).map_err(|e| EngineError::Corrupt {
                path: config.clone(),
                reason: e.to_string(),
            })?;
        std::fs::write(&config, bytes).map_err(|e| EngineError::io("write", &config, e))?;
        if !keep_mounted {
            snapshot::mount::unmount_all(&rootfs, mounts.len())
                .map_err(|e| EngineError::io("unmount", &rootfs, e))?;
            undo.mounted = 0;
        }

        let mut options = req.options.clone();
        if let NetworkMode::Network(name) = &mode {
            options.network = Some(name.clone()); // resolved from an id or prefix
        }
        options.health = crate::health::effective(
            req.options.health.as_ref(),
            req.options.no_healthcheck,
            image_config.healthcheck.as_ref(),
        );
        let rec = ContainerRecord {
            id: id.clone(),
            name,
            image: req.image.clone(),
            image_id: found.image.id().to_string(),
            created: kontti_runtime::state::now_rfc3339(),
            options,
            args: generated.args,
            stop_signal: generated.stop_signal,
            snapshot: key,
            rootfs_mounts: mounts.len(),
            volumes,
            anonymous_volumes: anonymous,
            state: ContainerState {
                rootfs_mounted: keep_mounted,
                ..ContainerState::default()
            },
            restart_count: 0,
        };
        let _lock = self.containers.lock(&id)?;
        self.containers.save(&rec)?;
        undo.disarm();
        crate::events::record(&self.root, &rec, "create", &[]);
        tracing::info!(name = %rec.name, image = %rec.image, "created");
        Ok(rec)
    }

    /// A generated name no container has (the caller holds the names lock).
    fn free_generated_name(&self, id: &str) -> Result<String> {
        let taken: std::collections::HashSet<String> = self
            .containers
            .list()?
            .into_iter()
            .map(|r| r.name)
            .collect();
        for attempt in 0..5 {
            let n = container::generate_name(&id[attempt * 12..]);
            if !taken.contains(&n) {
                return Ok(n);
            }
        }
        Ok(format!("{}_{}", container::generate_name(id), &id[..6]))
    }

    /// Named and anonymous volumes (`-v NAME:/dst`, `-v /dst`, the image's
    /// VOLUMEs) as bind mounts of their data directories.
    fn volume_mounts(
        &self,
        id: &str,
        image: &ImageConfig,
        options: &RunOptions,
        taken: &mut Vec<(String, bool)>,
    ) -> Result<(Vec<serde_json::Value>, Vec<String>, Vec<String>)> {
        let vols = Volumes::open(&self.root);
        let mut mounts = Vec::new();
        let mut anonymous = Vec::new();
        let mut wanted: Vec<(Option<String>, String, bool)> = options
            .volumes
            .iter()
            .filter(|v| !v.is_bind())
            .map(|v| (v.source.clone(), v.destination.clone(), v.readonly))
            .collect();
        let covered = |d: &str| {
            options
                .volumes
                .iter()
                .any(|v| v.destination.trim_end_matches('/') == d.trim_end_matches('/'))
                || options.tmpfs.iter().any(|t| t.destination == d)
        };
        for dest in image.volumes.iter().flat_map(|v| v.keys()) {
            if !covered(dest) {
                wanted.push((None, dest.clone(), false));
            }
        }
        for (source, dest, ro) in wanted {
            let v = vols.create_for(source.as_deref(), Default::default(), id)?;
            taken.push((v.name.clone(), source.is_none()));
            // an empty volume over image content starts with a copy of it
            crate::cp::copy_up(&self.rootfs(id), &dest, &v.mountpoint)
                .map_err(|e| EngineError::io("copy image content into volume", &v.mountpoint, e))?;
            if source.is_none() {
                anonymous.push(v.name.clone());
            }
            let mut opts = vec!["rbind", "rprivate"];
            if ro {
                opts.push("ro");
            }
            mounts.push(json!({"destination": dest, "type": "bind", "source": v.mountpoint, "options": opts}));
        }
        Ok((
            mounts,
            taken.iter().map(|(n, _)| n.clone()).collect(),
            anonymous,
        ))
    }

    /// The record with its status brought up to date: a live record whose
    /// supervisor wrote `exit.json` (or died) shows as exited. Read-only.
    pub fn inspect(&self, what: &str) -> Result<ContainerRecord> {
        let id = self.containers.resolve(what)?;
        let rec = self.containers.load(&id)?;
        Ok(self.view(rec))
    }

    /// Every container, as [`Engine::inspect`] shows it.
    pub fn list(&self) -> Result<Vec<ContainerRecord>> {
        Ok(self
            .containers
            .list()?
            .into_iter()
            .map(|r| self.view(r))
            .collect())
    }

    pub(crate) fn view(&self, mut rec: ContainerRecord) -> ContainerRecord {
        if !rec.state.status.is_live() {
            return rec;
        }
        if let Ok(exit) = ExitRecord::read(&self.dir(&rec.id).join(EXIT_FILE)) {
            apply_exit(&mut rec.state, &exit);
        } else if !supervisor_alive(rec.state.supervisor_pid) {
            // the exit command may have recorded the exit since we read
            if let Ok(now) = self.containers.load(&rec.id)
                && now != rec
            {
                return self.view(now);
            }
            rec.state.error = Some(SUPERVISOR_GONE.into());
            if !self.orphan_alive(&rec.id) {
                rec.state.status = Status::Exited;
                rec.state.exit_code = EXIT_UNKNOWN;
                rec.state.pid = 0;
            }
        }
        rec
    }

    /// Whether the container's processes outlived its supervisor (which
    /// was killed): they run on, orphaned, until a command reaps them.
    fn orphan_alive(&self, id: &str) -> bool {
        use kontti_runtime::state::Status as Rt;
        matches!(
            kontti_runtime::ops::state(&self.runtime_root(), id).map(|i| i.status),
            Ok(Rt::Running | Rt::Paused | Rt::Created)
        )
    }

    /// Starts a created or exited container. With `wait_attach`, its process
    /// starts when the first attach client connects to `attach.sock`.
    pub fn start(&self, what: &str, wait_attach: bool) -> Result<ContainerRecord> {
        let id = self.containers.resolve(what)?;
        let _lock = self.containers.lock(&id)?;
        let mut rec = self.containers.load(&id)?;
        self.reap_locked(&mut rec)?;
        match rec.state.status {
            Status::Created | Status::Exited | Status::Restarting => {}
            s => {
                return Err(EngineError::WrongState {
                    id: rec.name.clone(),
                    status: s.to_string(),
                    reason: "it is already started",
                });
            }
        }
        rec.restart_count = 0;
        self.start_locked(&mut rec, wait_attach)?;
        Ok(rec)
    }

    /// Mounts, networks and runs the supervisor; the caller holds the lock.
    pub(crate) fn start_locked(&self, rec: &mut ContainerRecord, wait_attach: bool) -> Result<()> {
        let id = rec.id.clone();
        let _span = tracing::info_span!("start", container = %&id[..12]).entered();
        let dir = self.dir(&id);
        let _ = std::fs::remove_file(dir.join(EXIT_FILE));
        let result = self.bring_up(rec, wait_attach);
        match result {
            Ok(pid) => {
                rec.state.status = Status::Running;
                rec.state.pid = pid;
                rec.state.supervisor_pid = std::fs::read_to_string(dir.join("supervisor.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                rec.state.started_at = Some(kontti_runtime::state::now_rfc3339());
                rec.state.error = None;
                rec.state.stopped_by_user = false;
                rec.state.oom_killed = false;
                self.containers.save(rec)?;
                crate::events::record(&self.root, rec, "start", &[]);
                tracing::info!(pid, "started");
                Ok(())
            }
            Err(e) => {
                self.tear_down(rec);
                rec.state.status = if rec.state.started_at.is_some() {
                    Status::Exited
                } else {
                    Status::Created
                };
                rec.state.error = Some(e.to_string());
                rec.state.exit_code = e.run_exit_code();
                self.containers.save(rec)?;
                Err(e)
            }
        }
    }

    fn bring_up(&self, rec: &mut ContainerRecord, wait_attach: bool) -> Result<i32> {
        let id = rec.id.clone();
        let dir = self.dir(&id);
        let rootfs = self.rootfs(&id);
        // left mounted by create_for_start (and not lost to a reboot since)
        if !(rec.state.rootfs_mounted && is_mount_point(&rootfs)) {
            let sn = self.snapshotter()?;
            let mounts = sn.mounts(&rec.snapshot)?;
            rec.state.rootfs_mounted = true;
            self.containers.save(rec)?;
            snapshot::mount::mount_all(&mounts, &rootfs)
                .map_err(|e| EngineError::io("mount the root filesystem at", &rootfs, e))?;
            rec.rootfs_mounts = mounts.len();
        }

        let mode: NetworkMode = rec.options.network.as_deref().unwrap_or("bridge").parse()?;
        if !matches!(mode, NetworkMode::Host | NetworkMode::Container(_)) {
            let ns = self.netns_path(&id);
            if let Some(parent) = ns.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| EngineError::io("create", parent, e))?;
            }
            kontti_supervisor::netns::pin(&ns)?;
        }
        let hostname = rec
            .options
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_owned());
        let ports = parse_ports(&rec.options.publish)?;
        let setup = network::attach(
            &self.root,
            &AttachRequest {
                container_id: id.clone(),
                name: rec.name.clone(),
                hostname,
                aliases: Vec::new(),
                mode: mode.clone(),
                ports,
                netns: self.netns_path(&id),
            },
        )?;
        if mode != NetworkMode::Host {
            for (file, text) in [("hosts", &setup.hosts), ("resolv.conf", &setup.resolv_conf)] {
                let p = dir.join(file);
                std::fs::write(&p, text).map_err(|e| EngineError::io("write", &p, e))?;
            }
        }

        let state_dir = self.short_dir(&id)?;
        let mut cmd = SupervisorCommand::new(
            &id,
            &dir.join("bundle"),
            &self.runtime_root(),
            &state_dir,
            &dir.join(LOG_FILE),
        );
        if let Some(b) = &self.supervisor {
            cmd.binary = b.clone();
        }
        cmd.tty = rec.options.tty;
        cmd.stdin = rec.options.stdin;
        cmd.wait_attach = wait_attach;
        cmd.log_max_size = rec.options.log_max_size;
        cmd.log_max_files = rec.options.log_max_files;
        if let Some((prog, args)) = &self.exit_command {
            cmd.exit_command = Some(prog.clone());
            cmd.exit_command_args = args.iter().cloned().chain([id.clone()]).collect();
        }
        if let Some((program, args, interval_ms)) = self.health_timer(rec) {
            cmd.health_command = Some((program, args));
            cmd.health_interval_ms = interval_ms;
        }
        let ready = cmd.spawn().map_err(classify_spawn_error)?;
        Ok(ready.pid)
    }

    /// Undoes [`Engine::bring_up`] as far as it got: network, pinned
    /// namespace, root filesystem. Failures are logged.
    pub(crate) fn tear_down(&self, rec: &mut ContainerRecord) {
        let id = rec.id.clone();
        if let Err(e) = network::detach(&self.root, &id) {
            tracing::warn!(container = %&id[..12], error = %e, "network detach");
        }
        if let Err(e) = kontti_supervisor::netns::unpin(&self.netns_path(&id)) {
            tracing::warn!(container = %&id[..12], error = %e, "netns unpin");
        }
        if rec.state.rootfs_mounted {
            let rootfs = self.rootfs(&id);
            if let Err(e) = snapshot::mount::unmount_all(&rootfs, rec.rootfs_mounts.max(1)) {
                tracing::warn!(container = %&id[..12], error = %e, "unmount rootfs");
            }
            rec.state.rootfs_mounted = false;
        }
    }

    /// Consumes `exit.json` (or notices a dead supervisor) and tears down.
    /// Returns whether an exit was recorded now.
    pub(crate) fn reap_locked(&self, rec: &mut ContainerRecord) -> Result<bool> {
        if !rec.state.status.is_live() {
            // a created container's rootfs may be mounted for its start
            if rec.state.rootfs_mounted && rec.state.status != Status::Created {
                self.tear_down(rec);
                self.containers.save(rec)?;
            }
            return Ok(false);
        }
        let path = self.dir(&rec.id).join(EXIT_FILE);
        match ExitRecord::read(&path) {
            Ok(exit) => {
                apply_exit(&mut rec.state, &exit);
                if exit.oom_killed {
                    crate::events::record(&self.root, rec, "oom", &[]);
                }
                crate::events::record(
                    &self.root,
                    rec,
                    "die",
                    &[("exitCode", exit.exit_code.to_string())],
                );
                // recorded first, then consumed: a reader sees one or the other
                self.containers.save(rec)?;
                let _ = std::fs::remove_file(&path);
            }
            Err(_) if !supervisor_alive(rec.state.supervisor_pid) => {
                // without its supervisor nothing holds the container's
                // pipes or can report its exit: an orphan is killed, and
                // its runtime state goes
                let orphan = self.orphan_alive(&rec.id);
                rec.state.status = Status::Exited;
                rec.state.exit_code = if orphan { 128 + 9 } else { EXIT_UNKNOWN };
                rec.state.error = Some(if orphan {
                    format!("{SUPERVISOR_GONE}; its processes were killed")
                } else {
                    SUPERVISOR_GONE.into()
                });
                rec.state.pid = 0;
                rec.state.finished_at = Some(kontti_runtime::state::now_rfc3339());
                let _ = kontti_runtime::ops::delete(&self.runtime_root(), &rec.id, true);
            }
            Err(_) => return Ok(false),
        }
        self.tear_down(rec);
        self.containers.save(rec)?;
        Ok(true)
    }

    /// The exit command: records the exit, tears down, and restarts by the
    /// policy (after docker's back-off) or removes a `--rm` container.
    pub fn cleanup(&self, id: &str) -> Result<()> {
        let _span = tracing::info_span!("cleanup", container = %&id[..12.min(id.len())]).entered();
        let (restart, delay) = {
            // removed meanwhile (rm -f, run --rm): nothing left to do
            let _lock = match self.containers.lock(id) {
                Ok(l) => l,
                Err(EngineError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let mut rec = match self.containers.load(id) {
                Ok(r) => r,
                Err(EngineError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            if !self.reap_locked(&mut rec)? {
                return Ok(());
            }
            let restart = should_restart(&rec);
            if restart {
                rec.state.status = Status::Restarting;
                self.containers.save(&rec)?;
            }
            (restart, backoff(&rec))
        };
        if !restart {
            let rec = self.containers.load(id)?;
            if rec.options.auto_remove {
                self.remove(id, true, true)?;
            }
            return Ok(());
        }
        std::thread::sleep(delay);
        let _lock = match self.containers.lock(id) {
            Ok(l) => l,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut rec = match self.containers.load(id) {
            Ok(r) => r,
            Err(EngineError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if rec.state.status != Status::Restarting {
            return Ok(()); // stopped or removed during the back-off
        }
        rec.restart_count += 1;
        tracing::info!(count = rec.restart_count, "restarting");
        self.start_locked(&mut rec, false)
    }

    /// The attach socket of a container (through its short link, see
    /// [`Engine::short_dir`]).
    pub fn attach_socket(&self, id: &str) -> PathBuf {
        self.find_short_dir(id)
            .unwrap_or_else(|| self.dir(id))
            .join(ATTACH_SOCKET)
    }

    /// `R/run/<short id>`, a symlink to the container's directory: unix
    /// socket paths must fit in 107 bytes, and `R/containers/<64 hex>/
    /// attach.sock` does not under a long state root.
    fn short_dir(&self, id: &str) -> Result<PathBuf> {
        if let Some(p) = self.find_short_dir(id) {
            return Ok(p);
        }
        let run = self.root.join("run");
        std::fs::create_dir_all(&run).map_err(|e| EngineError::io("create", &run, e))?;
        for len in (12..=64).step_by(4) {
            let link = run.join(&id[..len]);
            match std::os::unix::fs::symlink(self.dir(id), &link) {
                Ok(()) => return Ok(link),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(EngineError::io("link", &link, e)),
            }
        }
        Ok(self.dir(id))
    }

    pub(crate) fn short_dir_of(&self, id: &str) -> Result<PathBuf> {
        self.short_dir(id)
    }

    pub(crate) fn supervisor_binary(&self) -> Option<&Path> {
        self.supervisor.as_deref()
    }

    fn find_short_dir(&self, id: &str) -> Option<PathBuf> {
        let target = self.dir(id);
        (12..=64)
            .step_by(4)
            .map(|len| self.root.join("run").join(&id[..len]))
            .find(|l| std::fs::read_link(l).is_ok_and(|t| t == target))
    }

    pub(crate) fn remove_short_dir(&self, id: &str) {
        if let Some(l) = self.find_short_dir(id)
            && let Err(e) = std::fs::remove_file(&l)
        {
            tracing::warn!(error = %e, "remove {}", l.display());
        }
    }

    /// The CRI log of a container.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(LOG_FILE)
    }
}

/// `-p` values.
pub fn parse_ports(publish: &[String]) -> Result<Vec<kontti_net::PortMapping>> {
    publish
        .iter()
        .map(|p| {
            p.parse::<kontti_net::PortMapping>()
                .map_err(|e| EngineError::invalid("--publish", p, e.to_string()))
        })
        .collect()
}

fn apply_exit(state: &mut ContainerState, exit: &ExitRecord) {
    state.status = Status::Exited;
    state.exit_code = exit.exit_code;
    state.oom_killed = exit.oom_killed;
    state.pid = 0;
    state.supervisor_pid = 0;
    state.finished_at = Some(if exit.finished_at.is_empty() {
        kontti_runtime::state::now_rfc3339()
    } else {
        exit.finished_at.clone()
    });
    if exit.error.is_some() {
        state.error = exit.error.clone();
    }
}

/// Whether `path` is a mount point of this mount namespace.
fn is_mount_point(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = path.as_os_str().as_encoded_bytes();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|p| unescape_mountinfo(p) == want)
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = b[i + 1..i + 4]
                .iter()
                .fold(0u32, |n, c| n * 8 + u32::from(c - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Why a live container's record cannot be trusted.
const SUPERVISOR_GONE: &str = "the container's supervisor is gone";

/// The exit code recorded when the real one is lost with the supervisor
/// (docker's for a container whose exit status it never learnt).
const EXIT_UNKNOWN: i32 = 255;

fn supervisor_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match kontti_runtime::state::proc_stat(pid) {
        None | Some((_, 'Z')) | Some((_, 'X')) => false,
        Some(_) => std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.windows(17).any(|w| w == b"kontti-supervisor"))
            .unwrap_or(false),
    }
}

fn should_restart(rec: &ContainerRecord) -> bool {
    use crate::options::RestartPolicy::*;
    if rec.options.auto_remove {
        return false;
    }
    match rec.options.restart {
        No => false,
        OnFailure { max } => {
            rec.state.exit_code != 0
                && !rec.state.stopped_by_user
                && (max == 0 || rec.restart_count < max)
        }
        Always | UnlessStopped => !rec.state.stopped_by_user,
    }
}

/// docker's back-off: 100 ms, doubled per restart, at most a minute.
fn backoff(rec: &ContainerRecord) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << rec.restart_count.min(10));
    Duration::from_millis(ms.min(60_000))
}

/// docker's exit codes for a command that cannot run: 127 not found, 126
/// not executable.
fn classify_spawn_error(e: kontti_supervisor::spawn::SpawnError) -> EngineError {
    let msg = e.to_string();
    if msg.contains("executable file not found") || msg.contains("no such file or directory") {
        EngineError::CommandNotFound(msg)
    } else if msg.contains("permission denied") {
        EngineError::CommandNotExecutable(msg)
    } else {
        EngineError::Supervisor(msg)
    }
}

/// Undoes a half-made `create`.
struct CreateUndo<'a> {
    engine: &'a Engine,
    id: &'a str,
    snapshot: Option<String>,
    sn: &'a dyn Snapshotter,
    mounted: usize,
    /// (volume, anonymous) taken so far.
    volumes: Vec<(String, bool)>,
    armed: bool,
}

impl CreateUndo<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CreateUndo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let dir = self.engine.dir(self.id);
        if self.mounted > 0 {
            let _ = snapshot::mount::unmount_all(&self.engine.rootfs(self.id), self.mounted);
        }
        if let Some(k) = &self.snapshot
            && let Err(e) = self.sn.remove(k)
        {
            tracing::warn!(error = %e, "discard snapshot");
        }
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(error = %e, "remove {}", dir.display());
        }
        let vols = Volumes::open(&self.engine.root);
        for (v, anonymous) in &self.volumes {
            let _ = vols.release(v, self.id);
            if *anonymous {
                let _ = vols.remove(v, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain\04"), br"/plain\04");
        assert_eq!(unescape_mountinfo(r"/x\777"), b"/x?");
    }

    #[test]
    fn the_root_is_a_mount_point_and_a_new_directory_is_not() {
        assert!(is_mount_point(Path::new("/")));
        let tmp = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(tmp.path()));
    }
}
