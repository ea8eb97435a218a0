//! Container commands, docker's way: `run`, `create`, `start`, `stop`,
//! `kill`, `restart`, `rm`, `wait`, `ps`, `logs`, `inspect`, `attach`, `top`,
//! `port`, `rename`, `pause`, `unpause`, `container prune` and the hidden
//! `container cleanup` that a container's supervisor runs when it exits.
//! The work happens in `kontti_engine`; this module parses and prints.
//!
//! Exit codes are docker's: 125 when kontti itself fails, 126 when the
//! container's command cannot be invoked, 127 when it does not exist, and
//! otherwise the container's own exit code (`run`, `start -a`, `wait`).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kontti_engine::options as opts;
use kontti_engine::ps;
use kontti_engine::{CreateRequest, Engine, EngineError};

use super::Context;

mod args;
mod show;

pub use args::CreateArgs;

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
    /// Run a command in a running container.
    Exec(ExecArgs),
    /// Show a container's processes.
    Top(OneArgs),
    /// Show running containers' CPU, memory and process counts.
    Stats(StatsArgs),
    /// Copy files between a container and the host: cp CONTAINER:SRC DEST, cp SRC CONTAINER:DEST.
    Cp(CpArgs),
    /// Show what happened to containers (and keep following without --until).
    Events(EventsArgs),
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
    /// After a reboot: start again the containers whose restart policy says so.
    Restore,
    /// Run one health check of a running container (run by its supervisor).
    #[command(hide = true)]
    HealthCheck(CleanupArgs),
    /// Record a container's exit and apply its restart policy (run by its supervisor).
    #[command(hide = true)]
    Cleanup(CleanupArgs),
}

/// `run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    keys: args::DetachKeysArg,
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
    #[command(flatten)]
    keys: args::DetachKeysArg,
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
    #[command(flatten)]
    keys: args::DetachKeysArg,
    /// The container.
    container: String,
}

/// `exec`.
#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Run in the background.
    #[arg(short = 'd', long)]
    detach: bool,
    #[command(flatten)]
    keys: args::DetachKeysArg,
    /// User (name or uid, with an optional :group).
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Working directory.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Set an environment variable (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// The container.
    container: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// `cp`.
#[derive(Args)]
pub struct CpArgs {
    /// CONTAINER:PATH or a host path.
    src: String,
    /// CONTAINER:PATH or a host path.
    dest: String,
}

/// `events`.
#[derive(Args)]
pub struct EventsArgs {
    /// Events since this time (RFC 3339, Unix seconds, or 10s/5m/2h ago).
    #[arg(long)]
    since: Option<String>,
    /// Events until this time; then exit.
    #[arg(long)]
    until: Option<String>,
    /// Filter: container=NAME|ID, event=ACTION.
    #[arg(short = 'f', long)]
    filter: Vec<String>,
    /// `json` for one JSON object per line.
    #[arg(long)]
    format: Option<String>,
}

/// `stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Print one sample and exit.
    #[arg(long = "no-stream")]
    no_stream: bool,
    /// Containers (default: every running one).
    containers: Vec<String>,
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

pub(super) fn engine(ctx: &Context) -> anyhow::Result<Engine> {
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
            let rec = create(ctx, &e, &a, false)?;
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
        ContainerCommand::Ps(a) | ContainerCommand::Container(ContainerSub::Ls(a)) => {
            show::ps(ctx, a)
        }
        ContainerCommand::Logs(a) => show::logs(ctx, a),
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
            attach_and_pump(&e, &rec.id, rec.options.tty, stdin, &a.keys.resolve()?)
        }
        ContainerCommand::Exec(a) => exec(ctx, a),
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
        ContainerCommand::Stats(a) => show::stats(ctx, a),
        ContainerCommand::Events(a) => show::events(ctx, a),
        ContainerCommand::Cp(a) => {
            let e = engine(ctx)?;
            match (container_path(&a.src), container_path(&a.dest)) {
                (Some((c, p)), None) => e.copy_from(c, p, std::path::Path::new(&a.dest))?,
                (None, Some((c, p))) => e.copy_to(c, std::path::Path::new(&a.src), p)?,
                _ => {
                    return Err(EngineError::invalid_value(
                        "cp",
                        &format!("{} {}", a.src, a.dest),
                        "exactly one of source and destination is CONTAINER:PATH",
                    )
                    .into());
                }
            }
            Ok(0)
        }
        ContainerCommand::Container(ContainerSub::Restore) => {
            let mut failed = 0;
            for r in engine(ctx)?.restore()? {
                match r.outcome {
                    Ok(true) => println!("{}", r.name),
                    Ok(false) => {}
                    Err(e) => {
                        eprintln!("kontti: restore {}: {e}", r.name);
                        failed = 125;
                    }
                }
            }
            Ok(failed)
        }
        ContainerCommand::Container(ContainerSub::HealthCheck(a)) => {
            engine(ctx)?.health_check(&a.id)?;
            Ok(0)
        }
        ContainerCommand::Container(ContainerSub::Cleanup(a)) => {
            engine(ctx)?.cleanup(&a.id)?;
            Ok(0)
        }
    }
}

