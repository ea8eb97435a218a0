//! `kontti-supervisor`: see the crate documentation of `kontti_supervisor`.
#![allow(clippy::disallowed_macros)]

use kontti_supervisor::args::{self, Args};

fn main() {
    let argv: Vec<_> = std::env::args_os().skip(1).collect();
    let code = match args::parse(argv) {
        Ok(Args::Run(a)) => kontti_supervisor::run::main(a),
        Ok(Args::Exec(a)) => kontti_supervisor::exec::main(a),
        Ok(Args::PinNetns(path)) => match kontti_supervisor::netns::pin_here(&path) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("kontti-supervisor: {e}");
                e.kind().exit_code()
            }
        },
        Ok(Args::Help) => {
            println!("{}", args::USAGE);
            0
        }
        Err(e) => {
            eprintln!("kontti-supervisor: {e}\n{}", args::USAGE);
            kontti_core::ErrorKind::Invalid.exit_code()
        }
    };
    std::process::exit(code);
}
