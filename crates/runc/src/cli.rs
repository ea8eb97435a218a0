//! The command line, spelled as runc's (the flags conmon and podman pass).

use std::io::Read;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kontti_runtime::container::{self, CreateOptions};
use kontti_runtime::exec::{self, ExecOptions};
use kontti_runtime::{RuntimeError, ops, templates};

#[derive(Parser, Debug)]
#[command(
    name = "kontti-runc",
    version,
    about = "An OCI runtime with runc's command line"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Global flags.
#[derive(Args, Debug)]
pub struct Global {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/kontti-runc")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported).
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Global: accepted for compatibility (true|false|auto). After `spec`:
    /// write a config for unprivileged users.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// Accepted for compatibility; ignored.
    #[arg(long = "log-level", global = true, hide = true)]
    pub log_level: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// File to write the container's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Use MS_MOVE and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a session keyring.
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many fds (from 3) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container, and wait for it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Do not wait for the container.
        #[arg(short, long)]
        detach: bool,
        /// Accepted for compatibility: keep the container after it exits (ignored).
        #[arg(long)]
        keep: bool,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to a container's init (or, with --all, every process).
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container.
    Delete {
        id: String,
        #[arg(short, long)]
        force: bool,
    },
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// List containers.
    List {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List a container's processes.
    Ps {
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        id: String,
        /// Options passed to ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Update a container's resource limits.
    Update(UpdateArgs),
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the runtime's features as JSON.
    Features,
}

#[derive(Args, Debug)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Environment variables (KEY=VALUE).
    #[arg(short, long)]
    pub env: Vec<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// uid[:gid].
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids.
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// A process.json to run.
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Pass this many fds (from 3) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted for compatibility; ignored.
    #[arg(long = "process-label", hide = true)]
    pub process_label: Option<String>,
    /// Accepted for compatibility; ignored.
    #[arg(long = "apparmor", hide = true)]
    pub apparmor: Option<String>,
    /// Container id.
    pub id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// linux.resources JSON file ("-" for stdin).
    #[arg(short, long)]
    pub resources: Option<PathBuf>,
    #[arg(long)]
    pub memory: Option<String>,
    #[arg(long = "memory-swap")]
    pub memory_swap: Option<String>,
    #[arg(long = "memory-reservation")]
    pub memory_reservation: Option<String>,
    #[arg(long = "cpu-shares")]
    pub cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota")]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
    pub id: String,
}

fn create_options(g: &Global, a: &CreateArgs) -> Result<CreateOptions, RuntimeError> {
    if g.systemd_cgroup {
        return Err(RuntimeError::Unsupported(
            "--systemd-cgroup (kontti-runc manages cgroups through cgroupfs; drop the flag)".into(),
        ));
    }
    Ok(CreateOptions {
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        root: g.root.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        no_new_keyring: a.no_new_keyring,
        // a short-lived process: its peak RSS is the code it has touched
        release_parsing_pages: true,
    })
}

/// Runs the command; returns the exit code.
pub fn dispatch(cli: Cli) -> Result<i32, RuntimeError> {
    let g = &cli.global;
    let root = &g.root;
    match cli.cmd {
        Cmd::Create(a) => {
            container::create(&create_options(g, &a)?)?;
            Ok(0)
        }
        Cmd::Start { id } => ops::start(root, &id).map(|_| 0),
        Cmd::Run { create, detach, .. } => container::run(&create_options(g, &create)?, detach),
        Cmd::State { id } => {
            let info = ops::state(root, &id)?;
            println!("{}", String::from_utf8_lossy(&info.state_json()));
            Ok(0)
        }
        Cmd::Kill { id, signal, all } => {
            let sig = kontti_runtime::sys::process::signal_number(&signal)
                .ok_or_else(|| RuntimeError::Invalid(format!("unknown signal {signal:?}")))?;
            ops::kill(root, &id, sig, all).map(|_| 0)
        }
        Cmd::Delete { id, force } => ops::delete(root, &id, force).map(|_| 0),
        Cmd::Exec(a) => exec::exec(&exec_options(g, a)?),
        Cmd::List { format, quiet } => list(root, &format, quiet),
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => ps(root, &id, &format, &ps_args),
        Cmd::Pause { id } => ops::pause(root, &id).map(|_| 0),
        Cmd::Resume { id } => ops::resume(root, &id).map(|_| 0),
        Cmd::Update(a) => {
            let res = update_resources(&a)?;
            ops::update(root, &a.id, &res).map(|_| 0)
        }
        Cmd::Spec { bundle } => spec(&bundle, g.rootless.as_deref() == Some("true")),
        Cmd::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&templates::features()).unwrap_or_default()
            );
            Ok(0)
        }
    }
}

