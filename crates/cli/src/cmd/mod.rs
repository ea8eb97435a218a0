//! Subcommands. Each area owns a module with a flattened subcommand enum.

use std::path::PathBuf;

use clap::Subcommand;

mod build;

mod container;

mod format;

mod image;

mod network;

mod registry;

mod server;

mod volume;

/// What every subcommand gets from the global flags.
pub struct Context {
    /// `--root`: the state root.
    pub root: PathBuf,
}

/// The top-level subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Print version information.
    Version,
    /// Local image commands: images, rmi, tag, save, load, import, image ...
    #[command(flatten)]
    Image(image::ImageCommand),
    /// Registry commands: pull, push, login, logout, registry serve.
    #[command(flatten)]
    Registry(registry::RegistryCommand),
    #[command(flatten)]
    Server(server::ServerCommand),
    /// Volume commands: volume create, ls, inspect, rm, prune.
    #[command(flatten)]
    Volume(volume::VolumeCommand),
    /// Network commands: network create, ls, inspect, rm, prune, connect, disconnect.
    #[command(flatten)]
    Network(network::NetworkCommand),
    /// Build images from Dockerfiles.
    #[command(flatten)]
    Build(build::BuildCommand),
    /// Container commands: run, create, start, stop, ps, logs, rm, container ...
    #[command(flatten)]
    Container(container::ContainerCommand),
}

/// Runs a subcommand; returns the process exit code.
pub fn run(_ctx: Context, cmd: Command) -> anyhow::Result<i32> {
    match cmd {
        Command::Version => {
            println!("kontti {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Server(c) => server::run(&_ctx, c),
        Command::Image(c) => image::run(&_ctx, c),
        Command::Volume(c) => volume::run(&_ctx, c),
        Command::Network(c) => network::run(&_ctx, c),
        Command::Registry(c) => registry::run(&_ctx, c),
        Command::Build(c) => build::run(&_ctx, c),
        Command::Container(c) => container::run(&_ctx, c),
    }
}

/// Maps an error to an exit code via its [`kontti_core::ErrorKind`] where it has one.
pub fn exit_code(_e: &anyhow::Error) -> i32 {
    if let Some(code) = server::exit_code(_e) {
        return code;
    }
    if let Some(code) = build::exit_code(_e) {
        return code;
    }
    if let Some(code) = registry::exit_code(_e) {
        return code;
    }
    if let Some(code) = volume::exit_code(_e) {
        return code;
    }
    if let Some(code) = network::exit_code(_e) {
        return code;
    }
    if let Some(kind) = image::error_kind(_e) {
        return kind.exit_code();
    }
    1
}
