//! Applying a layer (a tar stream, gzip/zstd/plain) to a directory, safely.
//!
//! * Streamed: entries are written as they are read; memory does not grow
//!   with the layer.
//! * Confined: every entry is created through [`Root`], which resolves paths
//!   component by component inside the destination. Absolute entry names,
//!   `..` climbing out, symlinks leading out (also ones swapped in while we
//!   extract) and hard links to outside files are refused with an error.
//! * Verified: the uncompressed stream is hashed on the way and compared with
//!   the expected diffID at the end; the caller discards the directory on any
//!   error (the snapshotters do).
//! * Whiteouts: `.wh.NAME` and `.wh..wh..opq` are either recorded the way
//!   overlayfs reads them in an upper directory (a 0/0 character device, the
//!   `trusted.overlay.opaque=y` xattr) or applied by removing what they hide.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use kontti_core::{Algorithm, Digest, ErrorKind};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use crate::fsroot::{ResolveError, Root, remove_all_at, remove_children_at};
use crate::hash::HashingReader;
use crate::media::Compression;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// How whiteouts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// As overlayfs expects in an upper directory: a 0/0 character device
    /// per deleted name, `trusted.overlay.opaque=y` on opaque directories.
    Overlay,
    /// Applied: the hidden files are removed from the destination, which
    /// holds the merged content of the lower layers.
    Remove,
}

/// Errors unpacking a layer.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// An entry would land outside the destination.
    #[error("refusing layer entry {entry:?}: {source}")]
    Unsafe {
        /// The entry name.
        entry: PathBuf,
        /// Why.
        source: ResolveError,
    },
    /// A hard link points outside the layer or at something unlinkable.
    #[error("refusing hard link {entry:?} -> {target:?}: {reason}")]
    BadHardLink {
        /// The link entry.
        entry: PathBuf,
        /// Its target.
        target: PathBuf,
        /// Why.
        reason: String,
    },
    /// An entry type kontti does not unpack.
    #[error("unsupported tar entry type {kind:?} for {entry:?}")]
    UnsupportedEntry {
        /// The entry name.
        entry: PathBuf,
        /// The type byte.
        kind: char,
    },
    /// The tar stream is malformed or truncated.
    #[error("malformed layer: {0}")]
    Malformed(String),
    /// The uncompressed content does not hash to the diffID.
    #[error("layer diffID mismatch: expected {expected}, content hashes to {actual}")]
    DiffIdMismatch {
        /// The diffID from the image config.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// The disk (or quota) filled up.
    #[error("no space left on device while unpacking {entry:?}")]
    NoSpace {
        /// The entry being written.
        entry: PathBuf,
    },
    /// Writing failed (permissions, I/O).
    #[error("unpacking {entry:?}: {source}")]
    Io {
        /// The entry being written.
        entry: PathBuf,
        /// The error.
        source: io::Error,
    },
}

impl UnpackError {
    /// A write error of `entry`; a full disk is [`UnpackError::NoSpace`]
    /// (also when an archive reader wrapped the system error).
    fn io(entry: PathBuf, source: io::Error) -> UnpackError {
        if source.raw_os_error() == Some(Errno::NOSPC.raw_os_error())
            || source.kind() == io::ErrorKind::StorageFull
        {
            UnpackError::NoSpace { entry }
        } else {
            UnpackError::Io { entry, source }
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            UnpackError::NoSpace { .. } => ErrorKind::Unavailable,
            UnpackError::Io { .. } => ErrorKind::Internal,
            _ => ErrorKind::Invalid,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Uncompressed size.
    pub size: u64,
    /// Number of entries applied.
    pub entries: u64,
}

/// The first line of an error message, at most 120 characters: archive
/// parsers quote the bytes they choke on, which may be anything.
pub fn one_line(e: &dyn std::fmt::Display) -> String {
    let s = e.to_string();
    let line = s.lines().next().unwrap_or("");
    let mut out: String = line.chars().filter(|c| !c.is_control()).take(120).collect();
    if out.len() < line.len() {
        out.push_str("...");
    }
    out
}

/// Detects the compression of a stream by its magic bytes.
pub fn detect_compression<R: BufRead>(r: &mut R) -> io::Result<Compression> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Wraps `r` in the decompressor its magic bytes call for.
pub fn decompressed<'a, R: Read + 'a>(r: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut r = BufReader::with_capacity(1 << 16, r);
    Ok(match detect_compression(&mut r)? {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(
            ruzstd::decoding::StreamingDecoder::new(r)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?,
        ),
        Compression::None => Box::new(r),
    })
}

/// Applies the layer read from `reader` (compressed or not) to `dest`.
/// On error `dest` may hold part of the layer: discard it.
pub fn apply_layer<R: Read>(
    reader: R,
    dest: &Path,
    whiteouts: WhiteoutMode,
    expected_diff_id: Option<&Digest>,
) -> Result<LayerStats, UnpackError> {
    let malformed = |e: io::Error| UnpackError::Malformed(one_line(&e));
    let hashing = HashingReader::new(decompressed(reader).map_err(malformed)?, Algorithm::Sha256);
    let root = Root::open(dest).map_err(|source| UnpackError::io(dest.to_owned(), source))?;
    let mut archive = tar::Archive::new(hashing);
    let mut applier = Applier {
        root: &root,
        whiteouts,
        created: HashSet::new(),
        dir_times: Vec::new(),
        entries: 0,
        creator: Creator::current(),
        parents: HashMap::new(),
        buf: vec![0; COPY_BUFFER],
    };
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        applier.apply(&mut entry)?;
    }
    applier.finish()?;
    let entries = applier.entries;
    let (diff_id, size) = archive.into_inner().finish().map_err(malformed)?;
    if let Some(expected) = expected_diff_id
        && *expected != diff_id
    {
        return Err(UnpackError::DiffIdMismatch {
            expected: expected.clone(),
            actual: diff_id,
        });
    }
    Ok(LayerStats {
        diff_id,
        size,
        entries,
    })
}

struct Applier<'a> {
    root: &'a Root,
    whiteouts: WhiteoutMode,
    /// Entries this layer created (normalised), so that an opaque marker in
    /// remove mode keeps them.
    created: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, u64)>,
    entries: u64,
    creator: Creator,
    /// Directories regular files were written to since the last entry of
    /// another kind, by normalised path.
    parents: HashMap<PathBuf, ParentDir>,
    /// File contents pass through this buffer.
    buf: Vec<u8>,
}

