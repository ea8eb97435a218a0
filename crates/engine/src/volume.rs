//! Volumes: directories under `R/volumes` that outlive containers.
//!
//! Vocabulary:
//! * a **named volume** is created by `volume create NAME` or by the first
//!   `-v NAME:/path`; an **anonymous volume** has a random 64-hex name and is
//!   created for `-v /path` and for an image's `VOLUME`;
//! * a volume's **users** are the containers that mount it: a container
//!   acquires each volume when it is created and releases it when it is
//!   removed. A user whose directory `R/containers/<id>` is gone (a container
//!   removed without releasing, after a crash) no longer holds the volume.
//!
//! Layout: `R/volumes/<name>/_data` (the mount point) and
//! `R/volumes/<name>/volume.json` (labels, creation time, users). Changes are
//! serialised across processes by a lock on `R/volumes/.lock`; a volume
//! appears (a prepared directory renamed into place) and disappears (renamed
//! away, then deleted) atomically, and `volume.json` is replaced by rename,
//! so readers never see half a volume.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use kontti_core::ErrorKind;
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

/// Volume failures, as users see them.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A name outside `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (docker's rule), or
    /// longer than 255 bytes.
    #[error(
        "invalid volume name {0:?}: use at least 2 letters, digits, '_', '.', '-', starting with a letter or digit"
    )]
    InvalidName(String),
    /// A `--label` that is not `KEY[=VALUE]` with a non-empty key.
    #[error("invalid label {0:?}: expected KEY=VALUE")]
    InvalidLabel(String),
    /// A container id that cannot name a user (it must be a path component).
    #[error("invalid container id {0:?}")]
    InvalidContainer(String),
    /// A `volume ls --filter` that is not one of docker's.
    #[error(
        "invalid filter {0:?}: expected dangling=true|false, label=KEY[=VALUE], name=PART or driver=local"
    )]
    InvalidFilter(String),
    /// A volume driver other than `local`.
    #[error("volume driver {0:?} is not supported: kontti has the local driver only")]
    UnsupportedDriver(String),
    /// No volume of that name.
    #[error("no such volume: {0}")]
    NotFound(String),
    /// Containers still use the volume.
    #[error("volume {name} is in use by container {containers}")]
    InUse {
        /// The volume.
        name: String,
        /// The containers using it, comma-separated (short ids).
        containers: String,
    },
    /// `volume.json` does not parse.
    #[error("corrupt volume record {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// A filesystem call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

impl VolumeError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::InvalidName(_)
            | VolumeError::InvalidLabel(_)
            | VolumeError::InvalidContainer(_)
            | VolumeError::InvalidFilter(_)
            | VolumeError::UnsupportedDriver(_) => ErrorKind::Invalid,
            VolumeError::NotFound(_) => ErrorKind::NotFound,
            VolumeError::InUse { .. } => ErrorKind::Conflict,
            VolumeError::Corrupt { .. } | VolumeError::Io { .. } => ErrorKind::Internal,
        }
    }
}

type Result<T, E = VolumeError> = std::result::Result<T, E>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// A volume as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// The name (64 hex digits for anonymous volumes).
    pub name: String,
    /// The directory containers mount: `R/volumes/<name>/_data`.
    pub mountpoint: PathBuf,
    /// User labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Whether the volume was created without a name.
    pub anonymous: bool,
    /// The containers that use it (only those that still exist), sorted.
    pub users: Vec<String>,
}

/// What `volume.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    created_at: String,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    users: BTreeSet<String>,
}

/// What [`Volumes::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// The names of the volumes removed, sorted.
    pub removed: Vec<String>,
    /// Bytes of regular files they held.
    pub reclaimed_bytes: u64,
}

