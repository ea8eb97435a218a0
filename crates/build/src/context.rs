//! The build context on disk: walking it with `.dockerignore` applied, and
//! the content digest of the files a COPY or ADD reads (I/O lives here).

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use kontti_core::ErrorKind;
use sha2::{Digest, Sha256};

use crate::dockerignore::{Dockerignore, DockerignoreError, Pattern, clean_path};

/// Why the context cannot be read or a source cannot be found in it.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// reading the context failed
    #[error("build context {path}: {source}")]
    Io {
        /// the file or directory
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// the `.dockerignore` is malformed
    #[error(transparent)]
    Ignore(#[from] DockerignoreError),
    /// a COPY/ADD source that leaves the context (`../x`, or a symlink out)
    #[error("{0:?}: path is outside the build context")]
    Outside(String),
    /// a COPY/ADD source that matches nothing
    #[error("{0:?}: file not found in build context or excluded by .dockerignore")]
    NotFound(String),
    /// a COPY/ADD source glob that is malformed
    #[error("{source_path:?}: bad pattern: {reason}")]
    BadGlob {
        /// the source as written
        source_path: String,
        /// what is wrong
        reason: String,
    },
}

impl ContextError {
    /// The error class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContextError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            ContextError::Io { .. } => ErrorKind::Unavailable,
            ContextError::NotFound(_) => ErrorKind::NotFound,
            ContextError::Ignore(_) | ContextError::Outside(_) | ContextError::BadGlob { .. } => {
                ErrorKind::Invalid
            }
        }
    }
}

/// The type of a context entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link and its target.
    Symlink(PathBuf),
    /// A device, fifo or socket.
    Other,
}

/// One file, directory or link of the context.
#[derive(Debug)]
pub struct ContextEntry {
    /// The path relative to the context root, slash-separated.
    pub path: String,
    /// The type.
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    rel: PathBuf,
    content: OnceLock<[u8; 32]>,
}

/// A SHA-256 over the files a step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentDigest(pub [u8; 32]);

impl std::fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

/// A walked build context: the included entries, sorted by path. File
/// contents are hashed on demand, in parallel, once each.
#[derive(Debug)]
pub struct BuildContext {
    root: PathBuf,
    entries: Vec<ContextEntry>,
}

impl BuildContext {
    /// Walks `root` with its `.dockerignore` (if any). `dockerfile` (a path
    /// relative to the root) and `.dockerignore` are always included.
    pub fn open(root: &Path, dockerfile: &str) -> Result<BuildContext, ContextError> {
        let ignore_path = root.join(".dockerignore");
        let ignore = match fs::read_to_string(&ignore_path) {
            Ok(text) => Dockerignore::parse(&text)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Dockerignore::default(),
            Err(source) => {
                return Err(ContextError::Io {
                    path: ignore_path,
                    source,
                });
            }
        };
        BuildContext::scan(root, &ignore, &[dockerfile, ".dockerignore"])
    }