/// How much of a file's content is copied per write.
const COPY_BUFFER: usize = 256 << 10;

/// The most parent directories kept open (each holds an `O_PATH` fd).
const MAX_PARENTS: usize = 128;

/// What a file created by this process gets without being told.
struct Creator {
    uid: Uid,
    gid: Gid,
    /// The process's umask, when known.
    umask: Option<u32>,
}

impl Creator {
    fn current() -> Creator {
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Umask:"))
                    .and_then(|m| u32::from_str_radix(m.trim(), 8).ok())
            });
        Creator {
            uid: rustix::process::geteuid(),
            gid: rustix::process::getegid(),
            umask,
        }
    }
}

/// The parent directory of a regular file written, kept for the regular
/// files that follow in it, so that its path is not resolved component by
/// component again. Every kept directory is dropped at any entry that is
/// not a regular file and when a regular file replaces something: only
/// creating new regular files cannot change which directory a path names.
struct ParentDir {
    fd: OwnedFd,
    /// The group a new file in it gets (its own under setgid).
    new_gid: Gid,
    /// Whether a new file gets the mode asked for minus the umask: false
    /// under a default ACL, which replaces the umask.
    umask_applies: bool,
}

impl ParentDir {
    fn open(root: &Root, entry: &Path, creator: &Creator) -> Result<ParentDir, UnpackError> {
        let (fd, _) = root
            .parent_of(entry, true)
            .map_err(|source| UnpackError::Unsafe {
                entry: entry.to_owned(),
                source,
            })?;
        let errno = |e: Errno| UnpackError::io(entry.to_owned(), e.into());
        let st = rustix::fs::fstat(&fd).map_err(errno)?;
        let new_gid = if st.st_mode & 0o2000 != 0 {
            Gid::from_raw(st.st_gid)
        } else {
            creator.gid
        };
        let acl = rustix::fs::getxattr(
            proc_fd_path(&fd),
            "system.posix_acl_default",
            &mut [0u8; 0][..],
        );
        let umask_applies = matches!(acl, Err(Errno::NODATA) | Err(Errno::NOTSUP));
        Ok(ParentDir {
            fd,
            new_gid,
            umask_applies,
        })
    }
}

