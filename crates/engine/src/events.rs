//! `kontti events`: what happened to containers, appended to
//! `R/events.jsonl` (one JSON object per line, each line written with one
//! `write` on an `O_APPEND` file, so concurrent writers do not interleave),
//! rotated once into `events.jsonl.1` past 1 MiB.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::container::ContainerRecord;
use crate::error::{EngineError, Result};

const FILE: &str = "events.jsonl";
const MAX_SIZE: u64 = 1 << 20;

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Nanoseconds since the Unix epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i128,
    /// Always `container` for now.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `oom`, `kill`, `stop`, `pause`, `unpause`,
    /// `rename`, `destroy`.
    #[serde(rename = "Action")]
    pub action: String,
    /// The container id.
    pub id: String,
    /// Its name, image and action details (`exitCode`, `signal`, ...).
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

fn path(root: &Path) -> PathBuf {
    root.join(FILE)
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Appends an event for `rec`; failures are logged, never fatal.
pub fn record(root: &Path, rec: &ContainerRecord, action: &str, extra: &[(&str, String)]) {
    let mut attributes = BTreeMap::from([
        ("name".to_owned(), rec.name.clone()),
        ("image".to_owned(), rec.image.clone()),
    ]);
    for (k, v) in extra {
        attributes.insert((*k).to_owned(), v.clone());
    }
    let ev = Event {
        time_nano: now_nanos(),
        kind: "container".into(),
        action: action.into(),
        id: rec.id.clone(),
        attributes,
    };
    if let Err(e) = append(root, &ev) {
        tracing::warn!(error = %e, "recording event {action}");
    }
}

fn append(root: &Path, ev: &Event) -> std::io::Result<()> {
    let p = path(root);
    if std::fs::metadata(&p).is_ok_and(|m| m.len() > MAX_SIZE) {
        let _ = std::fs::rename(&p, root.join(format!("{FILE}.1")));
    }
    let mut line = serde_json::to_vec(ev).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)?;
    f.write_all(&line)
}

fn parse(data: &[u8], since: Option<i128>, until: Option<i128>, out: &mut Vec<Event>) {
    for l in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if let Ok(ev) = serde_json::from_slice::<Event>(l)
            && since.is_none_or(|s| ev.time_nano >= s)
            && until.is_none_or(|u| ev.time_nano <= u)
        {
            out.push(ev);
        }
    }
}

/// Events between `since` and `until` (nanoseconds), oldest first.
pub fn read(root: &Path, since: Option<i128>, until: Option<i128>) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    for p in [root.join(format!("{FILE}.1")), path(root)] {
        match std::fs::read(&p) {
            Ok(d) => parse(&d, since, until, &mut out),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(EngineError::io("read", &p, e)),
        }
    }
    Ok(out)
}

/// Follows the events file from its current end.
#[derive(Debug)]
pub struct EventFollower {
    path: PathBuf,
    offset: u64,
}

impl EventFollower {
    /// Starts at the end of the file.
    pub fn at_end(root: &Path) -> EventFollower {
        let path = path(root);
        let offset = std::fs::metadata(&path).map_or(0, |m| m.len());
        EventFollower { path, offset }
    }

    /// Events appended since the last call.
    pub fn poll(&mut self) -> Result<Vec<Event>> {
        let mut f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(EngineError::io("open", &self.path, e)),
        };
        let len = f
            .metadata()
            .map_err(|e| EngineError::io("stat", &self.path, e))?
            .len();
        if len < self.offset {
            self.offset = 0; // rotated
        }
        f.seek(SeekFrom::Start(self.offset))
            .map_err(|e| EngineError::io("seek", &self.path, e))?;
        let mut data = Vec::new();
        f.read_to_end(&mut data)
            .map_err(|e| EngineError::io("read", &self.path, e))?;
        let end = data.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        self.offset += end as u64;
        let mut out = Vec::new();
        parse(&data[..end], None, None, &mut out);
        Ok(out)
    }
}