    /// Walks `root`, leaving out what `ignore` excludes except the paths in
    /// `always` (and their parent directories).
    pub fn scan(
        root: &Path,
        ignore: &Dockerignore,
        always: &[&str],
    ) -> Result<BuildContext, ContextError> {
        let always: Vec<String> = always
            .iter()
            .map(|p| clean_path(p).trim_start_matches('/').to_string())
            .collect();
        let kept = |rel: &str, is_dir: bool| {
            always
                .iter()
                .any(|a| a == rel || (is_dir && a.starts_with(&format!("{rel}/"))))
        };
        let mut entries = Vec::new();
        let mut dirs: Vec<PathBuf> = vec![PathBuf::new()];
        while let Some(dir) = dirs.pop() {
            let full = root.join(&dir);
            let read = fs::read_dir(&full).map_err(|source| ContextError::Io {
                path: full.clone(),
                source,
            })?;
            for item in read {
                let item = item.map_err(|source| ContextError::Io {
                    path: full.clone(),
                    source,
                })?;
                let rel = dir.join(item.file_name());
                let path = rel.to_string_lossy().into_owned();
                let meta =
                    fs::symlink_metadata(item.path()).map_err(|source| ContextError::Io {
                        path: item.path(),
                        source,
                    })?;
                let ft = meta.file_type();
                if ignore.is_excluded(&path) && !kept(&path, ft.is_dir()) {
                    if ft.is_dir()
                        && (ignore.may_include_under(&path)
                            || always.iter().any(|a| a.starts_with(&path)))
                    {
                        dirs.push(rel);
                    }
                    continue;
                }
                let kind = if ft.is_dir() {
                    dirs.push(rel.clone());
                    EntryKind::Dir
                } else if ft.is_file() {
                    EntryKind::File
                } else if ft.is_symlink() {
                    let target = fs::read_link(item.path()).map_err(|source| ContextError::Io {
                        path: item.path(),
                        source,
                    })?;
                    EntryKind::Symlink(target)
                } else {
                    EntryKind::Other
                };
                entries.push(ContextEntry {
                    path,
                    kind,
                    mode: meta.mode() & 0o7777,
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.len(),
                    rel,
                    content: OnceLock::new(),
                });
            }
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        tracing::debug!(root = %root.display(), entries = entries.len(), "build context walked");
        Ok(BuildContext {
            root: root.to_path_buf(),
            entries,
        })
    }

    /// The context's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every included entry, sorted by path.
    pub fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    fn find(&self, path: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
    }

    /// The indexes of the entries under directory `path` (not itself).
    fn under(&self, path: &str) -> std::ops::Range<usize> {
        let lo = format!("{path}/");
        let hi = format!("{path}0");
        let start = self.entries.partition_point(|e| e.path < lo);
        let end = self.entries.partition_point(|e| e.path < hi);
        start..end
    }

    /// The entries a COPY/ADD source reads: the path (or every path a glob
    /// matches) and everything under it; a symlink named as a source is
    /// followed within the context.
    pub fn select(&self, source: &str) -> Result<Vec<usize>, ContextError> {
        let cleaned = clean_path(source.trim_start_matches('/'));
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(ContextError::Outside(source.to_string()));
        }
        if cleaned == "." {
            return Ok((0..self.entries.len()).collect());
        }
        let mut roots = Vec::new();
        if cleaned.contains(['*', '?', '[', '\\']) {
            let pattern = Pattern::new(&cleaned).map_err(|reason| ContextError::BadGlob {
                source_path: source.to_string(),
                reason,
            })?;
            roots.extend(
                (0..self.entries.len()).filter(|i| pattern.matches(&self.entries[*i].path)),
            );
        } else if let Some(i) = self.find(&cleaned) {
            roots.push(i);
        }
        if roots.is_empty() {
            return Err(ContextError::NotFound(source.to_string()));
        }
        let mut out = Vec::new();
        let mut hops = 0;
        while let Some(i) = roots.pop() {
            out.push(i);
            out.extend(self.under(&self.entries[i].path));
            if let EntryKind::Symlink(target) = &self.entries[i].kind {
                hops += 1;
                if hops > 40 {
                    return Err(ContextError::NotFound(source.to_string()));
                }
                let resolved = self.resolve_link(&self.entries[i].path, target);
                if resolved == ".." || resolved.starts_with("../") || resolved.starts_with('/') {
                    return Err(ContextError::Outside(source.to_string()));
                }
                match self.find(&resolved) {
                    Some(j) => roots.push(j),
                    None => return Err(ContextError::NotFound(source.to_string())),
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// A link's target relative to the context root (an absolute target
    /// stays absolute: it points outside the context).
    fn resolve_link(&self, link: &str, target: &Path) -> String {
        let target = target.to_string_lossy();
        if target.starts_with('/') {
            return clean_path(&target);
        }
        let dir = link.rsplit_once('/').map_or("", |(d, _)| d);
        clean_path(&format!("{dir}/{target}"))
            .trim_start_matches('/')
            .to_string()
    }

    /// The digest of everything the sources read: for each entry, its path,
    /// type, mode, owner and content (files), target (links) or nothing more
    /// (directories). Size and modification time are not used: only content
    /// decides.
    pub fn digest(&self, sources: &[&str]) -> Result<ContentDigest, ContextError> {
        self.digest_excluding(sources, &[])
    }

    /// [`digest`](Self::digest) for `COPY --exclude=PATTERN`: entries that
    /// an exclude pattern matches (or that are under a matched directory)
    /// are left out.
    pub fn digest_excluding(
        &self,
        sources: &[&str],
        excludes: &[&str],
    ) -> Result<ContentDigest, ContextError> {
        let exclude = Dockerignore::parse(&excludes.join("\n"))?;
        let mut selected = Vec::new();
        for s in sources {
            selected.extend(self.select(s)?);
        }
        selected.retain(|i| !exclude.is_excluded(&self.entries[*i].path));
        selected.sort_unstable();
        selected.dedup();
        self.hash_contents(&selected)?;
        let mut h = Sha256::new();
        h.update(b"kontti-context-v1\0");
        for i in selected {
            let e = &self.entries[i];
            let path = e.rel.as_os_str().as_bytes();
            h.update((path.len() as u64).to_le_bytes());
            h.update(path);
            h.update(e.mode.to_le_bytes());
            h.update(e.uid.to_le_bytes());
            h.update(e.gid.to_le_bytes());
            match &e.kind {
                EntryKind::File => {
                    h.update(b"f");
                    h.update(e.content.get().copied().unwrap_or_default());
                }
                EntryKind::Dir => h.update(b"d"),
                EntryKind::Symlink(target) => {
                    let t = target.as_os_str().as_bytes();
                    h.update(b"l");
                    h.update((t.len() as u64).to_le_bytes());
                    h.update(t);
                }
                EntryKind::Other => h.update(b"o"),
            }
        }
        Ok(ContentDigest(h.finalize().into()))
    }

    /// Hashes the contents of the regular files among `indexes` that are not
    /// hashed yet, with one thread per core.
    fn hash_contents(&self, indexes: &[usize]) -> Result<(), ContextError> {
        let todo: Vec<&ContextEntry> = indexes
            .iter()
            .map(|i| &self.entries[*i])
            .filter(|e| e.kind == EntryKind::File && e.content.get().is_none())
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(todo.len().div_ceil(64));
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<ContextError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(e) = todo.get(k) else { break };
                        let path = self.root.join(&e.rel);
                        match hash_file(&path, &mut buf) {
                            Ok(d) => {
                                let _ = e.content.set(d);
                            }
                            Err(source) => {
                                if let Ok(mut f) = failure.lock() {
                                    f.get_or_insert(ContextError::Io { path, source });
                                }
                                next.store(todo.len(), Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                });
            }
        });
        match failure.into_inner() {
            Ok(Some(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

fn hash_file(path: &Path, buf: &mut [u8]) -> io::Result<[u8; 32]> {
    use std::io::Read;
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    loop {
        let n = f.read(buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}
