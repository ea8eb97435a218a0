//! `kontti-runc`: runc's command line over the kontti runtime library.
#![allow(clippy::disallowed_macros)] // a binary prints

fn main() {
    eprintln!("kontti-runc: not built yet");
    std::process::exit(1);
}
