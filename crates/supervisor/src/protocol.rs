//! The attach protocol: frames on a unix stream socket between an attach
//! client and a supervisor.
//!
//! A frame is 1 byte of channel, 4 bytes of big-endian payload length, and
//! the payload (at most [`MAX_PAYLOAD`]). Channels: 0 stdin, 5 close-stdin
//! and 3 resize (rows u16 BE, cols u16 BE) go from the client to the
//! supervisor; 1 stdout, 2 stderr and 4 exit (i32 BE exit code) go the other
//! way. [`Decoder`] parses frames out of bytes as they arrive (the
//! supervisor's non-blocking side); [`read_frame`], [`write_frame`] and
//! [`AttachClient`] are the blocking side.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use kontti_core::ErrorKind;

/// The largest payload a frame may carry (1 MiB).
pub const MAX_PAYLOAD: usize = 1 << 20;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const RESIZE: u8 = 3;
const EXIT: u8 = 4;
const CLOSE_STDIN: u8 = 5;

/// One frame of the attach protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes for the container's stdin (client → supervisor).
    Stdin(Vec<u8>),
    /// Bytes the container wrote to stdout, or to its terminal.
    Stdout(Vec<u8>),
    /// Bytes the container wrote to stderr.
    Stderr(Vec<u8>),
    /// A new terminal size (client → supervisor).
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// The container's exit code, the last frame (supervisor → client).
    Exit(i32),
    /// No more stdin (client → supervisor).
    CloseStdin,
}

/// What can go wrong reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// A frame announced a payload above [`MAX_PAYLOAD`].
    #[error("attach protocol: frame payload of {0} bytes exceeds the 1 MiB limit")]
    TooLarge(usize),
    /// An unknown channel byte.
    #[error("attach protocol: unknown channel {0}")]
    UnknownChannel(u8),
    /// A resize, exit or close-stdin frame whose payload has the wrong size.
    #[error("attach protocol: {channel} frame with a payload of {len} bytes")]
    BadPayload {
        /// The frame's kind.
        channel: &'static str,
        /// The payload's size.
        len: usize,
    },
    /// The socket failed.
    #[error("attach socket {path}: {source}")]
    Io {
        /// The socket, or `stream` for an anonymous one.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

impl ProtocolError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ProtocolError::Io { source, .. } => match source.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
                _ => ErrorKind::Unavailable,
            },
            _ => ErrorKind::Invalid,
        }
    }
}

fn io_err(source: io::Error) -> ProtocolError {
    ProtocolError::Io {
        path: "stream".into(),
        source,
    }
}

impl Frame {
    /// Appends the frame's encoding to `out`. Payloads above
    /// [`MAX_PAYLOAD`] are refused: split them with [`Frame::data`].
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let (ch, payload): (u8, &[u8]) = match self {
            Frame::Stdin(b) => (STDIN, b),
            Frame::Stdout(b) => (STDOUT, b),
            Frame::Stderr(b) => (STDERR, b),
            Frame::CloseStdin => (CLOSE_STDIN, &[]),
            Frame::Resize { rows, cols } => {
                out.push(RESIZE);
                out.extend_from_slice(&4u32.to_be_bytes());
                out.extend_from_slice(&rows.to_be_bytes());
                out.extend_from_slice(&cols.to_be_bytes());
                return Ok(());
            }
            Frame::Exit(code) => {
                out.push(EXIT);
                out.extend_from_slice(&4u32.to_be_bytes());
                out.extend_from_slice(&code.to_be_bytes());
                return Ok(());
            }
        };
        if payload.len() > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(payload.len()));
        }
        out.push(ch);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        Ok(())
    }

    /// The frame's encoding.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let mut v = Vec::new();
        self.encode_into(&mut v)?;
        Ok(v)
    }

    /// Encodes data of channel `ch` (1 stdout, 2 stderr, 0 stdin) split into
    /// frames of at most [`MAX_PAYLOAD`] bytes.
    pub fn encode_data(ch: u8, data: &[u8], out: &mut Vec<u8>) {
        for chunk in data.chunks(MAX_PAYLOAD) {
            out.push(ch);
            out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            out.extend_from_slice(chunk);
        }
    }

    fn decode(ch: u8, payload: Vec<u8>) -> Result<Frame, ProtocolError> {
        let fixed = |name, want: usize| {
            if payload.len() == want {
                Ok(())
            } else {
                Err(ProtocolError::BadPayload {
                    channel: name,
                    len: payload.len(),
                })
            }
        };
        Ok(match ch {
            STDIN => Frame::Stdin(payload),
            STDOUT => Frame::Stdout(payload),
            STDERR => Frame::Stderr(payload),
            RESIZE => {
                fixed("resize", 4)?;
                Frame::Resize {
                    rows: u16::from_be_bytes([payload[0], payload[1]]),
                    cols: u16::from_be_bytes([payload[2], payload[3]]),
                }
            }
            EXIT => {
                fixed("exit", 4)?;
                Frame::Exit(i32::from_be_bytes([
                    payload[0], payload[1], payload[2], payload[3],
                ]))
            }
            CLOSE_STDIN => {
                fixed("close-stdin", 0)?;
                Frame::CloseStdin
            }
            other => return Err(ProtocolError::UnknownChannel(other)),
        })
    }
}

