//! Container logs in the CRI format, as kubelet reads them:
//! `2026-11-29T17:00:00.123456789Z stdout F text` per line, where `F` ends a
//! line and `P` is a part of a line that goes on in the next entry.
//!
//! [`LogWriter`] turns a stream of output into entries: a line longer than
//! [`MAX_LINE`] becomes `P` parts, a line cut by the container's exit is
//! written as a `P` part by [`LogWriter::finish`]. With a size limit it
//! rotates: `container.log` → `container.log.1` → ... up to `max_files`
//! files in all (docker's `max-file` counts the live file too).
//! [`read_lines`] reads the rotated files and the live one, oldest first,
//! with `since` and `tail`; [`Follower`] picks up what is appended later,
//! following rotations.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use kontti_core::ErrorKind;

use crate::timestamp::Timestamp;

/// The longest line written as one entry; longer ones are split into `P`
/// parts of this size (as containerd does).
pub const MAX_LINE: usize = 16 * 1024;

/// Which of the container's outputs an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output (and a terminal's output).
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One entry of a CRI log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the supervisor read it.
    pub time: Timestamp,
    /// Where it came from.
    pub stream: Stream,
    /// A part of a line that continues in a later entry (`P`).
    pub partial: bool,
    /// The text, without the newline.
    pub text: Vec<u8>,
}

impl LogLine {
    /// Parses one line of a CRI log (without its newline).
    pub fn parse(line: &[u8]) -> Option<LogLine> {
        let mut parts = line.splitn(4, |b| *b == b' ');
        let time = Timestamp::parse(std::str::from_utf8(parts.next()?).ok()?)?;
        let stream = match parts.next()? {
            b"stdout" => Stream::Stdout,
            b"stderr" => Stream::Stderr,
            _ => return None,
        };
        let tag = parts.next()?;
        let partial = match tag.split(|b| *b == b':').next()? {
            b"P" => true,
            b"F" => false,
            _ => return None,
        };
        Some(LogLine {
            time,
            stream,
            partial,
            text: parts.next().unwrap_or_default().to_vec(),
        })
    }

    /// The entry as a line of the log, with its newline.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.text.len() + 48);
        encode_entry(&mut v, self.time, self.stream, self.partial, &self.text);
        v
    }
}

fn encode_entry(out: &mut Vec<u8>, time: Timestamp, stream: Stream, partial: bool, text: &[u8]) {
    // writing to a Vec cannot fail
    let _ = write!(
        out,
        "{time} {} {} ",
        stream.as_str(),
        if partial { 'P' } else { 'F' }
    );
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// A log file cannot be opened, written, rotated or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file operation failed.
    #[error("log {path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
}

impl LogError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        let LogError::Io { source, .. } = self;
        match source.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
            _ => ErrorKind::Internal,
        }
    }
}

fn err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> LogError + 'a {
    move |source| LogError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// The path of the `n`th rotated file (`container.log.n`).
pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(err(path, "open"))
}

/// Writes a container's output as CRI log entries, rotating by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    max_size: Option<u64>,
    max_files: u32,
    file: File,
    size: u64,
    /// The unfinished line of each stream.
    pending: [Vec<u8>; 2],
    out: Vec<u8>,
}

impl LogWriter {
    /// Opens (appending to) `path`, created 0600. With `max_size`, the file
    /// is rotated before an entry would take it past that size, keeping
    /// `max_files` files in all (at least 1: then the file is truncated).
    pub fn open(path: &Path, max_size: Option<u64>, max_files: u32) -> Result<LogWriter, LogError> {
        let file = open_append(path)?;
        let size = file.metadata().map_err(err(path, "stat"))?.len();
        Ok(LogWriter {
            path: path.to_owned(),
            max_size,
            max_files: max_files.max(1),
            file,
            size,
            pending: [Vec::new(), Vec::new()],
            out: Vec::new(),
        })
    }

