//! `kontti pull`, `push`, `login`, `logout`, `registry serve` and
//! `registry garbage-collect`.
//!
//! Each command builds its own tokio runtime, so that the synchronous
//! commands of other areas start without one.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kontti_core::ImageRef;
use kontti_registry::client::progress::{self, Verb};
use kontti_registry::client::{
    Client, ClientOptions, CredentialStore, Credentials, Platform, RegistriesConfig,
};
use kontti_registry::server::gc::{self, GcOptions};
use kontti_registry::server::{Server, ServerConfig};

use super::Context;

/// Options shared by commands that talk to registries.
#[derive(Args, Clone)]
pub struct RegistryOpts {
    /// Reach this registry (HOST[:PORT]) over plain HTTP (repeatable).
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
    /// Registries config: insecure registries, mirrors, CA certificates.
    #[arg(
        long,
        value_name = "FILE",
        env = "KONTTI_REGISTRIES_CONFIG",
        default_value = "/etc/kontti/registries.json"
    )]
    registries_config: PathBuf,
    /// Extra trusted CA certificate (PEM) for registries (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    ca_cert: Vec<PathBuf>,
    /// Credentials file written by login (default $XDG_CONFIG_HOME/kontti/auth.json).
    #[arg(long, value_name = "FILE", env = "KONTTI_AUTH_FILE")]
    authfile: Option<PathBuf>,
}

impl RegistryOpts {
    fn credentials(&self) -> CredentialStore {
        let mut c = CredentialStore::from_env();
        if let Some(f) = &self.authfile {
            c.auth_file = f.clone();
        }
        c
    }

    fn client(&self) -> anyhow::Result<Client> {
        let mut registries = RegistriesConfig::load(&self.registries_config)?;
        registries.ca_certs.extend(self.ca_cert.iter().cloned());
        Ok(Client::new(ClientOptions {
            registries,
            insecure: self.insecure.clone(),
            credentials: self.credentials(),
            ..ClientOptions::default()
        })?)
    }
}

/// Registry commands.
#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Pull an image from a registry.
    Pull {
        /// Platform to pull from a multi-platform image (OS/ARCH[/VARIANT]).
        #[arg(long)]
        platform: Option<String>,
        /// Suppress progress output.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        opts: RegistryOpts,
        /// Image reference (NAME[:TAG|@DIGEST]).
        reference: String,
    },
    /// Push an image to a registry.
    Push {
        /// Suppress progress output.
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        opts: RegistryOpts,
        /// Image reference (NAME[:TAG]).
        reference: String,
    },
    /// Log in to a registry.
    Login {
        /// User name.
        #[arg(long, short)]
        username: Option<String>,
        /// Password (prefer --password-stdin).
        #[arg(long, short)]
        password: Option<String>,
        /// Read the password from stdin.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        opts: RegistryOpts,
        /// Registry (HOST[:PORT]); Docker Hub when omitted.
        registry: Option<String>,
    },
    /// Log out from a registry.
    Logout {
        #[command(flatten)]
        opts: RegistryOpts,
        /// Registry (HOST[:PORT]); Docker Hub when omitted.
        registry: Option<String>,
    },
    /// Run kontti's built-in registry.
    #[command(subcommand)]
    Registry(ServeCommand),
}

/// `kontti registry ...`.
#[derive(Subcommand)]
pub enum ServeCommand {
    /// Serve the distribution API.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:5000")]
        addr: SocketAddr,
        /// Storage directory.
        #[arg(long)]
        storage: PathBuf,
        /// TLS certificate chain (PEM).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// htpasswd file (bcrypt entries) for basic auth.
        #[arg(long)]
        htpasswd: Option<PathBuf>,
    },
    /// Remove blobs that no manifest references, and stale uploads, from a
    /// registry's storage (refused while a registry serves it).
    GarbageCollect {
        /// Storage directory.
        #[arg(long)]
        storage: PathBuf,
        /// Print what would be removed; remove nothing.
        #[arg(long, short = 'd')]
        dry_run: bool,
        /// Also delete manifests that no tag reaches, and what only they use.
        #[arg(long, short = 'm')]
        delete_untagged: bool,
        /// Remove upload sessions untouched for longer (e.g. 30m, 24h, 7d).
        #[arg(long, value_name = "AGE", default_value = "24h", value_parser = parse_age)]
        upload_max_age: std::time::Duration,
    },
}

