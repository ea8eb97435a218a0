//! The records file: the names of a network's containers and their addresses.

use std::fs::{self, File};
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One container's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The container's name.
    pub name: String,
    /// More names for it (`--network-alias`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Its address on the network.
    pub ipv4: Ipv4Addr,
}

/// The file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordsFile {
    /// Every container of the network.
    pub records: Vec<Record>,
}

impl RecordsFile {
    /// Reads the file.
    pub fn load(path: &Path) -> io::Result<RecordsFile> {
        let bytes = fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Replaces the file atomically (write a sibling, then rename). Not
    /// synced to disk: the file is derived from the network's state and
    /// rewritten on every change.
    pub fn store(&self, path: &Path) -> io::Result<()> {
        let tmp = tmp_sibling(path);
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        fs::rename(&tmp, path)
    }

    /// The addresses of `name` (a container name or alias, any case).
    pub fn lookup(&self, name: &str) -> Vec<Ipv4Addr> {
        self.records
            .iter()
            .filter(|r| {
                r.name.eq_ignore_ascii_case(name)
                    || r.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
            })
            .map(|r| r.ipv4)
            .collect()
    }

    /// The container name holding `ip`.
    pub fn reverse(&self, ip: Ipv4Addr) -> Option<&str> {
        self.records
            .iter()
            .find(|r| r.ipv4 == ip)
            .map(|r| r.name.as_str())
    }
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A records file and the identity of the version last read, so that a
/// rewritten file is noticed with one `stat`.
#[derive(Debug)]
pub(crate) struct WatchedRecords {
    path: PathBuf,
    stamp: Option<(u64, i64, i64)>,
    pub(crate) current: RecordsFile,
}

impl WatchedRecords {
    pub(crate) fn new(path: &Path) -> WatchedRecords {
        WatchedRecords {
            path: path.to_owned(),
            stamp: None,
            current: RecordsFile::default(),
        }
    }

    /// Reloads the file if it was replaced or changed since the last read. A
    /// missing or unreadable file keeps the last good records.
    pub(crate) fn refresh(&mut self) {
        let Ok(meta) = fs::metadata(&self.path) else {
            return;
        };
        let stamp = (meta.ino(), meta.mtime(), meta.mtime_nsec());
        if self.stamp == Some(stamp) {
            return;
        }
        match RecordsFile::load(&self.path) {
            Ok(r) => {
                self.current = r;
                self.stamp = Some(stamp);
                tracing::debug!(path = %self.path.display(), "records reloaded");
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "records file unreadable")
            }
        }
    }
}