/// Whether `name` is a valid volume name (docker's rule).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && name.len() <= 255
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Parses a `--label KEY[=VALUE]`.
pub fn parse_label(s: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').unwrap_or((s, ""));
    if k.trim().is_empty() {
        return Err(VolumeError::InvalidLabel(s.to_owned()));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Refuses drivers other than `local`.
pub fn check_driver(driver: &str) -> Result<()> {
    if driver == "local" {
        Ok(())
    } else {
        Err(VolumeError::UnsupportedDriver(driver.to_owned()))
    }
}

/// A `volume ls --filter` (docker's keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeFilter {
    /// `dangling=true|false`: used by no container, or used.
    Dangling(bool),
    /// `label=KEY` or `label=KEY=VALUE`.
    Label(String, Option<String>),
    /// `name=PART`: the name contains PART.
    Name(String),
    /// `driver=NAME`.
    Driver(String),
}

impl std::str::FromStr for VolumeFilter {
    type Err = VolumeError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || VolumeError::InvalidFilter(s.to_owned());
        let (k, v) = s.split_once('=').ok_or_else(bad)?;
        Ok(match k {
            "dangling" => match v {
                "true" | "1" => VolumeFilter::Dangling(true),
                "false" | "0" => VolumeFilter::Dangling(false),
                _ => return Err(bad()),
            },
            "label" if !v.is_empty() => match v.split_once('=') {
                Some((lk, lv)) => VolumeFilter::Label(lk.to_owned(), Some(lv.to_owned())),
                None => VolumeFilter::Label(v.to_owned(), None),
            },
            "name" => VolumeFilter::Name(v.to_owned()),
            "driver" => VolumeFilter::Driver(v.to_owned()),
            _ => return Err(bad()),
        })
    }
}

impl VolumeFilter {
    /// Whether `v` passes.
    pub fn matches(&self, v: &Volume) -> bool {
        match self {
            VolumeFilter::Dangling(d) => v.users.is_empty() == *d,
            VolumeFilter::Label(k, want) => match (v.labels.get(k), want) {
                (Some(_), None) => true,
                (Some(have), Some(want)) => have == want,
                (None, _) => false,
            },
            VolumeFilter::Name(part) => v.name.contains(part.as_str()),
            VolumeFilter::Driver(d) => d == "local",
        }
    }
}

fn valid_container_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// 64 random hex digits, from the kernel's generator.
fn random_name() -> Result<String> {
    let path = Path::new("/dev/urandom");
    let mut buf = [0u8; 32];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(io_err("read", path))?;
    Ok(hex::encode(buf))
}

/// The volumes of one state root. See the module docs.
#[derive(Debug, Clone)]
pub struct Volumes {
    dir: PathBuf,
    containers: PathBuf,
}

