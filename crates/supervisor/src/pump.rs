//! The supervisor's event loop: one thread, `poll(2)` over the signalfd, the
//! attach socket, its clients and the container's stdio.
//!
//! Output of the container goes to the CRI log (when there is one) and to
//! every attach client; clients' stdin goes to the container when stdin is
//! enabled. Client sockets and the container's stdin are non-blocking with a
//! buffer each, so a slow reader never stalls the container: a client more
//! than [`MAX_CLIENT_BACKLOG`] behind is disconnected.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use kontti_runtime::sys::process::{self as rproc, Exit};
use kontti_runtime::sys::term;

use crate::crilog::{LogWriter, Stream};
use crate::health::HealthTimer;
use crate::protocol::{Decoder, Frame, channel};
use crate::timestamp::Timestamp;

/// How far behind an attach client may fall before it is dropped.
pub const MAX_CLIENT_BACKLOG: usize = 16 << 20;

/// How long to keep reading output after the process exited while more keeps
/// coming (a daemonised child may hold the pipes), and the quiet time that
/// ends the drain.
const DRAIN_MAX: Duration = Duration::from_secs(2);
const DRAIN_QUIET_MS: i32 = 100;

struct Client {
    stream: UnixStream,
    decoder: Decoder,
    out: Vec<u8>,
}

/// The container's stdio as the supervisor holds it.
pub struct Stdio {
    /// stdout pipe (read end), or the pty master with a terminal.
    pub out: Option<OwnedFd>,
    /// stderr pipe (read end); `None` with a terminal.
    pub err: Option<OwnedFd>,
    /// stdin pipe (write end) without a terminal, when stdin is kept open.
    pub stdin: Option<OwnedFd>,
    /// `out` is a pty master: stdin and resizes go to it.
    pub tty: bool,
    /// Pass clients' stdin on.
    pub stdin_enabled: bool,
}

/// Why [`Pump::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The watched process exited.
    Exited(Exit),
    /// The first attach client connected (when asked to stop there).
    Attached,
}

/// The loop's state.
pub struct Pump {
    sfd: OwnedFd,
    listener: UnixListener,
    io: Stdio,
    stdin_pending: Vec<u8>,
    stdin_close: bool,
    clients: Vec<Client>,
    log: Option<LogWriter>,
    attached: bool,
    buf: Vec<u8>,
    health: Option<HealthTimer>,
}

/// The signals the supervisor handles through its signalfd: `SIGCHLD`, and
/// termination signals, which it ignores (the container's lifetime decides
/// the supervisor's).
pub const SIGNALS: [i32; 4] = [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::ioctl_fionbio(fd, true).map_err(io::Error::from)
}

impl Pump {
    /// A loop over `listener` (made non-blocking) with no container stdio yet.
    pub fn new(sfd: OwnedFd, listener: UnixListener, log: Option<LogWriter>) -> io::Result<Pump> {
        listener.set_nonblocking(true)?;
        Ok(Pump {
            sfd,
            listener,
            io: Stdio {
                out: None,
                err: None,
                stdin: None,
                tty: false,
                stdin_enabled: false,
            },
            stdin_pending: Vec::new(),
            stdin_close: false,
            clients: Vec::new(),
            log,
            attached: false,
            buf: vec![0u8; 64 * 1024],
            health: None,
        })
    }

    /// Takes the container's stdio.
    pub fn set_stdio(&mut self, io: Stdio) -> io::Result<()> {
        if let Some(fd) = &io.stdin {
            nonblocking(fd.as_fd())?;
        }
        if io.tty
            && let Some(fd) = &io.out
        {
            nonblocking(fd.as_fd())?;
        }
        self.io = io;
        Ok(())
    }

    /// Runs health checks on `timer` from now on, in [`Pump::run`].
    pub fn set_health_timer(&mut self, timer: HealthTimer) {
        self.health = Some(timer);
    }

    /// Serves the socket until the first client connects; false when
    /// `timeout` passed first.
    pub fn wait_attach(&mut self, timeout: Duration) -> io::Result<bool> {
        let deadline = Instant::now() + timeout;
        while !self.attached {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let rev = self.poll(left.as_millis().min(i32::MAX as u128) as i32, true)?;
            if rev[0] != 0 {
                // nothing of ours runs yet: reap strays, ignore the rest
                rproc::read_signal(self.sfd.as_fd())?;
                while let Ok(Some(_)) = rproc::try_wait_any() {}
            }
            self.handle(&rev)?;
        }
        Ok(true)
    }

