//! The flags of `create` and `run`, checked into the engine's run
//! options, and pulling a missing image before `create`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;
use kontti_engine::EngineError;
use kontti_engine::options::{self as opts, RunOptions, SeccompChoice};

use crate::cmd::Context;

/// `--detach-keys` of `run`, `start`, `attach` and `exec`.
#[derive(Args, Debug, Clone)]
pub struct DetachKeysArg {
    /// Keys that detach from the container: comma-separated a-z or
    /// ctrl-<a-z, @, [, \, ], ^, _> (default: the client config's
    /// detachKeys, else ctrl-p,ctrl-q).
    #[arg(long = "detach-keys", value_name = "KEYS")]
    pub(super) detach_keys: Option<String>,
}

impl DetachKeysArg {
    /// The key codes, from the flag, the client config or the default.
    pub(super) fn resolve(&self) -> Result<Vec<u8>, EngineError> {
        kontti_engine::attach::detach_keys(self.detach_keys.as_deref())
    }
}

/// The flags of `create` (and `run`).
#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    /// Name of the container.
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub(super) env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    pub(super) env_file: Vec<PathBuf>,
    /// Mount a host path or a volume: [SOURCE:]DEST[:ro].
    #[arg(short = 'v', long = "volume")]
    pub(super) volume: Vec<String>,
    /// Health check command, run with /bin/sh -c.
    #[arg(long = "health-cmd")]
    pub(super) health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s).
    #[arg(long = "health-interval")]
    pub(super) health_interval: Option<String>,
    /// A health check slower than this fails.
    #[arg(long = "health-timeout")]
    pub(super) health_timeout: Option<String>,
    /// Failures in a row that make the container unhealthy.
    #[arg(long = "health-retries")]
    pub(super) health_retries: Option<String>,
    /// Failures during this time after start do not count.
    #[arg(long = "health-start-period")]
    pub(super) health_start_period: Option<String>,
    /// Disable the image's HEALTHCHECK.
    #[arg(long = "no-healthcheck")]
    pub(super) no_healthcheck: bool,
    /// Mount: type=bind|volume|tmpfs,source=...,target=...[,readonly].
    #[arg(long)]
    pub(super) mount: Vec<String>,
    /// Mount a tmpfs: DEST[:OPTIONS].
    #[arg(long)]
    pub(super) tmpfs: Vec<String>,
    /// Publish a port: [IP:]HOST:CONTAINER[/udp].
    #[arg(short = 'p', long = "publish")]
    pub(super) publish: Vec<String>,
    /// Working directory in the container.
    #[arg(short = 'w', long)]
    pub(super) workdir: Option<String>,
    /// User (name or uid, with an optional :group).
    #[arg(short = 'u', long)]
    pub(super) user: Option<String>,
    /// Override the image's entrypoint ("" clears it).
    #[arg(long)]
    pub(super) entrypoint: Option<String>,
    /// Hostname of the container.
    #[arg(long)]
    pub(super) hostname: Option<String>,
    /// Network: bridge, none, host, NAME or container:NAME.
    #[arg(long, alias = "net")]
    pub(super) network: Option<String>,
    /// Restart policy: no, on-failure[:N], always, unless-stopped.
    #[arg(long, default_value = "no")]
    pub(super) restart: String,
    /// Memory limit (e.g. 512m).
    #[arg(short = 'm', long)]
    pub(super) memory: Option<String>,
    /// CPUs (e.g. 1.5).
    #[arg(long)]
    pub(super) cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub(super) pids_limit: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    pub(super) read_only: bool,
    /// Add a capability.
    #[arg(long = "cap-add")]
    pub(super) cap_add: Vec<String>,
    /// Drop a capability.
    #[arg(long = "cap-drop")]
    pub(super) cap_drop: Vec<String>,
    /// no-new-privileges, seccomp=FILE or seccomp=unconfined.
    #[arg(long = "security-opt")]
    pub(super) security_opt: Vec<String>,
    /// Run an init as PID 1 that forwards signals and reaps zombies.
    #[arg(long)]
    pub(super) init: bool,
    /// Set a label (KEY=VALUE).
    #[arg(short = 'l', long = "label")]
    pub(super) label: Vec<String>,
    /// Resource limit: NAME=SOFT[:HARD].
    #[arg(long)]
    pub(super) ulimit: Vec<String>,
    /// Size of /dev/shm (e.g. 64m).
    #[arg(long = "shm-size")]
    pub(super) shm_size: Option<String>,
    /// Give the container a host device: HOST[:CONTAINER][:rwm].
    #[arg(long)]
    pub(super) device: Vec<String>,
    /// Give the container every capability and device; no seccomp, no masked paths.
    #[arg(long)]
    pub(super) privileged: bool,
    /// Log options: max-size=SIZE, max-file=N.
    #[arg(long = "log-opt")]
    pub(super) log_opt: Vec<String>,
    /// Signal that stops the container.
    #[arg(long = "stop-signal")]
    pub(super) stop_signal: Option<String>,
    /// Seconds to wait for the stop signal before SIGKILL.
    #[arg(long = "stop-timeout")]
    pub(super) stop_timeout: Option<String>,
    /// Parent cgroup of the container's cgroup.
    #[arg(long = "cgroup-parent")]
    pub(super) cgroup_parent: Option<String>,
    /// Keep stdin open.
    #[arg(short = 'i', long)]
    pub(super) interactive: bool,
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub(super) tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub(super) rm: bool,
    /// Pull the image: always, missing or never.
    #[arg(long, default_value = "missing")]
    pub(super) pull: String,
    /// Reach this registry (HOST[:PORT]) over plain HTTP when pulling.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub(super) insecure_registry: Vec<String>,
    /// The image.
    pub(super) image: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(super) command: Vec<String>,
}

/// The run options from the flags; every value is checked here.
pub(super) fn run_options(a: &CreateArgs) -> anyhow::Result<RunOptions> {
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
    let dur = |what: &'static str, v: &Option<String>| {
        v.as_deref()
            .map(|s| opts::parse_duration_ms(what, s))
            .transpose()
    };
    let health = opts::HealthConfig {
        test: a
            .health_cmd
            .iter()
            .flat_map(|c| ["CMD-SHELL".to_owned(), c.clone()])
            .collect(),
        interval_ms: dur("--health-interval", &a.health_interval)?,
        timeout_ms: dur("--health-timeout", &a.health_timeout)?,
        retries: a
            .health_retries
            .as_deref()
            .map(|r| {
                r.parse::<u32>().map_err(|_| {
                    EngineError::invalid_value("--health-retries", r, "expected a number")
                })
            })
            .transpose()?,
        start_period_ms: dur("--health-start-period", &a.health_start_period)?,
    };
    if health
        != (opts::HealthConfig {
            test: Vec::new(),
            interval_ms: None,
            timeout_ms: None,
            retries: None,
            start_period_ms: None,
        })
    {
        o.health = Some(health);
    }
    o.no_healthcheck = a.no_healthcheck;
    for m in &a.mount {
        match opts::parse_mount(m)? {
            opts::MountSpec::Volume(v) => o.volumes.push(v),
            opts::MountSpec::Tmpfs(t) => o.tmpfs.push(t),
        }
    }
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
pub(super) fn ensure_image(ctx: &Context, a: &CreateArgs) -> anyhow::Result<()> {
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