/// The exclusive lock on the volumes directory, held until dropped.
struct Lock(#[allow(dead_code)] File);

impl Volumes {
    /// The volumes of the state root `root` (nothing is created until a
    /// volume is).
    pub fn open(root: &Path) -> Volumes {
        Volumes {
            dir: root.join("volumes"),
            containers: root.join("containers"),
        }
    }

    fn lock(&self) -> Result<Lock> {
        fs::create_dir_all(&self.dir).map_err(io_err("create", &self.dir))?;
        let path = self.dir.join(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        f.lock().map_err(io_err("lock", &path))?;
        Ok(Lock(f))
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(name).join("volume.json")
    }

    fn load(&self, name: &str) -> Result<Record> {
        if !valid_name(name) {
            return Err(VolumeError::InvalidName(name.to_owned()));
        }
        let path = self.record_path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(VolumeError::NotFound(name.to_owned()));
            }
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| VolumeError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })
    }

    /// Writes `record` into `dir` (temp file + fsync + rename).
    fn store(dir: &Path, record: &Record) -> Result<()> {
        let path = dir.join("volume.json");
        let tmp = dir.join(".volume.json.tmp");
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| VolumeError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let write = || -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(io_err("write", &path))
    }

    fn live_users(&self, record: &Record) -> Vec<String> {
        record
            .users
            .iter()
            .filter(|id| self.containers.join(id).exists())
            .cloned()
            .collect()
    }

    fn to_volume(&self, record: Record) -> Volume {
        let users = self.live_users(&record);
        Volume {
            mountpoint: self.dir.join(&record.name).join("_data"),
            name: record.name,
            labels: record.labels,
            created: record.created_at,
            anonymous: record.anonymous,
            users,
        }
    }

    /// Creates a volume, or returns the existing one of that name (as docker
    /// does); `None` creates an anonymous volume with a random name.
    #[instrument(skip(self, labels))]
    pub fn create(&self, name: Option<&str>, labels: BTreeMap<String, String>) -> Result<Volume> {
        let _lock = self.lock()?;
        self.create_locked(name, labels)
    }

    fn create_locked(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume> {
        let (name, anonymous) = match name {
            Some(n) => {
                if !valid_name(n) {
                    return Err(VolumeError::InvalidName(n.to_owned()));
                }
                match self.load(n) {
                    Ok(existing) => return Ok(self.to_volume(existing)),
                    Err(VolumeError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                (n.to_owned(), false)
            }
            None => (random_name()?, true),
        };
        let record = Record {
            name: name.clone(),
            labels,
            created_at: kontti_image::time::now_rfc3339(),
            anonymous,
            users: BTreeSet::new(),
        };
        // Prepare under a hidden name, then rename into place: a volume
        // exists completely or not at all.
        let tmp = self.dir.join(format!(".new-{name}"));
        let _ = fs::remove_dir_all(&tmp);
        let prepare = || -> Result<()> {
            let data = tmp.join("_data");
            fs::create_dir_all(&data).map_err(io_err("create", &data))?;
            Self::store(&tmp, &record)?;
            let dest = self.dir.join(&name);
            fs::rename(&tmp, &dest).map_err(io_err("rename into", &dest))
        };
        if let Err(e) = prepare() {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        info!(volume = %name, anonymous, "volume created");
        Ok(self.to_volume(record))
    }

    /// Creates (or reuses) a volume and records `container_id` as its user
    /// under one lock, so that no prune can remove it in between.
    pub fn create_for(
        &self,
        name: Option<&str>,
        labels: BTreeMap<String, String>,
        container_id: &str,
    ) -> Result<Volume> {
        if !valid_container_id(container_id) {
            return Err(VolumeError::InvalidContainer(container_id.to_owned()));
        }
        let _lock = self.lock()?;
        let volume = self.create_locked(name, labels)?;
        self.update_users(&volume.name, |users| {
            users.insert(container_id.to_owned());
        })
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume> {
        self.load(name).map(|r| self.to_volume(r))
    }

    /// Every volume, sorted by name.
    pub fn list(&self) -> Result<Vec<Volume>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("read", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err("read", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.get(&name) {
                Ok(v) => out.push(v),
                // Removed meanwhile, or not a volume.
                Err(VolumeError::NotFound(_) | VolumeError::InvalidName(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn update_users(&self, name: &str, f: impl FnOnce(&mut BTreeSet<String>)) -> Result<Volume> {
        let mut record = self.load(name)?;
        f(&mut record.users);
        Self::store(&self.dir.join(name), &record)?;
        Ok(self.to_volume(record))
    }

    /// Records `container_id` as a user of the volume `name`.
    pub fn acquire(&self, name: &str, container_id: &str) -> Result<Volume> {
        if !valid_container_id(container_id) {
            return Err(VolumeError::InvalidContainer(container_id.to_owned()));
        }
        let _lock = self.lock()?;
        self.update_users(name, |users| {
            users.insert(container_id.to_owned());
        })
    }

    /// Forgets `container_id` as a user of `name`; a volume that is gone, or
    /// a container that was no user, is fine.
    pub fn release(&self, name: &str, container_id: &str) -> Result<()> {
        let _lock = self.lock()?;
        match self.update_users(name, |users| {
            users.remove(container_id);
        }) {
            Ok(_) | Err(VolumeError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes the volume `name` and its data. A volume in use is refused
    /// (even with `force`); `force` makes a missing volume no error.
    #[instrument(skip(self))]
    pub fn remove(&self, name: &str, force: bool) -> Result<()> {
        let _lock = self.lock()?;
        let record = match self.load(name) {
            Ok(r) => r,
            Err(VolumeError::NotFound(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let users = self.live_users(&record);
        if !users.is_empty() {
            return Err(VolumeError::InUse {
                name: name.to_owned(),
                containers: users
                    .iter()
                    .map(|id| id.get(..12).unwrap_or(id))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        self.delete(name)?;
        info!(volume = %name, "volume removed");
        Ok(())
    }

    /// Renames the volume away (it disappears at once), then deletes it.
    fn delete(&self, name: &str) -> Result<()> {
        let dir = self.dir.join(name);
        let gone = self.dir.join(format!(".rm-{name}"));
        let _ = fs::remove_dir_all(&gone);
        fs::rename(&dir, &gone).map_err(io_err("remove", &dir))?;
        fs::remove_dir_all(&gone).map_err(io_err("remove", &gone))
    }

    /// Removes every volume no container uses: anonymous ones only, or with
    /// `all` named ones too (docker's `volume prune [-a]`).
    #[instrument(skip(self))]
    pub fn prune(&self, all: bool) -> Result<Pruned> {
        let _lock = self.lock()?;
        // Leftovers of a create or remove that was killed half-way: under
        // the lock none is in progress.
        if let Ok(rd) = fs::read_dir(&self.dir) {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".new-") || name.starts_with(".rm-") {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
        let mut pruned = Pruned::default();
        for volume in self.list()? {
            if !volume.users.is_empty() || !(all || volume.anonymous) {
                continue;
            }
            let size = disk_usage(&volume.mountpoint);
            self.delete(&volume.name)?;
            pruned.reclaimed_bytes += size;
            pruned.removed.push(volume.name);
        }
        info!(count = pruned.removed.len(), "volumes pruned");
        Ok(pruned)
    }

    /// Bytes of regular files under the volume's data directory.
    pub fn size(&self, volume: &Volume) -> u64 {
        disk_usage(&volume.mountpoint)
    }

    /// Copies what the image has at the mount point (`source`, inside the
    /// container's mounted root filesystem) into the volume when the volume
    /// is empty, as docker does for a new volume: modes, owners, symlinks
    /// and modification times are kept; device nodes, fifos and sockets are
    /// skipped. Returns whether anything was copied. Symlinks in `source`
    /// are recreated, never followed, so nothing outside it is read.
    #[instrument(skip(self, volume), fields(volume = %volume.name))]
    pub fn populate(&self, volume: &Volume, source: &Path) -> Result<bool> {
        let _lock = self.lock()?;
        let dest = &volume.mountpoint;
        let empty = fs::read_dir(dest)
            .map_err(io_err("read", dest))?
            .next()
            .is_none();
        let is_dir = source.symlink_metadata().is_ok_and(|m| m.is_dir());
        if !empty || !is_dir {
            return Ok(false);
        }
        copy_tree(source, dest)?;
        let meta = source.symlink_metadata().map_err(io_err("stat", source))?;
        copy_attributes(&meta, dest)?;
        Ok(fs::read_dir(dest)
            .map_err(io_err("read", dest))?
            .next()
            .is_some())
    }
}

/// Copies the entries of the directory `from` into the existing directory
/// `to` (see [`Volumes::populate`]).
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    use std::os::unix::fs::symlink;
    for entry in fs::read_dir(from).map_err(io_err("read", from))? {
        let entry = entry.map_err(io_err("read", from))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = src.symlink_metadata().map_err(io_err("stat", &src))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&dst).map_err(io_err("create", &dst))?;
            copy_tree(&src, &dst)?;
        } else if ft.is_file() {
            fs::copy(&src, &dst).map_err(io_err("copy to", &dst))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(io_err("read link", &src))?;
            symlink(&target, &dst).map_err(io_err("create link", &dst))?;
        } else {
            tracing::debug!(path = %src.display(), "special file not copied into the volume");
            continue;
        }
        copy_attributes(&meta, &dst)?;
    }
    Ok(())
}

/// Owner, mode and modification time of `meta` onto `path` (owner only
/// for symlinks).
fn copy_attributes(meta: &fs::Metadata, path: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::os::unix::fs::lchown(path, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err("chown", path))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err("chmod", path))?;
    if let Ok(mtime) = meta.modified() {
        let f = File::open(path).map_err(io_err("open", path))?;
        f.set_modified(mtime)
            .map_err(io_err("set mtime of", path))?;
    }
    Ok(())
}

/// Bytes of regular files under `dir` (symlinks are not followed).
fn disk_usage(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    let mut total = 0;
    for entry in rd.flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if meta.is_dir() {
            total += disk_usage(&entry.path());
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "data", "my_vol.1-x", "0a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "-ab", ".ab", "a/b", "../x", "a b", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(!valid_name(&"a".repeat(256)));
    }

    #[test]
    fn labels_parse() {
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert_eq!(parse_label("flag").unwrap(), ("flag".into(), String::new()));
        assert!(matches!(
            parse_label("=x"),
            Err(VolumeError::InvalidLabel(_))
        ));
    }

    #[test]
    fn filters_parse() {
        let p = |s: &str| s.parse::<VolumeFilter>();
        assert_eq!(p("dangling=true").unwrap(), VolumeFilter::Dangling(true));
        assert_eq!(
            p("label=a=b").unwrap(),
            VolumeFilter::Label("a".into(), Some("b".into()))
        );
        assert_eq!(p("label=a").unwrap(), VolumeFilter::Label("a".into(), None));
        for bad in ["dangling=maybe", "size=1", "label=", "nofilter"] {
            assert!(
                matches!(p(bad), Err(VolumeError::InvalidFilter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn kinds_map_to_conflict_and_not_found() {
        let e = VolumeError::InUse {
            name: "v".into(),
            containers: "abc".into(),
        };
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(
            VolumeError::NotFound("v".into()).kind(),
            ErrorKind::NotFound
        );
    }
}
