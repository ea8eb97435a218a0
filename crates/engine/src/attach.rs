//! Attaching to a running container: its supervisor's attach socket, stdin
//! forwarded from a reader, stdout and stderr copied to writers, and the
//! local terminal in raw mode for `-t`.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kontti_supervisor::protocol::{AttachClient, Frame};

use crate::error::{EngineError, Result};

/// Connects to an attach socket (retrying briefly while the supervisor
/// comes up).
pub fn connect(socket: &Path) -> Result<AttachClient> {
    let mut last = None;
    for _ in 0..100 {
        match AttachClient::connect(socket) {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(last.map_or_else(
        || EngineError::Supervisor(format!("cannot connect to {}", socket.display())),
        EngineError::from,
    ))
}

/// How an attachment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PumpEnd {
    /// The container (or exec'd process) exited with this code.
    Exited(i32),
    /// The user typed the detach keys; the container keeps running.
    Detached,
    /// The supervisor closed the socket without an exit code.
    Closed,
}

/// docker's default detach keys: ctrl-p ctrl-q.
pub const DEFAULT_DETACH_KEYS: &[u8] = &[0x10, 0x11];

const DETACH_KEYS_HELP: &str =
    "expected comma-separated keys, each a-z or ctrl- with a-z, @, [, \\, ], ^ or _";

/// Parses docker's detach-keys format: comma-separated keys, each a letter
/// `a`-`z` (as typed) or `ctrl-X` with X one of `a`-`z`, `@`, `[`, `\`,
/// `]`, `^`, `_`. `what` names the source in errors (`--detach-keys`, or
/// the config file).
pub fn parse_detach_keys(what: &'static str, spec: &str) -> Result<Vec<u8>> {
    let bad = |reason: String| EngineError::invalid_value(what, spec, reason);
    let mut keys = Vec::new();
    for key in spec.split(',') {
        let code = match key.strip_prefix("ctrl-") {
            Some(rest) => match rest.as_bytes() {
                [c @ b'a'..=b'z'] => c - b'a' + 1,
                [b'@'] => 0,
                [c @ (b'[' | b'\\' | b']' | b'^' | b'_')] => c - b'@',
                _ => return Err(bad(format!("unknown key {key:?}: {DETACH_KEYS_HELP}"))),
            },
            None => match key.as_bytes() {
                [c @ b'a'..=b'z'] => *c,
                _ => return Err(bad(format!("unknown key {key:?}: {DETACH_KEYS_HELP}"))),
            },
        };
        keys.push(code);
    }
    Ok(keys)
}

/// The detach keys to use: `flag` (`--detach-keys`) when given, else the
/// `detachKeys` of the client config (kontti's own, `$KONTTI_AUTH_FILE` or
/// `$XDG_CONFIG_HOME/kontti/auth.json`, then docker's
/// `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), else ctrl-p
/// ctrl-q.
pub fn detach_keys(flag: Option<&str>) -> Result<Vec<u8>> {
    // docker treats an empty flag as no flag
    if let Some(f) = flag.filter(|f| !f.is_empty()) {
        return parse_detach_keys("--detach-keys", f);
    }
    for path in client_config_files() {
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(EngineError::io("read", &path, e)),
        };
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            EngineError::invalid_value(
                "client config",
                &path.display().to_string(),
                format!("not JSON: {e}"),
            )
        })?;
        if let Some(spec) = doc.get("detachKeys").and_then(|v| v.as_str()) {
            return parse_detach_keys("detachKeys", spec).map_err(|e| match e {
                EngineError::Invalid { value, reason, .. } => EngineError::Invalid {
                    what: "detachKeys",
                    value,
                    reason: format!("{reason} (in {})", path.display()),
                },
                other => other,
            });
        }
    }
    Ok(DEFAULT_DETACH_KEYS.to_vec())
}

/// kontti's client config, then docker's, where they would be.
fn client_config_files() -> Vec<std::path::PathBuf> {
    use std::path::PathBuf;
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let home = env("HOME").unwrap_or_else(|| "/root".into());
    let own = env("KONTTI_AUTH_FILE").unwrap_or_else(|| {
        env("XDG_CONFIG_HOME")
            .unwrap_or_else(|| home.join(".config"))
            .join("kontti/auth.json")
    });
    let docker = env("DOCKER_CONFIG")
        .unwrap_or_else(|| home.join(".docker"))
        .join("config.json");
    vec![own, docker]
}

/// Finds the detach keys in a stream of input: bytes that may start them
/// are held back until they do not (then passed on) or they complete.
#[derive(Debug, Clone)]
pub struct DetachMatcher {
    keys: Vec<u8>,
    /// How many bytes of `keys` the input ends with, held back.
    held: usize,
}

impl DetachMatcher {
    /// A matcher of `keys` (empty: never detaches).
    pub fn new(keys: &[u8]) -> DetachMatcher {
        DetachMatcher {
            keys: keys.to_vec(),
            held: 0,
        }
    }

    /// Appends to `out` what of `input` goes to the container; returns
    /// true when the keys were typed (`out` then holds what came before).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b != self.keys[self.held] && self.held > 0 {
                // not the keys after all: pass the held bytes on, and see
                // whether this one starts them again
                out.extend_from_slice(&self.keys[..self.held]);
                self.held = 0;
            }
            if b == self.keys[self.held] {
                self.held += 1;
                if self.held == self.keys.len() {
                    return true;
                }
            } else {
                out.push(b);
            }
        }
        false
    }
}