fn normalise(path: &Path) -> Result<PathBuf, UnpackError> {
    crate::fsroot::lexical_components(path)
        .map(|c| c.iter().collect())
        .map_err(|source| UnpackError::Unsafe {
            entry: path.to_owned(),
            source,
        })
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry
            .path()
            .map_err(|e| UnpackError::Malformed(one_line(&e)))?
            .into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let path = normalise(&raw)?;
        if path.as_os_str().is_empty() {
            // The root directory itself ("./"): nothing to create.
            return Ok(());
        }
        self.entries += 1;
        if matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous)
            && !path
                .file_name()
                .is_some_and(|n| n.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()))
        {
            return self.regular(entry, &raw, path);
        }
        self.parents.clear();
        let unsafe_err = |source| UnpackError::Unsafe {
            entry: raw.clone(),
            source,
        };
        let io_err = |source: io::Error| UnpackError::io(raw.clone(), source);
        let errno = |e: Errno| UnpackError::io(raw.clone(), e.into());
        let (parent, name) = self.root.parent_of(&path, true).map_err(unsafe_err)?;
        let name_bytes = name.as_bytes();

        if name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&path, &parent, &name).map_err(io_err);
        }

        let xattrs = pax_xattrs(entry).map_err(io_err)?;
        let header = entry.header();
        let mode = Mode::from_raw_mode(header.mode().map_err(io_err)? & 0o7777);
        let uid = Uid::from_raw(header.uid().map_err(io_err)? as u32);
        let gid = Gid::from_raw(header.gid().map_err(io_err)? as u32);
        let mtime = header.mtime().map_err(io_err)?;
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let existing = rustix::fs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir =
            existing.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);

        if (kind != tar::EntryType::Directory || !existing_is_dir) && existing.is_some() {
            remove_all_at(&parent, &name).map_err(io_err)?;
        }
        if self.whiteouts == WhiteoutMode::Remove {
            self.created.insert(path.clone());
        }
        match kind {
            tar::EntryType::Directory => {
                if !existing_is_dir {
                    rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o700))
                        .map_err(errno)?;
                }
                let fd = rustix::fs::openat(
                    &parent,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno)?;
                finish_fd(&fd, uid, gid, mode, &xattrs, None).map_err(errno)?;
                self.dir_times.push((path, mtime));
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(io_err)?.ok_or_else(|| {
                    UnpackError::Malformed(format!("symlink {raw:?} without target"))
                })?;
                rustix::fs::symlinkat(target.as_ref(), &parent, &name).map_err(errno)?;
                rustix::fs::chownat(
                    &parent,
                    &name,
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(errno)?;
                set_time_at(&parent, &name, mtime).map_err(errno)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(io_err)?
                    .ok_or_else(|| {
                        UnpackError::Malformed(format!("hard link {raw:?} without target"))
                    })?
                    .into_owned();
                let bad = |reason: String| UnpackError::BadHardLink {
                    entry: raw.clone(),
                    target: target.clone(),
                    reason,
                };
                let (tparent, tname) = self
                    .root
                    .parent_of(&target, false)
                    .map_err(|e| bad(e.to_string()))?;
                let st = rustix::fs::statat(&tparent, &tname, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| bad(format!("target: {e}")))?;
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    return Err(bad("target is a directory".into()));
                }
                rustix::fs::linkat(&tparent, &tname, &parent, &name, AtFlags::empty())
                    .map_err(|e| bad(e.to_string()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let ft = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                rustix::fs::mknodat(
                    &parent,
                    &name,
                    ft,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(errno)?;
                let fd = rustix::fs::openat(
                    &parent,
                    &name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno)?;
                // O_PATH fds take no fchmod; go through the fd's proc link,
                // which names exactly this inode.
                let proc = proc_fd_path(&fd);
                rustix::fs::chown(&proc, Some(uid), Some(gid)).map_err(errno)?;
                rustix::fs::chmod(&proc, mode).map_err(errno)?;
                for (k, v) in &xattrs {
                    rustix::fs::setxattr(&proc, k.as_os_str(), v, XattrFlags::empty())
                        .map_err(errno)?;
                }
                set_time_at(&parent, &name, mtime).map_err(errno)?;
            }
            other => {
                return Err(UnpackError::UnsupportedEntry {
                    entry: raw,
                    kind: other.as_byte() as char,
                });
            }
        }
        Ok(())
    }

    /// A regular file: created in the (cached) parent directory with the
    /// mode asked for, so that chown and chmod are needed only when what the
    /// kernel gave it differs from the entry's owner and mode.
    fn regular<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
        path: PathBuf,
    ) -> Result<(), UnpackError> {
        let io_err = |source: io::Error| UnpackError::io(raw.to_owned(), source);
        let errno = |e: Errno| UnpackError::io(raw.to_owned(), e.into());
        let xattrs = pax_xattrs(entry).map_err(io_err)?;
        let header = entry.header();
        let mode = header.mode().map_err(io_err)? & 0o7777;
        let uid = Uid::from_raw(header.uid().map_err(io_err)? as u32);
        let gid = Gid::from_raw(header.gid().map_err(io_err)? as u32);
        let mtime = header.mtime().map_err(io_err)?;
        let name = path
            .file_name()
            .ok_or_else(|| UnpackError::Malformed(format!("entry {raw:?} has no name")))?
            .to_owned();
        let dir = path.parent().unwrap_or(Path::new("")).to_owned();
        let parent = match self.parents.remove(&dir) {
            Some(p) => p,
            None => ParentDir::open(self.root, &path, &self.creator)?,
        };
        let mut replaced = false;
        if self.whiteouts == WhiteoutMode::Remove {
            self.created.insert(path.clone());
        }
        // What the kernel will give the file, and whether that is the entry's.
        let owner_ok = uid == self.creator.uid && gid == parent.new_gid;
        let perm = mode & 0o777;
        let mode_ok = mode == perm
            && parent.umask_applies
            && self.creator.umask.is_some_and(|u| perm & u == 0);
        let create_mode = Mode::from_raw_mode(if owner_ok && mode_ok { perm } else { 0o600 });
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&parent.fd, &name, flags, create_mode) {
            Err(Errno::EXIST) => {
                // It replaces whatever has the name (removed without
                // following symlinks), maybe a kept directory.
                replaced = true;
                remove_all_at(&parent.fd, &name).map_err(io_err)?;
                rustix::fs::openat(&parent.fd, &name, flags, create_mode).map_err(errno)?
            }
            r => r.map_err(errno)?,
        };
        let mut file = File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            };
            io::Write::write_all(&mut file, &self.buf[..n]).map_err(io_err)?;
        }
        let fd = file.as_fd();
        if !owner_ok {
            rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(errno)?;
        }
        // After chown, which clears setuid/setgid bits.
        if !(owner_ok && mode_ok) {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(errno)?;
        }
        for (k, v) in &xattrs {
            rustix::fs::fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty()).map_err(errno)?;
        }
        rustix::fs::futimens(fd, &times(mtime)).map_err(errno)?;
        if replaced || self.parents.len() >= MAX_PARENTS {
            self.parents.clear();
        }
        self.parents.insert(dir, parent);
        Ok(())
    }

    fn whiteout(&mut self, path: &Path, parent: &OwnedFd, name: &OsStr) -> io::Result<()> {
        let dir_path = path.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_WHITEOUT {
            match self.whiteouts {
                WhiteoutMode::Overlay => {
                    let dir = rustix::fs::openat(
                        parent,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    rustix::fs::fsetxattr(
                        &dir,
                        "trusted.overlay.opaque",
                        b"y",
                        XattrFlags::empty(),
                    )?;
                }
                WhiteoutMode::Remove => {
                    let created = &self.created;
                    remove_children_at(parent, OsStr::new("."), &|child| {
                        !created.contains(&dir_path.join(child))
                    })?;
                }
            }
            return Ok(());
        }
        let hidden = &name.as_bytes()[WHITEOUT_PREFIX.len()..];
        if hidden.is_empty()
            || hidden.starts_with(WHITEOUT_PREFIX.as_bytes())
            || hidden == b"."
            || hidden == b".."
        {
            // aufs metadata (.wh..wh.plnk and friends) or nonsense: ignore.
            return Ok(());
        }
        let hidden = OsStr::from_bytes(hidden);
        remove_all_at(parent, hidden)?;
        if self.whiteouts == WhiteoutMode::Overlay {
            rustix::fs::mknodat(
                parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rustix::fs::makedev(0, 0),
            )?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), UnpackError> {
        // Directory times last: creating children changed them.
        for (path, mtime) in self.dir_times.drain(..).rev() {
            let io_err = |e: Errno| UnpackError::io(path.clone(), e.into());
            let (parent, name) =
                self.root
                    .parent_of(&path, false)
                    .map_err(|source| UnpackError::Unsafe {
                        entry: path.clone(),
                        source,
                    })?;
            match set_time_at(&parent, &name, mtime) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(())
    }
}

fn proc_fd_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn finish_fd(
    fd: impl AsFd,
    uid: Uid,
    gid: Gid,
    mode: Mode,
    xattrs: &[(OsString, Vec<u8>)],
    mtime: Option<u64>,
) -> Result<(), Errno> {
    let fd = fd.as_fd();
    rustix::fs::fchown(fd, Some(uid), Some(gid))?;
    // After chown, which clears setuid/setgid bits.
    rustix::fs::fchmod(fd, mode)?;
    for (k, v) in xattrs {
        rustix::fs::fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty())?;
    }
    if let Some(t) = mtime {
        rustix::fs::futimens(fd, &times(t))?;
    }
    Ok(())
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn set_time_at(dir: impl AsFd, name: &OsStr, mtime: u64) -> Result<(), Errno> {
    rustix::fs::utimensat(dir, name, &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
}

/// xattrs from PAX `SCHILY.xattr.*` records, except overlayfs' own
/// (`trusted.overlay.*`), which only whiteout handling may set.
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
                    continue;
                }
                out.push((OsString::from(name), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
