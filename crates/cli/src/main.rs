//! `kontti`: the user's entry point. Parses arguments and calls the libraries.
#![allow(clippy::disallowed_macros)] // a binary prints

use clap::Parser;

mod cmd;

/// kontti: build, run and orchestrate containers.
#[derive(Parser)]
#[command(name = "kontti", version, about)]
struct Cli {
    /// State root for images and containers.
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/kontti",
        env = "KONTTI_ROOT"
    )]
    root: std::path::PathBuf,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "KONTTI_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: cmd::Command,
}

/// docker's exit status for a command line it cannot use.
const USAGE_ERROR: i32 = 125;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { USAGE_ERROR } else { 0 });
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log_level))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let ctx = cmd::Context { root: cli.root };
    match cmd::run(ctx, cli.command) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kontti: {e:#}");
            std::process::exit(cmd::exit_code(&e));
        }
    }
}
