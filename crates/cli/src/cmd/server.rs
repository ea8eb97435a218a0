//! `kontti server` and `kontti kubeconfig`: the Kubernetes-compatible API server.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use super::Context;

/// The server's subcommands.
#[derive(Subcommand)]
pub enum ServerCommand {
    /// Run the Kubernetes-compatible API server (HTTPS; writes an admin kubeconfig).
    Server(ServerArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Print the admin kubeconfig that `kontti server` wrote into its data directory.
    Kubeconfig {
        /// The server's data directory (default: <root>/server).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// `kontti server` flags.
#[derive(Args)]
pub struct ServerArgs {
    /// Holds the admin kubeconfig and the embedded store (default: <root>/server).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// `embedded` (default, in the data directory) or `etcd://host:port[,host:port...][/prefix]`.
    #[arg(long)]
    datastore: Option<String>,
}

/// What to benchmark.
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Start a server in a child process and load it: create, get, list, paced writes, watch.
    Api(BenchApiArgs),
}

/// `kontti bench api` flags.
#[derive(Args)]
pub struct BenchApiArgs {
    /// The server's datastore (`embedded` or `etcd://host:port[/prefix]`).
    #[arg(long)]
    datastore: Option<String>,
    /// Objects to create, get and list.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Concurrent requests in the create and get phases.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Writes per second in the paced-write phase.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of paced writes.
    #[arg(long, default_value_t = 10)]
    seconds: u32,
    /// Watch-latency samples.
    #[arg(long, default_value_t = 200)]
    watch_samples: usize,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn bench_api(args: BenchApiArgs) -> anyhow::Result<i32> {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("kontti-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut cmd = std::process::Command::new(
        std::env::current_exe().context("cannot find the kontti binary")?,
    );
    cmd.arg("server")
        .arg("--data-dir")
        .arg(&dir)
        .arg("--listen")
        .arg("127.0.0.1:0");
    if let Some(ds) = &args.datastore {
        cmd.arg("--datastore").arg(ds);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("cannot start the server")?;
    let result = (|| -> anyhow::Result<()> {
        let stdout = child.stdout.take().context("server stdout")?;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut addr = None;
        let mut kubeconfig = None;
        while addr.is_none() || kubeconfig.is_none() {
            let line = lines
                .next()
                .context("the server exited before it was ready")??;
            if let Some(a) = line.strip_prefix("listening on https://") {
                addr = Some(a.parse::<SocketAddr>()?);
            } else if let Some(k) = line.strip_prefix("kubeconfig: ") {
                kubeconfig = Some(PathBuf::from(k));
            }
        }
        let (addr, kubeconfig) = (addr.context("address")?, kubeconfig.context("kubeconfig")?);
        std::thread::sleep(std::time::Duration::from_secs(1));
        let pid = child.id();
        println!(
            "server: pid {pid}, datastore {}, idle RSS {} KiB",
            args.datastore.as_deref().unwrap_or("embedded"),
            rss_kib(pid)
        );
        let opts = kontti_apiserver::bench::BenchOptions {
            objects: args.objects,
            concurrency: args.concurrency,
            write_rate: args.rate,
            write_seconds: args.seconds,
            watch_samples: args.watch_samples,
        };
        runtime()?.block_on(async {
            let conn = kontti_apiserver::bench::Conn::connect(&kubeconfig, addr).await?;
            println!(
                "{:<36} {:>8} {:>10} {:>12} {:>12}",
                "phase", "ops", "ops/s", "p50", "p99"
            );
            kontti_apiserver::bench::run(&conn, &opts, |p| {
                println!(
                    "{:<36} {:>8} {:>10.0} {:>12.3?} {:>12.3?}",
                    p.name,
                    p.ops,
                    p.rate(),
                    p.p50,
                    p.p99
                );
            })
            .await?;
            Ok::<_, anyhow::Error>(())
        })?;
        println!(
            "server RSS with {} objects: {} KiB",
            args.objects,
            rss_kib(pid)
        );
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result.map(|_| 0)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs a server subcommand.
pub fn run(ctx: &Context, cmd: ServerCommand) -> anyhow::Result<i32> {
    match cmd {
        ServerCommand::Server(args) => {
            let opts = kontti_apiserver::ServerOptions {
                data_dir: args.data_dir.unwrap_or_else(|| ctx.root.join("server")),
                listen: args.listen,
                datastore: args.datastore,
            };
            runtime()?.block_on(async {
                let server = kontti_apiserver::start(&opts).await?;
                println!("listening on https://{}", server.addr);
                println!("kubeconfig: {}", server.kubeconfig_path.display());
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("cannot install the SIGTERM handler")?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                drop(server);
                Ok::<_, anyhow::Error>(0)
            })
        }
        ServerCommand::Bench {
            what: BenchCommand::Api(args),
        } => bench_api(args),
        ServerCommand::Kubeconfig { data_dir } => {
            let dir = data_dir.unwrap_or_else(|| ctx.root.join("server"));
            print!("{}", kontti_apiserver::identity::read_kubeconfig(&dir)?);
            Ok(0)
        }
    }
}

/// The exit code of a server error, by its kind.
pub fn exit_code(e: &anyhow::Error) -> Option<i32> {
    if let Some(e) = e.downcast_ref::<kontti_apiserver::ServerError>() {
        return Some(e.kind().exit_code());
    }
    e.downcast_ref::<kontti_apiserver::identity::IdentityError>()
        .map(|e| e.kind().exit_code())
}