/// Data channel numbers for [`Frame::encode_data`].
pub mod channel {
    /// stdin.
    pub const STDIN: u8 = super::STDIN;
    /// stdout (and a terminal's output).
    pub const STDOUT: u8 = super::STDOUT;
    /// stderr.
    pub const STDERR: u8 = super::STDERR;
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>, ProtocolError> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io_err(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(ProtocolError::TooLarge(len));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).map_err(io_err)?;
    Frame::decode(head[0], payload).map(Some)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, frame: &Frame) -> Result<(), ProtocolError> {
    let buf = frame.encode()?;
    w.write_all(&buf).map_err(io_err)
}

/// Parses frames from bytes as they arrive, for a non-blocking reader.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds received bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete frame, if one has arrived. An error means the peer
    /// speaks something else: drop it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProtocolError> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge(len));
        }
        if self.buf.len() < 5 + len {
            return Ok(None);
        }
        let ch = self.buf[0];
        let payload = self.buf[5..5 + len].to_vec();
        self.buf.drain(..5 + len);
        Frame::decode(ch, payload).map(Some)
    }
}

/// A blocking attach client.
#[derive(Debug)]
pub struct AttachClient {
    stream: UnixStream,
}

impl AttachClient {
    /// Connects to a supervisor's `attach.sock` (or an exec socket); paths
    /// longer than a socket address takes are fine.
    pub fn connect(path: &Path) -> Result<AttachClient, ProtocolError> {
        let stream = crate::sockpath::connect(path).map_err(|source| ProtocolError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(AttachClient { stream })
    }

    /// Sends bytes to the container's stdin (split into frames as needed).
    pub fn send_stdin(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let mut buf = Vec::with_capacity(data.len() + 5);
        Frame::encode_data(STDIN, data, &mut buf);
        self.stream.write_all(&buf).map_err(io_err)
    }

    /// Tells the supervisor there is no more stdin.
    pub fn close_stdin(&mut self) -> Result<(), ProtocolError> {
        write_frame(&mut self.stream, &Frame::CloseStdin)
    }

    /// Sets the container's terminal size.
    pub fn resize(&mut self, rows: u16, cols: u16) -> Result<(), ProtocolError> {
        write_frame(&mut self.stream, &Frame::Resize { rows, cols })
    }

    /// The next frame from the supervisor; `None` when it closed the socket.
    pub fn recv(&mut self) -> Result<Option<Frame>, ProtocolError> {
        read_frame(&mut self.stream)
    }

    /// A second handle on the socket, e.g. for a thread that sends stdin
    /// while another receives.
    pub fn try_clone(&self) -> Result<AttachClient, ProtocolError> {
        Ok(AttachClient {
            stream: self.stream.try_clone().map_err(io_err)?,
        })
    }

    /// The underlying socket (for timeouts or polling).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Receives until the exit frame, passing stdout and stderr to `out`;
    /// returns the exit code, or `None` if the socket closed without one.
    pub fn copy_until_exit(
        &mut self,
        mut out: impl FnMut(&Frame),
    ) -> Result<Option<i32>, ProtocolError> {
        while let Some(f) = self.recv()? {
            if let Frame::Exit(code) = f {
                return Ok(Some(code));
            }
            out(&f);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Stdin(b"in".to_vec()),
            Frame::Stdout(b"hello\n".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Resize {
                rows: 40,
                cols: 132,
            },
            Frame::Exit(-3),
            Frame::Exit(137),
            Frame::CloseStdin,
        ]
    }

    #[test]
    fn frames_round_trip_through_read_and_decoder() {
        let mut wire = Vec::new();
        for f in all_frames() {
            write_frame(&mut wire, &f).unwrap();
        }
        let mut r = wire.as_slice();
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut r).unwrap() {
            got.push(f);
        }
        assert_eq!(got, all_frames());
        // byte by byte through the decoder
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for b in &wire {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, all_frames());
    }

    #[test]
    fn wire_format_is_channel_length_payload() {
        assert_eq!(
            Frame::Resize { rows: 1, cols: 2 }.encode().unwrap(),
            [3, 0, 0, 0, 4, 0, 1, 0, 2]
        );
        assert_eq!(
            Frame::Exit(1).encode().unwrap(),
            [4, 0, 0, 0, 4, 0, 0, 0, 1]
        );
        assert_eq!(
            Frame::Stdout(b"a".to_vec()).encode().unwrap(),
            [1, 0, 0, 0, 1, b'a']
        );
    }

    /// Random bytes never make the decoder panic or return a frame over
    /// the limit, and it never holds more than one frame's worth of input
    /// it could not judge.
    #[test]
    fn random_input_is_handled_without_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 64) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // small channels and lengths now and then, so frames do complete
            if len >= 5 && next() % 2 == 0 {
                bytes[0] %= 6;
                bytes[1..4].fill(0);
                bytes[4] %= 16;
            }
            let mut d = Decoder::default();
            d.push(&bytes);
            while let Ok(Some(f)) = d.next_frame() {
                if let Frame::Stdin(p) | Frame::Stdout(p) | Frame::Stderr(p) = f {
                    assert!(p.len() <= MAX_PAYLOAD);
                }
            }
            let _ = read_frame(&mut bytes.as_slice());
        }
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            Frame::Stdout(big.clone()).encode(),
            Err(ProtocolError::TooLarge(_))
        ));
        let mut split = Vec::new();
        Frame::encode_data(1, &big, &mut split);
        let mut r = split.as_slice();
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some(Frame::Stdout(vec![0; MAX_PAYLOAD]))
        );
        assert_eq!(read_frame(&mut r).unwrap(), Some(Frame::Stdout(vec![0])));

        let huge = [1u8, 0, 0x10, 0, 1];
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(ProtocolError::TooLarge(_))
        ));
        let mut d = Decoder::default();
        d.push(&huge);
        assert!(matches!(d.next_frame(), Err(ProtocolError::TooLarge(_))));
        assert!(matches!(
            read_frame(&mut &[9u8, 0, 0, 0, 0][..]),
            Err(ProtocolError::UnknownChannel(9))
        ));
        assert!(matches!(
            read_frame(&mut &[3u8, 0, 0, 0, 1, 7][..]),
            Err(ProtocolError::BadPayload {
                channel: "resize",
                len: 1
            })
        ));
        assert!(matches!(
            read_frame(&mut &[1u8, 0, 0, 0, 3, 7][..]),
            Err(ProtocolError::Io { .. })
        ));
        assert!(read_frame(&mut &[1u8, 0][..]).is_err());
        assert_eq!(read_frame(&mut &[][..]).unwrap(), None);
    }
}
