//! `kontti-runc`: runc's command line over the kontti runtime library.
#![allow(clippy::disallowed_macros)] // a binary prints

mod cli;
mod logging;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let log = logging::init(&args.global);
    // argument parsing ran once: its code need not stay resident (the
    // runtime drops the config parser's the same way before setup)
    kontti_runtime::sys::mem::release_clean_file_pages();
    match cli::dispatch(args) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg = e.to_string();
            log.error(&msg);
            eprintln!("kontti-runc: {msg}");
            ExitCode::from(e.kind().exit_code() as u8)
        }
    }
}