    /// Runs until `pid` exits (reaping every other child that ends), or,
    /// with `stop_on_attach`, until the first client connects.
    pub fn run(&mut self, pid: Option<i32>, stop_on_attach: bool) -> io::Result<Event> {
        loop {
            if stop_on_attach && self.attached {
                return Ok(Event::Attached);
            }
            let timeout = self.health.as_ref().map_or(-1, HealthTimer::poll_timeout);
            let rev = self.poll(timeout, true)?;
            if let Some(h) = &mut self.health {
                h.fire_if_due();
            }
            if rev[0] != 0 {
                let sig = rproc::read_signal(self.sfd.as_fd())?;
                if sig == libc::SIGCHLD {
                    let mut exited = None;
                    loop {
                        match rproc::try_wait_any() {
                            Ok(Some((p, e))) if Some(p) == pid => exited = Some(e),
                            Ok(Some((p, _))) => {
                                if let Some(h) = &mut self.health
                                    && h.reaped(p)
                                {
                                    // the spawn's code is not needed until the next
                                    // check: idle, the supervisor stays as small as
                                    // one without a check
                                    kontti_runtime::sys::mem::release_clean_file_pages();
                                }
                            }
                            Ok(None) => break,
                            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => break,
                            Err(e) => return Err(e),
                        }
                    }
                    if let Some(e) = exited {
                        return Ok(Event::Exited(e));
                    }
                } else {
                    tracing::debug!("ignoring signal {sig}");
                }
            }
            self.handle(&rev)?;
        }
    }