    /// Adds output of `stream` read at `time`: every completed line becomes
    /// an `F` entry, an unfinished one waits for its end (or for
    /// [`MAX_LINE`] bytes, which make a `P` entry).
    pub fn write(
        &mut self,
        stream: Stream,
        time: Timestamp,
        mut data: &[u8],
    ) -> Result<(), LogError> {
        let i = stream.index();
        while !data.is_empty() {
            let room = MAX_LINE - self.pending[i].len();
            match data.iter().take(room).position(|b| *b == b'\n') {
                Some(nl) => {
                    let mut line = std::mem::take(&mut self.pending[i]);
                    line.extend_from_slice(&data[..nl]);
                    self.entry(time, stream, false, &line)?;
                    line.clear();
                    self.pending[i] = line;
                    data = &data[nl + 1..];
                }
                None if data.len() >= room => {
                    let mut line = std::mem::take(&mut self.pending[i]);
                    line.extend_from_slice(&data[..room]);
                    self.entry(time, stream, true, &line)?;
                    line.clear();
                    self.pending[i] = line;
                    data = &data[room..];
                }
                None => {
                    self.pending[i].extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// Writes the unfinished lines as `P` entries (the container exited in
    /// the middle of a line).
    pub fn finish(&mut self, time: Timestamp) -> Result<(), LogError> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let line = std::mem::take(&mut self.pending[stream.index()]);
            if !line.is_empty() {
                self.entry(time, stream, true, &line)?;
            }
        }
        Ok(())
    }

    fn entry(
        &mut self,
        time: Timestamp,
        stream: Stream,
        partial: bool,
        text: &[u8],
    ) -> Result<(), LogError> {
        self.out.clear();
        encode_entry(&mut self.out, time, stream, partial, text);
        let len = self.out.len() as u64;
        if let Some(max) = self.max_size
            && self.size > 0
            && self.size + len > max
        {
            self.rotate()?;
        }
        self.file
            .write_all(&self.out)
            .map_err(err(&self.path, "write"))?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        if self.max_files <= 1 {
            self.file.set_len(0).map_err(err(&self.path, "truncate"))?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.max_files - 1).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                let to = rotated_path(&self.path, n + 1);
                std::fs::rename(&from, &to).map_err(err(&from, "rotate"))?;
            }
        }
        let first = rotated_path(&self.path, 1);
        std::fs::rename(&self.path, &first).map_err(err(&self.path, "rotate"))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// The files of a log, oldest first: `path.N`, ..., `path.1`, `path`.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut n = 1;
    loop {
        let p = rotated_path(path, n);
        if !p.exists() {
            break;
        }
        files.push(p);
        n += 1;
    }
    files.reverse();
    files.push(path.to_owned());
    files
}

fn parse_all(data: &[u8], out: &mut Vec<LogLine>) {
    for raw in data.split(|b| *b == b'\n') {
        if raw.is_empty() {
            continue;
        }
        match LogLine::parse(raw) {
            Some(l) => out.push(l),
            None => tracing::debug!("skipping a malformed log line"),
        }
    }
}

/// Reads a log with its rotated files, oldest first. `since` keeps entries
/// at or after a time; `tail` keeps the last `n` lines (a line's `P` parts
/// go with it). A missing live file reads as empty.
pub fn read_lines(
    path: &Path,
    tail: Option<usize>,
    since: Option<Timestamp>,
) -> Result<Vec<LogLine>, LogError> {
    let mut lines = Vec::new();
    for f in log_files(path) {
        let data = match std::fs::read(&f) {
            Ok(d) => d,
            // rotated away between listing and reading
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(err(&f, "read")(e)),
        };
        // only complete lines: the writer may be in the middle of one
        let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        parse_all(&data[..end], &mut lines);
    }
    if let Some(since) = since {
        lines.retain(|l| l.time >= since);
    }
    if let Some(n) = tail {
        let start = tail_start(&lines, n);
        lines.drain(..start);
    }
    Ok(lines)
}

/// The index from which the last `n` lines start.
fn tail_start(lines: &[LogLine], n: usize) -> usize {
    if n == 0 {
        return lines.len();
    }
    // a trailing run of parts is a line cut at exit
    let mut ends = usize::from(lines.last().is_some_and(|l| l.partial));
    for (i, l) in lines.iter().enumerate().rev() {
        if !l.partial {
            if ends == n {
                return i + 1;
            }
            ends += 1;
        }
    }
    0
}

/// Follows a live log: each [`Follower::poll`] returns the entries appended
/// since the last one, across rotations (the rest of the rotated file is read
/// before the new live file). To show history and then follow without a
/// gap, create the follower first, then [`read_lines`] (an entry written in
/// between may then show twice, never not at all).
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    file: Option<(File, u64)>,
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at the current end of the live file (or at the start of a
    /// file created later).
    pub fn at_end(path: &Path) -> Result<Follower, LogError> {
        let file = match File::open(path) {
            Ok(mut f) => {
                let ino = f.metadata().map_err(err(path, "stat"))?.ino();
                f.seek(SeekFrom::End(0)).map_err(err(path, "seek"))?;
                Some((f, ino))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(err(path, "open")(e)),
        };
        Ok(Follower {
            path: path.to_owned(),
            file,
            partial: Vec::new(),
        })
    }

    /// The entries appended since the last call (possibly none).
    pub fn poll(&mut self) -> Result<Vec<LogLine>, LogError> {
        let mut out = Vec::new();
        // bounded: a writer rotating faster than we read cannot loop us
        for _ in 0..4 {
            if self.file.is_none() {
                match File::open(&self.path) {
                    Ok(f) => {
                        let ino = f.metadata().map_err(err(&self.path, "stat"))?.ino();
                        self.file = Some((f, ino));
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(err(&self.path, "open")(e)),
                }
            }
            let Some((f, ino)) = self.file.as_mut() else {
                return Ok(out);
            };
            let pos = f.stream_position().map_err(err(&self.path, "seek"))?;
            if f.metadata().map_err(err(&self.path, "stat"))?.len() < pos {
                // truncated in place (max-file 1)
                f.seek(SeekFrom::Start(0))
                    .map_err(err(&self.path, "seek"))?;
                self.partial.clear();
            }
            let mut data = std::mem::take(&mut self.partial);
            f.read_to_end(&mut data).map_err(err(&self.path, "read"))?;
            let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
            parse_all(&data[..end], &mut out);
            self.partial = data[end..].to_vec();
            let current = match std::fs::metadata(&self.path) {
                Ok(m) => Some(m.ino()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(err(&self.path, "stat")(e)),
            };
            if current == Some(*ino) {
                return Ok(out);
            }
            // rotated: what we had is drained, go on with the new live file
            self.file = None;
            self.partial.clear();
        }
        Ok(out)
    }
}

#[cfg(test)]
#[path = "crilog_tests.rs"]
mod tests;