/// Copies the container's output to `stdout`/`stderr` and, when `stdin` is
/// given, forwards it (on a thread) until its end, then closes the
/// container's stdin. Returns the exit code, or `None` when the supervisor
/// closed the socket without one.
pub fn pump(
    client: AttachClient,
    stdin: Option<Box<dyn Read + Send>>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<Option<i32>> {
    match pump_with_detach(client, stdin, stdout, stderr, None)? {
        PumpEnd::Exited(c) => Ok(Some(c)),
        PumpEnd::Detached | PumpEnd::Closed => Ok(None),
    }
}

/// [`pump`], and with `detach_keys` typing that sequence on stdin detaches
/// (the keys are not sent; a partial match is sent once it stops matching).
pub fn pump_with_detach(
    mut client: AttachClient,
    stdin: Option<Box<dyn Read + Send>>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    detach_keys: Option<&[u8]>,
) -> Result<PumpEnd> {
    let detached = Arc::new(AtomicBool::new(false));
    if let Some(mut input) = stdin {
        let mut tx = client.try_clone()?;
        let mut matcher = DetachMatcher::new(detach_keys.unwrap_or_default());
        let flag = detached.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let mut out = Vec::with_capacity(n + 8);
                if matcher.feed(&buf[..n], &mut out) {
                    if !out.is_empty() {
                        let _ = tx.send_stdin(&out);
                    }
                    flag.store(true, Ordering::SeqCst);
                    let _ = tx.stream().shutdown(Shutdown::Both);
                    return;
                }
                if !out.is_empty() && tx.send_stdin(&out).is_err() {
                    return;
                }
            }
            let _ = tx.close_stdin();
        });
    }
    let mut write_err = None;
    let code = client.copy_until_exit(|f| {
        let r = match f {
            Frame::Stdout(d) => stdout.write_all(d).and_then(|()| stdout.flush()),
            Frame::Stderr(d) => stderr.write_all(d).and_then(|()| stderr.flush()),
            _ => Ok(()),
        };
        if let Err(e) = r {
            write_err.get_or_insert(e);
        }
    });
    if detached.load(Ordering::SeqCst) {
        return Ok(PumpEnd::Detached);
    }
    if let Some(e) = write_err {
        tracing::debug!(error = %e, "writing attached output");
    }
    Ok(match code? {
        Some(c) => PumpEnd::Exited(c),
        None => PumpEnd::Closed,
    })
}

/// The size (rows, cols) of the terminal on `fd`, if it is one.
pub fn terminal_size(fd: impl AsFd) -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(fd).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The local terminal in raw mode until dropped.
pub struct RawTerminal<F: AsFd> {
    fd: F,
    saved: rustix::termios::Termios,
}

impl<F: AsFd> RawTerminal<F> {
    /// Puts the terminal on `fd` in raw mode.
    pub fn enable(fd: F) -> Result<RawTerminal<F>> {
        let saved = rustix::termios::tcgetattr(&fd)
            .map_err(|e| EngineError::io("read terminal settings of", "stdin", e.into()))?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &raw)
            .map_err(|e| EngineError::io("set raw mode on", "stdin", e.into()))?;
        Ok(RawTerminal { fd, saved })
    }
}

impl<F: AsFd> Drop for RawTerminal<F> {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            &self.fd,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_found_in_the_input_stream() {
        let run = |keys: &[u8], chunks: &[&[u8]]| {
            let mut m = DetachMatcher::new(keys);
            let mut out = Vec::new();
            for c in chunks {
                if m.feed(c, &mut out) {
                    return (out, true);
                }
            }
            (out, false)
        };
        let keys = [0x18, b'x']; // ctrl-x,x
        assert_eq!(run(&keys, &[b"ab\x18x"]), (b"ab".to_vec(), true));
        assert_eq!(run(&keys, &[b"a\x18", b"xrest"]), (b"a".to_vec(), true));
        assert_eq!(run(&keys, &[b"\x18y"]), (b"\x18y".to_vec(), false));
        assert_eq!(run(&keys, &[b"\x18\x18x"]), (b"\x18".to_vec(), true));
        assert_eq!(
            run(&keys, &[b"xx\x10\x11"]),
            (b"xx\x10\x11".to_vec(), false)
        );
        // a held prefix stays held until it is decided
        assert_eq!(run(&keys, &[b"a\x18"]), (b"a".to_vec(), false));
        assert_eq!(run(&[], &[b"\x10\x11"]), (b"\x10\x11".to_vec(), false));
        assert_eq!(
            run(DEFAULT_DETACH_KEYS, &[b"\x10", b"\x11"]),
            (Vec::new(), true)
        );
    }

    #[test]
    fn detach_keys_parse_as_dockers() {
        let p = |s: &str| parse_detach_keys("--detach-keys", s);
        assert_eq!(p("ctrl-p,ctrl-q").unwrap(), DEFAULT_DETACH_KEYS);
        assert_eq!(p("ctrl-x,x").unwrap(), [0x18, b'x']);
        assert_eq!(
            p("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_,ctrl-a,ctrl-z").unwrap(),
            [0, 27, 28, 29, 30, 31, 1, 26]
        );
        for bad in [
            "", "ctrl-", "ctrl-1", "ctrl-P", "X", "ab", "a,,b", "alt-x", "ctrl-p,",
        ] {
            let e = p(bad).unwrap_err();
            assert_eq!(e.kind(), kontti_core::ErrorKind::Invalid, "{bad}");
            assert!(e.to_string().contains("--detach-keys"), "{e}");
        }
    }
}
