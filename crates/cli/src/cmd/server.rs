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