    /// Reads what the container's outputs still hold after it exited: until
    /// they close, are quiet for a moment, or a time limit passes.
    pub fn drain(&mut self) -> io::Result<()> {
        let start = Instant::now();
        while (self.io.out.is_some() || self.io.err.is_some()) && start.elapsed() < DRAIN_MAX {
            let rev = self.poll(DRAIN_QUIET_MS, false)?;
            let busy = rev[2..4].iter().any(|r| *r != 0);
            if !busy {
                break;
            }
            self.handle(&rev)?;
        }
        if let Some(log) = &mut self.log
            && let Err(e) = log.finish(Timestamp::now())
        {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    /// Sends the exit frame to every client (including those that connected
    /// but were not accepted yet), flushing what they have pending (each
    /// gets at most a second), and closes them.
    pub fn send_exit(&mut self, code: i32) {
        // clients still in the listen backlog get the exit code too
        self.accept();
        for mut c in self.clients.drain(..) {
            if Frame::Exit(code).encode_into(&mut c.out).is_err() {
                continue;
            }
            let _ = c.stream.set_nonblocking(false);
            let _ = c.stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = c.stream.write_all(&c.out);
        }
    }

    /// Polls; `rev` is indexed: 0 signalfd, 1 listener, 2 out, 3 err,
    /// 4 stdin pipe, then clients. Absent fds get a 0 entry.
    fn poll(&self, timeout: i32, accept: bool) -> io::Result<Vec<i16>> {
        let tty_out = if self.io.tty && !self.stdin_pending.is_empty() {
            libc::POLLOUT
        } else {
            0
        };
        let stdin_ev = if self.stdin_pending.is_empty() {
            0
        } else {
            libc::POLLOUT
        };
        let mut wanted: Vec<Option<(BorrowedFd<'_>, i16)>> = vec![
            Some((self.sfd.as_fd(), libc::POLLIN)),
            accept.then(|| (self.listener.as_fd(), libc::POLLIN)),
            self.io
                .out
                .as_ref()
                .map(|f| (f.as_fd(), libc::POLLIN | tty_out)),
            self.io.err.as_ref().map(|f| (f.as_fd(), libc::POLLIN)),
            self.io
                .stdin
                .as_ref()
                .filter(|_| stdin_ev != 0)
                .map(|f| (f.as_fd(), stdin_ev)),
        ];
        for c in &self.clients {
            let ev = libc::POLLIN | if c.out.is_empty() { 0 } else { libc::POLLOUT };
            wanted.push(Some((c.stream.as_fd(), ev)));
        }
        let set: Vec<(BorrowedFd<'_>, i16)> = wanted.iter().flatten().copied().collect();
        let mut idx = Vec::with_capacity(wanted.len());
        let mut next = 0;
        for w in &wanted {
            idx.push(w.map(|_| {
                next += 1;
                next - 1
            }));
        }
        let got = term::poll(&set, timeout)?;
        Ok(idx.iter().map(|i| i.map_or(0, |i| got[i])).collect())
    }

    fn handle(&mut self, rev: &[i16]) -> io::Result<()> {
        if rev[1] != 0 {
            self.accept();
        }
        if rev[2] != 0 {
            if rev[2] & libc::POLLOUT != 0 {
                self.flush_stdin();
            }
            if rev[2] & !libc::POLLOUT != 0 {
                self.read_output(Stream::Stdout);
            }
        }
        if rev[3] != 0 {
            self.read_output(Stream::Stderr);
        }
        if rev[4] != 0 {
            self.flush_stdin();
        }
        // clients, back to front so removal keeps indices valid
        let n = self.clients.len();
        for i in (0..n).rev() {
            let r = rev.get(5 + i).copied().unwrap_or(0);
            if r == 0 {
                continue;
            }
            let keep = (r & libc::POLLOUT == 0 || self.flush_client(i))
                && (r & !libc::POLLOUT == 0 || self.read_client(i));
            if !keep {
                self.clients.swap_remove(i);
            }
        }
        Ok(())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.attached = true;
                    self.clients.push(Client {
                        stream,
                        decoder: Decoder::default(),
                        out: Vec::new(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("accept an attach client: {e}");
                    return;
                }
            }
        }
    }

    fn read_output(&mut self, stream: Stream) {
        let fd = match stream {
            Stream::Stdout => &mut self.io.out,
            Stream::Stderr => &mut self.io.err,
        };
        let Some(f) = fd.as_ref() else { return };
        let n = match term::read(f.as_fd(), &mut self.buf) {
            Ok(0) => {
                // a pty master stays open for stdin even when it reads EOF
                *fd = None;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            // EIO: the pty's last slave closed
            Err(_) => {
                *fd = None;
                return;
            }
        };
        let buf = std::mem::take(&mut self.buf);
        let data = &buf[..n];
        if let Some(log) = &mut self.log
            && let Err(e) = log.write(stream, Timestamp::now(), data)
        {
            tracing::warn!("{e}");
        }
        let ch = match stream {
            Stream::Stdout => channel::STDOUT,
            Stream::Stderr => channel::STDERR,
        };
        let mut i = 0;
        while i < self.clients.len() {
            Frame::encode_data(ch, data, &mut self.clients[i].out);
            if self.clients[i].out.len() > MAX_CLIENT_BACKLOG || !self.flush_client(i) {
                tracing::warn!("dropping an attach client that fell behind or went away");
                self.clients.swap_remove(i);
            } else {
                i += 1;
            }
        }
        self.buf = buf;
    }

    /// Writes what a client has pending; false when it is gone.
    fn flush_client(&mut self, i: usize) -> bool {
        let c = &mut self.clients[i];
        while !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(0) => return false,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads and handles a client's frames; false when it is gone.
    fn read_client(&mut self, i: usize) -> bool {
        let n = match self.clients[i].stream.read(&mut self.buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return true;
            }
            Err(_) => return false,
        };
        self.clients[i].decoder.push(&self.buf[..n]);
        loop {
            match self.clients[i].decoder.next_frame() {
                Ok(None) => return true,
                Ok(Some(f)) => self.frame(f),
                Err(e) => {
                    tracing::warn!("dropping an attach client: {e}");
                    return false;
                }
            }
        }
    }

    fn frame(&mut self, f: Frame) {
        match f {
            Frame::Stdin(data) if self.io.stdin_enabled && !self.stdin_close => {
                self.stdin_pending.extend_from_slice(&data);
                self.flush_stdin();
            }
            Frame::CloseStdin if self.io.stdin_enabled && !self.io.tty => {
                self.stdin_close = true;
                self.flush_stdin();
            }
            Frame::Resize { rows, cols } if self.io.tty => {
                if let Some(m) = &self.io.out
                    && let Err(e) = term::set_winsize(m.as_fd(), rows, cols)
                {
                    tracing::warn!("resize the terminal: {e}");
                }
            }
            _ => {}
        }
    }

    fn flush_stdin(&mut self) {
        let target = if self.io.tty {
            &self.io.out
        } else {
            &self.io.stdin
        };
        if let Some(fd) = target {
            while !self.stdin_pending.is_empty() {
                match rustix::io::write(fd, &self.stdin_pending) {
                    Ok(n) => {
                        self.stdin_pending.drain(..n);
                    }
                    Err(rustix::io::Errno::AGAIN) => break,
                    Err(rustix::io::Errno::INTR) => {}
                    Err(_) => {
                        // the container closed its stdin
                        self.stdin_pending.clear();
                        if !self.io.tty {
                            self.io.stdin = None;
                        }
                        break;
                    }
                }
            }
        } else {
            self.stdin_pending.clear();
        }
        if self.stdin_close && self.stdin_pending.is_empty() && !self.io.tty {
            self.io.stdin = None;
        }
    }
}
