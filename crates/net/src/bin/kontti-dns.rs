//! `kontti-dns`: the per-network DNS responder.
//!
//! ```text
//! kontti-dns --listen ADDR:PORT --records FILE [--upstream ADDR:PORT]... [--daemon]
//! ```
//! With `--daemon` it starts itself again detached (new session, standard
//! streams closed), waits until that copy has bound its sockets, prints its
//! pid and exits; errors of the copy are reported by this process.
#![allow(clippy::disallowed_macros)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use kontti_net::dns::Responder;

struct Args {
    listen: SocketAddr,
    records: PathBuf,
    upstreams: Vec<SocketAddr>,
    daemon: bool,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut listen = None;
    let mut records = None;
    let mut upstreams = Vec::new();
    let mut daemon = false;
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        let addr = |flag: &str, v: String| {
            v.parse::<SocketAddr>()
                .map_err(|_| format!("{flag}: invalid address {v:?}, expected IP:PORT"))
        };
        match a.as_str() {
            "--listen" => listen = Some(addr("--listen", value("--listen")?)?),
            "--records" => records = Some(PathBuf::from(value("--records")?)),
            "--upstream" => upstreams.push(addr("--upstream", value("--upstream")?)?),
            "--daemon" => daemon = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        listen: listen.ok_or("--listen is required")?,
        records: records.ok_or("--records is required")?,
        upstreams,
        daemon,
    })
}

fn daemonize() -> Result<u32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--daemon")
        .collect();
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start: {e}"))?
    };
    let pid = child.id();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() == "ready" {
        // The copy keeps running; it is reparented when this process exits.
        return Ok(pid);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let _ = child.wait();
    Err(err.trim().trim_start_matches("kontti-dns: ").to_owned())
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("kontti-dns: {e}");
            return ExitCode::from(5);
        }
    };
    if args.daemon {
        return match daemonize() {
            Ok(pid) => {
                println!("{pid}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kontti-dns: {e}");
                ExitCode::from(6)
            }
        };
    }
    let responder = match Responder::bind(args.listen, &args.records, args.upstreams) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("kontti-dns: {e}");
            return ExitCode::from(e.kind().exit_code() as u8);
        }
    };
    // Tell a daemonizing parent we are serving; it closes the pipe after.
    println!("ready");
    // Standard streams may be pipes whose reader is gone: never write again.
    match responder.serve() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