/// `90`, `90s`, `30m`, `24h`, `7d`.
fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not an age like 30m, 24h or 7d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?} is not an age like 30m, 24h or 7d")),
    };
    Ok(std::time::Duration::from_secs(n.saturating_mul(secs)))
}

fn garbage_collect(storage: &std::path::Path, opts: &GcOptions) -> anyhow::Result<i32> {
    let report = gc::collect(storage, opts)?;
    for (repo, d) in &report.removed_manifests {
        println!("manifest eligible for deletion: {repo}@{d}");
    }
    for d in &report.removed_blobs {
        println!("blob eligible for deletion: {d}");
    }
    println!(
        "{} blobs marked, {} blobs and {} manifests eligible for deletion ({} bytes), {} stale uploads{}",
        report.marked,
        report.removed_blobs.len(),
        report.removed_manifests.len(),
        report.freed_bytes,
        report.removed_uploads,
        if opts.dry_run {
            " (dry run: nothing removed)"
        } else {
            " removed"
        }
    );
    Ok(0)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn registry_name(r: Option<String>) -> String {
    match r.as_deref() {
        None
        | Some(
            "docker.io"
            | "index.docker.io"
            | "registry-1.docker.io"
            | "https://index.docker.io/v1/",
        ) => "docker.io".to_owned(),
        Some(other) => other
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
    }
}

/// Runs a registry command.
pub fn run(ctx: &Context, cmd: RegistryCommand) -> anyhow::Result<i32> {
    let content = kontti_registry::local::content_dir(&ctx.root);
    match cmd {
        RegistryCommand::Pull {
            platform,
            quiet,
            opts,
            reference,
        } => {
            let r = ImageRef::parse(&reference)?;
            let platform = match platform {
                Some(p) => p.parse::<Platform>()?,
                None => Platform::host(),
            };
            let client = opts.client()?;
            let progress: Arc<dyn kontti_registry::client::Progress> = if quiet {
                Arc::new(progress::NoProgress)
            } else {
                progress::for_stderr(Verb::Pull)
            };
            if !quiet {
                let what = r.tag().map_or_else(
                    || r.digest().map(|d| d.to_string()).unwrap_or_default(),
                    str::to_owned,
                );
                eprintln!("{what}: Pulling from {}", r.familiar_name());
            }
            let (pulled, unpacked) =
                runtime()?.block_on(kontti_registry::local::pull_and_unpack(
                    &client, &ctx.root, &r, &platform, progress,
                ))?;
            tracing::debug!(
                unpacked = unpacked.unpacked,
                reused = unpacked.reused,
                "layers unpacked"
            );
            if !quiet {
                let top = pulled
                    .pulled
                    .index
                    .as_ref()
                    .map_or(&pulled.pulled.manifest_digest, |(d, _, _)| d);
                eprintln!("Digest: {top}");
                if pulled.pulled.downloaded == 0 {
                    eprintln!("Status: Image is up to date for {}", r.familiar());
                } else {
                    eprintln!("Status: Downloaded newer image for {}", r.familiar());
                }
            }
            println!("{r}");
            Ok(0)
        }
        RegistryCommand::Push {
            quiet,
            opts,
            reference,
        } => {
            let r = ImageRef::parse(&reference)?;
            let client = opts.client()?;
            let progress: Arc<dyn kontti_registry::client::Progress> = if quiet {
                Arc::new(progress::NoProgress)
            } else {
                progress::for_stderr(Verb::Push)
            };
            kontti_registry::local::ensure_local(&content, &r)?;
            if !quiet {
                eprintln!(
                    "The push refers to repository [{}/{}]",
                    r.registry(),
                    r.repository()
                );
            }
            let d = runtime()?.block_on(kontti_registry::local::push(
                &client, &content, &r, progress,
            ))?;
            let tag = r.tag().unwrap_or(kontti_core::DEFAULT_TAG);
            println!("{tag}: digest: {d}");
            Ok(0)
        }
        RegistryCommand::Login {
            username,
            password,
            password_stdin,
            opts,
            registry,
        } => {
            let registry = registry_name(registry);
            let username = match username {
                Some(u) => u,
                None => prompt("Username: ")?,
            };
            let password = match (password, password_stdin) {
                (Some(_), true) => {
                    anyhow::bail!("--password and --password-stdin are mutually exclusive")
                }
                (Some(p), false) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .lock()
                        .read_line(&mut line)
                        .context("reading the password from stdin")?;
                    line.trim_end_matches(['\n', '\r']).to_owned()
                }
                (None, false) => prompt("Password: ")?,
            };
            anyhow::ensure!(!username.is_empty(), "empty user name");
            anyhow::ensure!(!password.is_empty(), "empty password");
            let client = opts.client()?;
            let creds = Credentials { username, password };
            runtime()?.block_on(client.login(&registry, &creds))?;
            println!("Login Succeeded");
            Ok(0)
        }
        RegistryCommand::Logout { opts, registry } => {
            let registry = registry_name(registry);
            opts.credentials().remove(&registry)?;
            println!("Removing login credentials for {registry}");
            Ok(0)
        }
        RegistryCommand::Registry(ServeCommand::Serve {
            addr,
            storage,
            tls_cert,
            tls_key,
            htpasswd,
        }) => {
            let config = ServerConfig {
                addr,
                storage: storage.clone(),
                tls: tls_cert.zip(tls_key),
                htpasswd,
            };
            runtime()?.block_on(async {
                let blobs = kontti_registry::blobs::ContentBlobs::open(&storage, "registry", false)
                    .with_context(|| format!("opening storage {}", storage.display()))?;
                let server = Server::bind(&config, Arc::new(blobs)).await?;
                eprintln!("kontti registry listening on {}", server.local_addr()?);
                server.serve(shutdown_signal()).await;
                anyhow::Ok(())
            })?;
            Ok(0)
        }
        RegistryCommand::Registry(ServeCommand::GarbageCollect {
            storage,
            dry_run,
            delete_untagged,
            upload_max_age,
        }) => garbage_collect(
            &storage,
            &GcOptions {
                dry_run,
                delete_untagged,
                max_upload_age: upload_max_age,
            },
        ),
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

fn prompt(what: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        "{} not given and stdin is not a terminal (use -u and --password-stdin)",
        what.trim_end_matches(": ")
    );
    eprint!("{what}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The exit code for a registry command's error, from its error kind.
pub fn exit_code(e: &anyhow::Error) -> Option<i32> {
    use kontti_registry::client::ClientError;
    use kontti_registry::client::auth::AuthError;
    use kontti_registry::local::LocalError;
    use kontti_registry::server::ServeError;
    if let Some(e) = e.downcast_ref::<LocalError>() {
        return Some(e.kind().exit_code());
    }
    if let Some(e) = e.downcast_ref::<ClientError>() {
        return Some(e.kind().exit_code());
    }
    if let Some(e) = e.downcast_ref::<AuthError>() {
        return Some(e.kind().exit_code());
    }
    if let Some(e) = e.downcast_ref::<ServeError>() {
        return Some(e.kind().exit_code());
    }
    if let Some(e) = e.downcast_ref::<gc::GcError>() {
        return Some(e.kind().exit_code());
    }
    if e.downcast_ref::<kontti_core::ReferenceError>().is_some()
        || e.downcast_ref::<kontti_registry::client::platform::PlatformError>()
            .is_some()
    {
        return Some(kontti_core::ErrorKind::Invalid.exit_code());
    }
    None
}