/// `CONTAINER:PATH` split, or `None` for a host path.
fn container_path(s: &str) -> Option<(&str, &str)> {
    let (c, p) = s.split_once(':')?;
    (!c.is_empty() && !c.contains('/') && kontti_engine::container::valid_name(c)).then_some((c, p))
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

fn create(
    ctx: &Context,
    e: &Engine,
    a: &CreateArgs,
    for_start: bool,
) -> anyhow::Result<kontti_engine::ContainerRecord> {
    let options = args::run_options(a)?;
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
    args::ensure_image(ctx, a)?;
    let req = CreateRequest {
        name: a.name.clone(),
        image: a.image.clone(),
        options,
    };
    Ok(if for_start {
        e.create_for_start(&req)?
    } else {
        e.create(&req)?
    })
}

fn run_container(ctx: &Context, a: RunArgs) -> anyhow::Result<i32> {
    let keys = a.keys.resolve()?;
    let e = engine(ctx)?;
    let rec = create(ctx, &e, &a.create, true)?;
    if let Err(err) = e.start(&rec.id, !a.detach) {
        // as docker: a --rm container that could not start is removed; any
        // other stays behind as Created, for the user to inspect
        if a.create.rm {
            let _ = e.remove(&rec.id, true, true);
        }
        return Err(err.into());
    }
    if a.detach {
        println!("{}", rec.id);
        return Ok(0);
    }
    let code = attach_and_pump(&e, &rec.id, a.create.tty, a.create.interactive, &keys)?;
    if a.create.rm {
        // docker returns after the removal: do it here rather than wait for
        // the exit command (whichever comes second finds nothing to do)
        match e.remove(&rec.id, true, true) {
            Ok(_) | Err(EngineError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
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
        let keys = a.keys.resolve()?;
        let rec = e.start(c, true)?;
        return attach_and_pump(
            &e,
            &rec.id,
            rec.options.tty,
            a.interactive && rec.options.stdin,
            &keys,
        );
    }
    each(&a.containers, |c| {
        e.start(c, false)?;
        Ok(())
    })
}

fn exec(ctx: &Context, a: ExecArgs) -> anyhow::Result<i32> {
    let keys = a.keys.resolve()?;
    let e = engine(ctx)?;
    let lookup = |k: &str| std::env::var(k).ok();
    let mut env = Vec::new();
    for x in &a.env {
        env.extend(opts::parse_env(x, lookup)?);
    }
    let session = e.exec(
        &a.container,
        &kontti_engine::exec::ExecRequest {
            args: a.command.clone(),
            tty: a.tty,
            stdin: a.interactive && !a.detach,
            user: a.user.clone(),
            workdir: a.workdir.clone(),
            env,
        },
    )?;
    let client = kontti_engine::attach::connect(&session.socket)?;
    if a.detach {
        // the first connection starts it; its output is not kept
        drop(client);
        return Ok(0);
    }
    let end = pump_client(client, a.tty, a.interactive, &keys)?;
    if let Ok(rec) = kontti_supervisor::exit::ExitRecord::read(&session.exit_file)
        && let Some(err) = rec.error
    {
        eprintln!("kontti: {err}");
    }
    let code = match end {
        kontti_engine::attach::PumpEnd::Exited(c) => c,
        kontti_engine::attach::PumpEnd::Detached => return Ok(0),
        kontti_engine::attach::PumpEnd::Closed => session.exit_code().unwrap_or(125),
    };
    session.remove();
    Ok(code)
}

/// Attaches the local terminal (or pipes) to a container and returns its
/// exit code.
fn attach_and_pump(
    e: &Engine,
    id: &str,
    tty: bool,
    stdin: bool,
    keys: &[u8],
) -> anyhow::Result<i32> {
    use kontti_engine::attach::PumpEnd;
    let client = kontti_engine::attach::connect(&e.attach_socket(id))?;
    match pump_client(client, tty, stdin, keys)? {
        PumpEnd::Exited(c) => Ok(c),
        PumpEnd::Detached => {
            eprintln!("\r\nread escape sequence\r");
            Ok(0)
        }
        // the supervisor went away without an exit frame: ask the record
        PumpEnd::Closed => Ok(e.wait(id)?),
    }
}

/// Copies between the local terminal (raw with `tty`) and an attach client;
/// with `tty`, typing `keys` detaches.
fn pump_client(
    client: kontti_supervisor::protocol::AttachClient,
    tty: bool,
    stdin: bool,
    keys: &[u8],
) -> anyhow::Result<kontti_engine::attach::PumpEnd> {
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
    // the detach keys (ctrl-p ctrl-q unless set) detach from a terminal, as docker
    let keys = tty.then_some(keys);
    let code = kontti_engine::attach::pump_with_detach(client, input, &mut out, &mut err, keys)?;
    let _ = out.flush();
    drop(_raw);
    Ok(code)
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
