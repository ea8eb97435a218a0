//! The message channel between the runtime and the container init: a
//! `SOCK_SEQPACKET` pair, one message per read. The init's end is
//! close-on-exec, so the runtime sees end-of-file once the user process has
//! been exec'd.
//!
//! Messages are a tag byte and a payload:
//! runtime → init: `G` go (cgroup joined, id maps written), `C` + state JSON
//! (continue after createRuntime hooks), `S` start (when no FIFO is used);
//! init → runtime: `P` + pid (from the intermediate process when joining
//! namespaces), `H` ready for createRuntime hooks, `R` created, `E` + kind
//! byte + message (a setup error).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use kontti_core::ErrorKind;

use crate::error::{RuntimeError, kind_from_byte, kind_to_byte};

/// One end of the channel.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

/// A message received.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Tag and payload.
    Data(u8, Vec<u8>),
    /// The other end closed (exited or exec'd).
    Eof,
}

impl Channel {
    /// A connected pair: (runtime end, init end).
    pub fn pair() -> io::Result<(Channel, Channel)> {
        let (a, b) = crate::sys::term::seqpacket_pair()?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Sends a tagged message.
    pub fn send(&self, tag: u8, payload: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 + payload.len());
        buf.push(tag);
        buf.extend_from_slice(payload);
        crate::sys::term::write_msg(self.fd.as_fd(), &buf)
    }

    /// Receives one message.
    pub fn recv(&self) -> io::Result<Msg> {
        // messages are small (a tag, a pid, a state JSON); peek at the size
        // so that a large state (many annotations) still fits
        let mut buf = vec![
            0u8;
            crate::sys::term::next_msg_len(self.fd.as_fd())
                .unwrap_or(4096)
                .max(1)
        ];
        loop {
            // read(2) on a seqpacket socket returns exactly one message
            match crate::sys::term::read(self.fd.as_fd(), &mut buf) {
                Ok(0) => return Ok(Msg::Eof),
                Ok(n) => return Ok(Msg::Data(buf[0], buf[1..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.raw_os_error() == Some(libc::ECONNRESET) => return Ok(Msg::Eof),
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends an error (init side).
    pub fn send_error(&self, e: &RuntimeError) {
        let mut p = vec![kind_to_byte(e.kind())];
        p.extend_from_slice(e.to_string().as_bytes());
        let _ = self.send(b'E', &p);
    }

    /// Decodes an `E` payload.
    pub fn decode_error(payload: &[u8]) -> RuntimeError {
        let kind = payload
            .first()
            .map_or(ErrorKind::Internal, |b| kind_from_byte(*b));
        let message = String::from_utf8_lossy(payload.get(1..).unwrap_or(&[])).into_owned();
        RuntimeError::Init { message, kind }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_boundaries_and_eof_is_seen() {
        let (a, b) = Channel::pair().unwrap();
        a.send(b'G', b"").unwrap();
        a.send(b'C', b"{}").unwrap();
        assert_eq!(b.recv().unwrap(), Msg::Data(b'G', vec![]));
        assert_eq!(b.recv().unwrap(), Msg::Data(b'C', b"{}".to_vec()));
        drop(a);
        assert_eq!(b.recv().unwrap(), Msg::Eof);
    }

    #[test]
    fn errors_round_trip() {
        let (a, b) = Channel::pair().unwrap();
        b.send_error(&RuntimeError::Invalid("process.cwd: x".into()));
        let Msg::Data(b'E', p) = a.recv().unwrap() else {
            panic!()
        };
        let e = Channel::decode_error(&p);
        assert_eq!(e.kind(), ErrorKind::Invalid);
        assert!(e.to_string().contains("process.cwd: x"));
    }
}
