//! Container commands, docker's way: `run`, `create`, `start`, `stop`,
//! `kill`, `restart`, `rm`, `wait`, `ps`, `logs`, `inspect`, `attach`, `top`,
//! `port`, `rename`, `pause`, `unpause`, `container prune` and the hidden
//! `container cleanup` that a container's supervisor runs when it exits.
//! The work happens in `kontti_engine`; this module parses and prints.
//!
//! Exit codes are docker's: 125 when kontti itself fails, 126 when the
//! container's command cannot be invoked, 127 when it does not exist, and
//! otherwise the container's own exit code (`run`, `start -a`, `wait`).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kontti_engine::options::{self as opts, RunOptions, SeccompChoice};
use kontti_engine::ps::{self, Filter};
use kontti_engine::{CreateRequest, Engine, EngineError, Status};

use super::Context;

/// Container commands at the top level, as docker has them.
#[derive(Subcommand)]
pub enum ContainerCommand {
    /// Create and start a container from an image.
    Run(Box<RunArgs>),
    /// Create a container without starting it.
    Create(Box<CreateArgs>),
    /// Start stopped containers.
    Start(StartArgs),
    /// Stop running containers: their stop signal, then SIGKILL after the timeout.
    Stop(StopArgs),
    /// Send a signal to running containers.
    Kill(KillArgs),
    /// Stop and start containers.
    Restart(StopArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Wait until containers stop; print their exit codes.
    Wait(NamesArgs),
    /// List containers.
    Ps(PsArgs),
    /// Show a container's logs.
    Logs(LogsArgs),
    /// Show details of containers as JSON.
    Inspect(NamesArgs),
    /// Attach to a running container's output (and input, with -i).
    Attach(AttachArgs),
    /// Show a container's processes.
    Top(OneArgs),
    /// Show a container's published ports.
    Port(OneArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Freeze every process of containers.
    Pause(NamesArgs),
    /// Thaw paused containers.
    Unpause(NamesArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(ContainerSub),
}

/// `kontti container ...`.
#[derive(Subcommand)]
pub enum ContainerSub {
    /// List containers.
    #[command(alias = "list")]
    Ls(PsArgs),
    /// Remove every stopped container.
    Prune(PruneArgs),
    /// Remove containers.
    Rm(RmArgs),
    /// Show details of containers as JSON.
    Inspect(NamesArgs),
    /// Record a container's exit and apply its restart policy (run by its supervisor).
    #[command(hide = true)]
    Cleanup(CleanupArgs),
}

/// The flags of `create` (and `run`).
#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Name of the container.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Mount a host path or a volume: [SOURCE:]DEST[:ro].
    #[arg(short = 'v', long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs: DEST[:OPTIONS].
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Publish a port: [IP:]HOST:CONTAINER[/udp].
    #[arg(short = 'p', long = "publish")]
    publish: Vec<String>,
    /// Working directory in the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// User (name or uid, with an optional :group).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Hostname of the container.
    #[arg(long)]
    hostname: Option<String>,
    /// Network: bridge, none, host, NAME or container:NAME.
    #[arg(long, alias = "net")]
    network: Option<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    restart: String,
    /// Memory limit (e.g. 512m).
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// CPUs (e.g. 1.5).
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pids_limit: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Add a capability.
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// no-new-privileges, seccomp=FILE or seccomp=unconfined.
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Run an init as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    init: bool,
    /// Set a label (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    label: Vec<String>,
    /// Resource limit: NAME=SOFT[:HARD].
    #[arg(long)]
    ulimit: Vec<String>,
    /// Size of /dev/shm (e.g. 64m).
    #[arg(long = "shm-size")]
    shm_size: Option<String>,
    /// Give the container a host device: HOST[:CONTAINER][:rwm].
    #[arg(long)]
    device: Vec<String>,
    /// Give the container every capability and device; no seccomp, no masked paths.
    #[arg(long)]
    privileged: bool,
    /// Log options: max-size=SIZE, max-file=N.
    #[arg(long = "log-opt")]
    log_opt: Vec<String>,
    /// Signal that stops the container.
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(long = "stop-timeout")]
    stop_timeout: Option<String>,
    /// Parent cgroup of the container's cgroup.
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Pull the image: always, missing or never.
    #[arg(long, default_value = "missing")]
    pull: String,
    /// Reach this registry (HOST[:PORT]) over plain HTTP when pulling.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure_registry: Vec<String>,
    /// The image.
    image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    create: CreateArgs,
}

/// `start`.
#[derive(Args)]
pub struct StartArgs {
    /// Attach to the output and return the exit code.
    #[arg(short = 'a', long)]
    attach: bool,
    /// Attach stdin.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `stop` and `restart`.
#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait before SIGKILL.
    #[arg(short = 't', long = "time", alias = "timeout")]
    time: Option<u64>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kill`.
#[derive(Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short = 's', long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `rm`.
#[derive(Args)]
pub struct RmArgs {
    /// Kill and remove running containers.
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove anonymous volumes too.
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Commands on several containers.
#[derive(Args)]
pub struct NamesArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Commands on one container.
#[derive(Args)]
pub struct OneArgs {
    /// The container.
    container: String,
}

/// `rename`.
#[derive(Args)]
pub struct RenameArgs {
    /// The container.
    container: String,
    /// Its new name.
    new_name: String,
}

/// `attach`.
#[derive(Args)]
pub struct AttachArgs {
    /// Do not forward stdin.
    #[arg(long = "no-stdin")]
    no_stdin: bool,
    /// The container.
    container: String,
}

/// `ps`.
#[derive(Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones).
    #[arg(short = 'a', long)]
    all: bool,
    /// Only ids.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Filter: id=, name=, status=, label=, ancestor=, exited=.
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// Go-template-like format ({{.ID}}, {{.Names}}, ...) or `json`.
    #[arg(long)]
    format: Option<String>,
    /// Do not truncate ids and commands.
    #[arg(long = "no-trunc")]
    no_trunc: bool,
}

/// `logs`.
#[derive(Args)]
pub struct LogsArgs {
    /// Follow the log while the container runs.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only the last N lines (or `all`).
    #[arg(long = "tail", short = 'n')]
    tail: Option<String>,
    /// Only lines since a time (RFC 3339, Unix seconds, or 10s/5m/2h ago).
    #[arg(long)]
    since: Option<String>,
    /// Prefix each line with its time.
    #[arg(short = 't', long)]
    timestamps: bool,
    /// The container.
    container: String,
}

/// `container prune`.
#[derive(Args)]
pub struct PruneArgs {
    /// Do not ask (kontti never asks; accepted for docker compatibility).
    #[arg(short = 'f', long)]
    force: bool,
}

/// `container cleanup`.
#[derive(Args)]
pub struct CleanupArgs {
    /// The container id.
    id: String,
}

fn engine(ctx: &Context) -> anyhow::Result<Engine> {
    let exe = std::env::current_exe().context("locating the kontti binary")?;
    let root = std::path::absolute(&ctx.root).unwrap_or_else(|_| ctx.root.clone());
    Ok(Engine::open(&root)?.with_exit_command(
        exe,
        vec![
            "--root".into(),
            root.to_string_lossy().into_owned(),
            "container".into(),
            "cleanup".into(),
        ],
    ))
}

/// Runs a container command; errors are printed here, with docker's codes.
pub fn run(ctx: &Context, cmd: ContainerCommand) -> anyhow::Result<i32> {
    match dispatch(ctx, cmd) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("kontti: {e:#}");
            Ok(exit_code(&e))
        }
    }
}

/// docker's exit code for a failed container command.
fn exit_code(e: &anyhow::Error) -> i32 {
    e.chain()
        .find_map(|c| c.downcast_ref::<EngineError>())
        .map_or(125, EngineError::run_exit_code)
}

fn dispatch(ctx: &Context, cmd: ContainerCommand) -> anyhow::Result<i32> {
    match cmd {
        ContainerCommand::Run(a) => run_container(ctx, *a),
        ContainerCommand::Create(a) => {
            let e = engine(ctx)?;
            let rec = create(ctx, &e, &a)?;
            println!("{}", rec.id);
            Ok(0)
        }
        ContainerCommand::Start(a) => start(ctx, a),
        ContainerCommand::Stop(a) => each(&a.containers, |c| {
            engine(ctx)?.stop(c, a.time.map(Duration::from_secs))?;
            Ok(())
        }),
        ContainerCommand::Restart(a) => each(&a.containers, |c| {
            engine(ctx)?.restart(c, a.time.map(Duration::from_secs))?;
            Ok(())
        }),
        ContainerCommand::Kill(a) => {
            let sig = opts::parse_signal(&a.signal)?;
            each(&a.containers, |c| Ok(engine(ctx)?.kill(c, sig)?))
        }
        ContainerCommand::Rm(a) | ContainerCommand::Container(ContainerSub::Rm(a)) => {
            each(&a.containers, |c| {
                engine(ctx)?.remove(c, a.force, a.volumes)?;
                Ok(())
            })
        }
        ContainerCommand::Wait(a) => {
            let e = engine(ctx)?;
            for c in &a.containers {
                println!("{}", e.wait(c)?);
            }
            Ok(0)
        }
        ContainerCommand::Ps(a) | ContainerCommand::Container(ContainerSub::Ls(a)) => ps(ctx, a),
        ContainerCommand::Logs(a) => logs(ctx, a),
        ContainerCommand::Inspect(a) | ContainerCommand::Container(ContainerSub::Inspect(a)) => {
            let e = engine(ctx)?;
            let mut docs = Vec::new();
            for c in &a.containers {
                docs.push(ps::inspect_json(&e.inspect(c)?, e.root()));
            }
            println!("{}", serde_json::to_string_pretty(&docs)?);
            Ok(0)
        }
        ContainerCommand::Attach(a) => {
            let e = engine(ctx)?;
            let rec = e.inspect(&a.container)?;
            if !rec.state.status.is_live() {
                return Err(EngineError::WrongState {
                    id: rec.name,
                    status: rec.state.status.to_string(),
                    reason: "you cannot attach to a stopped container, start it first",
                }
                .into());
            }
            let stdin = rec.options.stdin && !a.no_stdin;
            attach_and_pump(&e, &rec.id, rec.options.tty, stdin)
        }
        ContainerCommand::Top(a) => {
            let e = engine(ctx)?;
            println!("{:<10} CMD", "PID");
            for pid in e.top(&a.container)? {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd: Vec<String> = cmd
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect();
                println!("{pid:<10} {}", cmd.join(" "));
            }
            Ok(0)
        }
        ContainerCommand::Port(a) => {
            let e = engine(ctx)?;
            let rec = e.inspect(&a.container)?;
            for p in ps::ports_text(&rec) {
                if let Some((host, ctr)) = p.split_once("->") {
                    println!("{ctr} -> {host}");
                }
            }
            Ok(0)
        }
        ContainerCommand::Rename(a) => {
            engine(ctx)?.rename(&a.container, &a.new_name)?;
            Ok(0)
        }
        ContainerCommand::Pause(a) => each(&a.containers, |c| Ok(engine(ctx)?.pause(c)?)),
        ContainerCommand::Unpause(a) => each(&a.containers, |c| Ok(engine(ctx)?.unpause(c)?)),
        ContainerCommand::Container(ContainerSub::Prune(_)) => {
            let removed = engine(ctx)?.prune()?;
            if !removed.is_empty() {
                println!("Deleted Containers:");
                for id in &removed {
                    println!("{id}");
                }
            }
            println!("Total reclaimed containers: {}", removed.len());
            Ok(0)
        }
        ContainerCommand::Container(ContainerSub::Cleanup(a)) => {
            engine(ctx)?.cleanup(&a.id)?;
            Ok(0)
        }
    }
}

/// Runs `f` for each container, printing its name as docker does; the
/// first failure is reported after trying all.
fn each(containers: &[String], f: impl Fn(&str) -> anyhow::Result<()>) -> anyhow::Result<i32> {
    let mut failed = None;
    for c in containers {
        match f(c) {
            Ok(()) => println!("{c}"),
            Err(e) if containers.len() == 1 => return Err(e),
            Err(e) => {
                eprintln!("kontti: {e:#}");
                failed.get_or_insert(exit_code(&e));
            }
        }
    }
    Ok(failed.unwrap_or(0))
}

/// The run options from the flags; every value is checked here.
fn run_options(a: &CreateArgs) -> anyhow::Result<RunOptions> {
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for f in &a.env_file {
        let text = std::fs::read_to_string(f).map_err(|e| {
            EngineError::invalid_value("--env-file", &f.display().to_string(), e.to_string())
        })?;
        env.extend(opts::parse_env_file(&text, lookup)?);
    }
    for e in &a.env {
        env.extend(opts::parse_env(e, lookup)?);
    }
    let mut o = RunOptions {
        command: a.command.clone(),
        entrypoint: a.entrypoint.as_ref().map(|e| {
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.clone()]
            }
        }),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        tty: a.tty,
        stdin: a.interactive,
        read_only: a.read_only,
        privileged: a.privileged,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        init: a.init,
        restart: opts::RestartPolicy::parse(&a.restart)?,
        auto_remove: a.rm,
        network: a.network.clone(),
        publish: a.publish.clone(),
        stop_signal: a.stop_signal.clone(),
        cgroup_parent: a.cgroup_parent.clone(),
        ..RunOptions::default()
    };
    if let Some(s) = &o.stop_signal {
        opts::parse_signal(s)?;
    }
    o.memory = a.memory.as_deref().map(opts::parse_memory).transpose()?;
    o.nano_cpus = a.cpus.as_deref().map(opts::parse_cpus).transpose()?;
    o.pids_limit = a
        .pids_limit
        .as_deref()
        .map(|p| {
            p.parse::<i64>().map_err(|_| {
                EngineError::invalid_value("--pids-limit", p, "expected a whole number")
            })
        })
        .transpose()?;
    o.stop_timeout = a
        .stop_timeout
        .as_deref()
        .map(|p| {
            p.parse::<u32>().map_err(|_| {
                EngineError::invalid_value("--stop-timeout", p, "expected whole seconds")
            })
        })
        .transpose()?;
    o.shm_size = a
        .shm_size
        .as_deref()
        .map(|s| opts::parse_bytes("--shm-size", s))
        .transpose()?;
    let mut labels = BTreeMap::new();
    for l in &a.label {
        let (k, v) = opts::parse_label(l)?;
        labels.insert(k, v);
    }
    o.labels = labels;
    o.volumes = a
        .volume
        .iter()
        .map(|v| opts::parse_volume(v))
        .collect::<Result<_, _>>()?;
    o.tmpfs = a
        .tmpfs
        .iter()
        .map(|v| opts::parse_tmpfs(v))
        .collect::<Result<_, _>>()?;
    o.ulimits = a
        .ulimit
        .iter()
        .map(|v| opts::parse_ulimit(v))
        .collect::<Result<_, _>>()?;
    o.devices = a
        .device
        .iter()
        .map(|v| opts::parse_device(v))
        .collect::<Result<_, _>>()?;
    for s in &a.security_opt {
        match s.split_once(['=', ':']) {
            None if s == "no-new-privileges" => o.no_new_privileges = true,
            Some(("no-new-privileges", "true")) => o.no_new_privileges = true,
            Some(("no-new-privileges", "false")) => o.no_new_privileges = false,
            Some(("seccomp", "unconfined")) => o.seccomp = SeccompChoice::Unconfined,
            Some(("seccomp", file)) if !file.is_empty() => {
                o.seccomp =
                    SeccompChoice::File(std::path::absolute(file).unwrap_or_else(|_| file.into()))
            }
            _ => {
                return Err(EngineError::invalid_value(
                    "--security-opt",
                    s,
                    "use no-new-privileges, seccomp=FILE or seccomp=unconfined",
                )
                .into());
            }
        }
    }
    for l in &a.log_opt {
        match l.split_once('=') {
            Some(("max-size", v)) => {
                o.log_max_size = Some(opts::parse_bytes("--log-opt max-size", v)?)
            }
            Some(("max-file", v)) => {
                o.log_max_files = Some(v.parse().map_err(|_| {
                    EngineError::invalid_value("--log-opt", l, "max-file takes a number")
                })?)
            }
            _ => {
                return Err(EngineError::invalid_value(
                    "--log-opt",
                    l,
                    "use max-size=SIZE or max-file=N",
                )
                .into());
            }
        }
    }
    if o.auto_remove && o.restart != opts::RestartPolicy::No {
        return Err(EngineError::invalid_value(
            "--restart",
            &a.restart,
            "conflicts with --rm (a removed container cannot restart)",
        )
        .into());
    }
    if let Some(n) = &o.network {
        n.parse::<kontti_engine::network::NetworkMode>()?;
    }
    kontti_engine::lifecycle::parse_ports(&o.publish)?;
    Ok(o)
}

/// Pulls the image when `--pull` asks for it.
fn ensure_image(ctx: &Context, a: &CreateArgs) -> anyhow::Result<()> {
    let store = kontti_image::ContentStore::open(kontti_image::content_dir(&ctx.root))?;
    let present = kontti_image::local::find(&store, &a.image).is_ok();
    let pull = match a.pull.as_str() {
        "always" => true,
        "missing" => !present,
        "never" => false,
        other => {
            return Err(EngineError::invalid_value(
                "--pull",
                other,
                "use always, missing or never",
            )
            .into());
        }
    };
    if !pull {
        return Ok(());
    }
    if !present {
        eprintln!("Unable to find image '{}' locally", a.image);
    }
    pull_image(ctx, &a.image, &a.insecure_registry)
}

fn pull_image(ctx: &Context, image: &str, insecure: &[String]) -> anyhow::Result<()> {
    use kontti_registry::client::progress::{self, Verb};
    use kontti_registry::client::{
        Client, ClientOptions, CredentialStore, Platform, RegistriesConfig,
    };
    let r = kontti_core::ImageRef::parse(image)?;
    let config = std::env::var_os("KONTTI_REGISTRIES_CONFIG").map_or_else(
        || PathBuf::from("/etc/kontti/registries.json"),
        PathBuf::from,
    );
    let client = Client::new(ClientOptions {
        registries: RegistriesConfig::load(&config)?,
        insecure: insecure.to_vec(),
        credentials: CredentialStore::from_env(),
        ..ClientOptions::default()
    })?;
    let progress: Arc<dyn kontti_registry::client::Progress> = progress::for_stderr(Verb::Pull);
    let content = kontti_registry::local::content_dir(&ctx.root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let pulled = rt.block_on(kontti_registry::local::pull(
        &client,
        &content,
        &r,
        &Platform::host(),
        progress,
    ))?;
    kontti_registry::local::unpack(&ctx.root, &pulled)?;
    Ok(())
}

fn create(
    ctx: &Context,
    e: &Engine,
    a: &CreateArgs,
) -> anyhow::Result<kontti_engine::ContainerRecord> {
    let options = run_options(a)?;
    if let Some(n) = &a.name {
        if !kontti_engine::container::valid_name(n) {
            return Err(EngineError::BadName(n.clone()).into());
        }
        if let Some(other) = e.containers().by_name(n)? {
            return Err(EngineError::NameInUse {
                name: n.clone(),
                id: other[..12].to_owned(),
            }
            .into());
        }
    }
    ensure_image(ctx, a)?;
    Ok(e.create(&CreateRequest {
        name: a.name.clone(),
        image: a.image.clone(),
        options,
    })?)
}

fn run_container(ctx: &Context, a: RunArgs) -> anyhow::Result<i32> {
    let e = engine(ctx)?;
    let rec = create(ctx, &e, &a.create)?;
    if a.detach {
        e.start(&rec.id, false)?;
        println!("{}", rec.id);
        return Ok(0);
    }
    e.start(&rec.id, true)?;
    let code = attach_and_pump(&e, &rec.id, a.create.tty, a.create.interactive)?;
    if a.create.rm {
        // the exit command removes it; docker returns after the removal
        for _ in 0..200 {
            if e.containers().load(&rec.id).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    Ok(code)
}

fn start(ctx: &Context, a: StartArgs) -> anyhow::Result<i32> {
    let e = engine(ctx)?;
    if a.attach || a.interactive {
        let [c] = a.containers.as_slice() else {
            return Err(EngineError::invalid_value(
                "--attach",
                &a.containers.join(" "),
                "attach to one container at a time",
            )
            .into());
        };
        let rec = e.start(c, true)?;
        return attach_and_pump(
            &e,
            &rec.id,
            rec.options.tty,
            a.interactive && rec.options.stdin,
        );
    }
    each(&a.containers, |c| {
        e.start(c, false)?;
        Ok(())
    })
}

/// Attaches the local terminal (or pipes) to a container and returns its
/// exit code.
fn attach_and_pump(e: &Engine, id: &str, tty: bool, stdin: bool) -> anyhow::Result<i32> {
    let client = kontti_engine::attach::connect(&e.attach_socket(id))?;
    let local_tty = tty && std::io::stdin().is_terminal();
    let _raw = if local_tty && stdin {
        Some(kontti_engine::attach::RawTerminal::enable(std::io::stdin())?)
    } else {
        None
    };
    if local_tty {
        let mut resizer = client.try_clone()?;
        if let Some((rows, cols)) = kontti_engine::attach::terminal_size(std::io::stdin()) {
            let _ = resizer.resize(rows, cols);
        }
        std::thread::spawn(move || forward_resizes(resizer));
    }
    let input: Option<Box<dyn std::io::Read + Send>> = if stdin {
        Some(Box::new(std::io::stdin()))
    } else {
        None
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let code = kontti_engine::attach::pump(client, input, &mut out, &mut err)?;
    let _ = out.flush();
    drop(_raw);
    match code {
        Some(c) => Ok(c),
        None => {
            // the supervisor went away without an exit frame: ask the record
            Ok(e.wait(id)?)
        }
    }
}

/// Sends the terminal's size to the container on every SIGWINCH.
fn forward_resizes(mut client: kontti_supervisor::protocol::AttachClient) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = kontti_engine::attach::terminal_size(std::io::stdin())
                && client.resize(rows, cols).is_err()
            {
                return;
            }
        }
    });
}

fn ps(ctx: &Context, a: PsArgs) -> anyhow::Result<i32> {
    let e = engine(ctx)?;
    let filters: Vec<Filter> = a
        .filter
        .iter()
        .map(|f| f.parse())
        .collect::<Result<_, _>>()?;
    let mut recs: Vec<_> = e
        .list()?
        .into_iter()
        .filter(|r| {
            a.all
                || !filters.is_empty()
                || r.state.status.is_live()
                || r.state.status == Status::Restarting
        })
        .filter(|r| filters.iter().all(|f| f.matches(r)))
        .collect();
    recs.sort_by(|x, y| y.created.cmp(&x.created));
    let mut out = std::io::stdout().lock();
    if a.quiet {
        for r in &recs {
            writeln!(out, "{}", if a.no_trunc { &r.id } else { r.short_id() })?;
        }
        return Ok(0);
    }
    let trunc = |s: String, n: usize| {
        if a.no_trunc || s.chars().count() <= n {
            s
        } else {
            format!("{}…", s.chars().take(n - 1).collect::<String>())
        }
    };
    let row = |r: &kontti_engine::ContainerRecord| -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            (
                "ID",
                if a.no_trunc {
                    r.id.clone()
                } else {
                    r.short_id().to_owned()
                },
            ),
            ("Image", r.image.clone()),
            ("Command", trunc(format!("\"{}\"", ps::command_text(r)), 20)),
            ("CreatedAt", r.created.clone()),
            (
                "RunningFor",
                kontti_image::time::parse_rfc3339(&r.created)
                    .map_or_else(String::new, kontti_image::time::ago),
            ),
            ("Status", ps::status_text(r)),
            ("State", r.state.status.to_string()),
            ("Ports", ps::ports_text(r).join(", ")),
            ("Names", r.name.clone()),
            (
                "Labels",
                r.options
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ])
    };
    match a.format.as_deref() {
        Some("json") => {
            for r in &recs {
                writeln!(out, "{}", serde_json::to_string(&row(r))?)?;
            }
        }
        Some(tpl) => {
            for r in &recs {
                let mut line = tpl.replace("\\t", "\t").replace("\\n", "\n");
                for (k, v) in row(r) {
                    line = line.replace(&format!("{{{{.{k}}}}}"), &v);
                }
                writeln!(out, "{line}")?;
            }
        }
        None => {
            let rows: Vec<_> = recs.iter().map(row).collect();
            let cols = [
                "ID",
                "Image",
                "Command",
                "RunningFor",
                "Status",
                "Ports",
                "Names",
            ];
            let heads = [
                "CONTAINER ID",
                "IMAGE",
                "COMMAND",
                "CREATED",
                "STATUS",
                "PORTS",
                "NAMES",
            ];
            let widths: Vec<usize> = cols
                .iter()
                .zip(heads)
                .map(|(c, h)| {
                    rows.iter()
                        .map(|r| r[c].chars().count())
                        .max()
                        .unwrap_or(0)
                        .max(h.len())
                })
                .collect();
            let line = |cells: Vec<&str>| {
                let mut s = String::new();
                for (i, c) in cells.iter().enumerate() {
                    if i + 1 == cells.len() {
                        s.push_str(c);
                    } else {
                        s.push_str(&format!("{c:<w$}   ", w = widths[i]));
                    }
                }
                s
            };
            writeln!(out, "{}", line(heads.to_vec()))?;
            for r in &rows {
                writeln!(
                    out,
                    "{}",
                    line(cols.iter().map(|c| r[c].as_str()).collect())
                )?;
            }
        }
    }
    Ok(0)
}

fn logs(ctx: &Context, a: LogsArgs) -> anyhow::Result<i32> {
    use kontti_engine::logs::{self, LogOptions};
    let e = engine(ctx)?;
    let tail = match a.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse::<usize>().map_err(|_| {
            EngineError::invalid_value("--tail", n, "expected a number of lines or all")
        })?),
    };
    let since = a.since.as_deref().map(logs::parse_since).transpose()?;
    let opts = LogOptions {
        follow: a.follow,
        tail,
        since,
    };
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    logs::logs(&e, &a.container, &opts, |l| {
        let w: &mut dyn Write = match l.stream {
            logs::Stream::Stdout => &mut stdout,
            logs::Stream::Stderr => &mut stderr,
        };
        if a.timestamps {
            write!(w, "{} ", l.time)?;
        }
        w.write_all(&l.text)?;
        if !l.partial {
            w.write_all(b"\n")?;
        }
        w.flush()
    })?;
    Ok(0)
}