fn exec_options(g: &Global, a: ExecArgs) -> Result<ExecOptions, RuntimeError> {
    let process = a
        .process
        .as_deref()
        .map(kontti_runtime::config::load_process)
        .transpose()?;
    let user = a
        .user
        .as_deref()
        .map(|u| {
            let bad =
                || RuntimeError::Invalid(format!("--user {u:?}: expected uid[:gid] as numbers"));
            let (uid, gid) = match u.split_once(':') {
                Some((a, b)) => (a, Some(b)),
                None => (u, None),
            };
            Ok::<_, RuntimeError>((
                uid.parse().map_err(|_| bad())?,
                gid.map(|g| g.parse().map_err(|_| bad())).transpose()?,
            ))
        })
        .transpose()?;
    Ok(ExecOptions {
        id: a.id,
        root: g.root.clone(),
        process,
        args: a.command,
        cwd: a.cwd,
        env: a.env,
        user,
        additional_gids: a.additional_gids,
        tty: a.tty,
        detach: a.detach,
        pid_file: a.pid_file,
        console_socket: a.console_socket,
        no_new_privs: a.no_new_privs,
        preserve_fds: a.preserve_fds,
    })
}

fn list(root: &std::path::Path, format: &str, quiet: bool) -> Result<i32, RuntimeError> {
    let all = ops::list(root)?;
    if quiet {
        for c in &all {
            println!("{}", c.record.id);
        }
        return Ok(0);
    }
    if format == "json" {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|c| serde_json::from_slice(&c.state_json()).unwrap_or_default())
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(0);
    }
    println!(
        "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for c in &all {
        let pid = if c.status == kontti_runtime::state::Status::Stopped {
            0
        } else {
            c.record.pid
        };
        println!(
            "{:<20} {:<8} {:<10} {:<40} {:<32} root",
            c.record.id,
            pid,
            c.status,
            c.record.bundle.display(),
            c.record.created
        );
    }
    Ok(0)
}

fn ps(
    root: &std::path::Path,
    id: &str,
    format: &str,
    args: &[String],
) -> Result<i32, RuntimeError> {
    let pids = ops::pids(root, id)?;
    if format == "json" {
        println!("{}", serde_json::to_string(&pids).unwrap_or_default());
        return Ok(0);
    }
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| RuntimeError::io("run ps", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Ok(0);
    };
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| {
            RuntimeError::Invalid("ps output has no PID column: pass options that print it".into())
        })?;
    println!("{header}");
    for l in lines {
        let pid = l
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            println!("{l}");
        }
    }
    Ok(0)
}

fn parse_bytes(flag: &str, s: &str) -> Result<i64, RuntimeError> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| RuntimeError::Invalid(format!("{flag} {s:?}: expected a size such as 512m")))
}

fn update_resources(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources, RuntimeError> {
    let mut v: serde_json::Value = match &a.resources {
        Some(p) => {
            let mut buf = Vec::new();
            if p.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| RuntimeError::io("read stdin", e))?;
            } else {
                buf = std::fs::read(p)
                    .map_err(|e| RuntimeError::io(format!("read {}", p.display()), e))?;
            }
            kontti_runtime::config::parse_json::<serde_json::Value>(&p.display().to_string(), &buf)?
        }
        None => serde_json::json!({}),
    };
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        if !v[section].is_object() {
            v[section] = serde_json::json!({});
        }
        v[section][key] = val;
    };
    if let Some(m) = &a.memory {
        set("memory", "limit", parse_bytes("--memory", m)?.into());
    }
    if let Some(m) = &a.memory_swap {
        set("memory", "swap", parse_bytes("--memory-swap", m)?.into());
    }
    if let Some(m) = &a.memory_reservation {
        set(
            "memory",
            "reservation",
            parse_bytes("--memory-reservation", m)?.into(),
        );
    }
    if let Some(x) = a.cpu_shares {
        set("cpu", "shares", x.into());
    }
    if let Some(x) = a.cpu_quota {
        set("cpu", "quota", x.into());
    }
    if let Some(x) = a.cpu_period {
        set("cpu", "period", x.into());
    }
    if let Some(x) = &a.cpuset_cpus {
        set("cpu", "cpus", x.clone().into());
    }
    if let Some(x) = &a.cpuset_mems {
        set("cpu", "mems", x.clone().into());
    }
    if let Some(x) = a.pids_limit {
        set("pids", "limit", x.into());
    }
    if let Some(x) = a.blkio_weight {
        set("blockIO", "weight", x.into());
    }
    let bytes = serde_json::to_vec(&v).unwrap_or_default();
    kontti_runtime::config::parse_json("resources", &bytes)
}

fn spec(bundle: &std::path::Path, rootless: bool) -> Result<i32, RuntimeError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(RuntimeError::AlreadyExists(format!(
            "file {} (remove it first)",
            path.display()
        )));
    }
    let (uid, gid) = std::fs::metadata(bundle)
        .map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.uid(), m.gid())
        })
        .unwrap_or((0, 0));
    let v = templates::default_spec(rootless, uid, gid);
    let text = serde_json::to_string_pretty(&v).unwrap_or_default();
    std::fs::write(&path, text + "\n")
        .map_err(|e| RuntimeError::io(format!("write {}", path.display()), e))?;
    Ok(0)
}
