//! `run` in the foreground of a config with `process.terminal` and no
//! `--console-socket`: the runtime takes the pty master itself and copies
//! between it and its own stdio (in raw mode when stdin is a terminal),
//! forwarding signals and window size changes, as runc does.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::error::{IoContext, RuntimeError};
use crate::sys::process::{self as sp, Exit};
use crate::sys::term;

/// Proxies until `pid` has exited and the pty is drained; returns its exit.
pub fn proxy(pid: i32, sfd: BorrowedFd<'_>, master: OwnedFd) -> Result<Exit, RuntimeError> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let input = stdin.as_fd();
    let output = stdout.as_fd();
    let raw = if term::is_tty(input) {
        term::make_raw(input).ok()
    } else {
        None
    };
    let resize = |m: BorrowedFd<'_>| {
        if let Ok((rows, cols)) = term::get_winsize(input) {
            let _ = term::set_winsize(m, rows, cols);
        }
    };
    resize(master.as_fd());
    let r = pump(pid, sfd, master.as_fd(), input, output, &resize);
    if let Some(saved) = raw {
        term::restore_termios(input, &saved);
    }
    r
}

fn pump(
    pid: i32,
    sfd: BorrowedFd<'_>,
    master: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    output: BorrowedFd<'_>,
    resize: &dyn Fn(BorrowedFd<'_>),
) -> Result<Exit, RuntimeError> {
    let mut exit = None;
    let mut master_open = true;
    let mut input_open = true;
    let mut buf = vec![0u8; 16384];
    loop {
        if let (Some(e), false) = (exit, master_open) {
            return Ok(e);
        }
        let mut set = vec![(sfd, libc::POLLIN)];
        if master_open {
            set.push((master, libc::POLLIN));
        }
        if input_open {
            set.push((input, libc::POLLIN));
        }
        // once the process is gone, drain what the pty still holds
        let timeout = if exit.is_some() { 50 } else { -1 };
        let rev = term::poll(&set, timeout).ctx(|| "poll the terminal".to_owned())?;
        if exit.is_some() && rev.iter().all(|r| *r == 0) {
            return Ok(exit.unwrap_or(Exit::Code(0)));
        }
        if rev[0] != 0 {
            let sig = sp::read_signal(sfd).ctx(|| "read signals".to_owned())?;
            match sig {
                libc::SIGCHLD => {
                    while let Ok(Some((p, e))) = sp::try_wait_any() {
                        if p == pid {
                            exit = Some(e);
                        }
                    }
                }
                libc::SIGWINCH => resize(master),
                s => {
                    let _ = sp::kill(pid, s);
                }
            }
        }
        let mut i = 1;
        if master_open {
            if rev[i] != 0 {
                match term::read(master, &mut buf) {
                    Ok(0) | Err(_) => master_open = false,
                    Ok(n) => {
                        term::write_all(output, &buf[..n]).ctx(|| "write stdout".to_owned())?
                    }
                }
            }
            i += 1;
        }
        if input_open && rev[i] != 0 {
            match term::read(input, &mut buf) {
                Ok(0) | Err(_) => input_open = false,
                Ok(n) => {
                    if term::write_all(master, &buf[..n]).is_err() {
                        input_open = false;
                    }
                }
            }
        }
    }
}
