//! COPY and ADD, written straight into the step's mounted snapshot (no
//! container): every destination path is resolved inside the root
//! filesystem ([`Root`]), so a symlink in the image cannot redirect a write
//! to the host. Sources come from the build context, another stage's or an
//! image's tree (`--from`), or a heredoc. ADD extracts local tar archives
//! (plain, gzip, zstd) and fetches URLs through the caller's fetcher.

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kontti_build::{BuildContext, CopySource, EntryKind, FileCopy, Pattern, clean_path};
use kontti_image::fsroot::Root;
use kontti_image::unpack::{WhiteoutMode, apply_layer};
use rustix::fs::{AtFlags, Gid, Mode, OFlags, Timestamps, Uid};

use crate::chmod::Chmod;
use crate::error::BuildError;
use crate::options::UrlFetcher;
use crate::user;

/// Where COPY sources come from.
pub(crate) enum Source<'a> {
    /// The build context.
    Context(&'a BuildContext),
    /// A mounted tree (`--from`).
    Tree(&'a Path),
}

/// One file to write: where it comes from on the host and its metadata.
struct Item {
    host: PathBuf,
    /// Destination, absolute inside the rootfs.
    dest: String,
    md: fs::Metadata,
    /// The entry is the root of a directory source (keep the destination
    /// directory's own metadata when it exists).
    is_root_dir: bool,
}

/// What a COPY/ADD step needs.
pub(crate) struct CopyStep<'a> {
    pub label: &'a str,
    pub copy: &'a FileCopy,
    pub is_add: bool,
    pub workdir: &'a str,
    pub source: Source<'a>,
    pub fetch: Option<&'a UrlFetcher>,
    /// A scratch directory for downloads and heredocs.
    pub scratch: &'a Path,
}

fn ctx_err(label: &str, e: kontti_build::ContextError) -> BuildError {
    BuildError::Context {
        step: label.to_string(),
        cause: e,
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Performs the COPY/ADD into `rootfs`.
pub(crate) fn copy(rootfs: &Path, step: &CopyStep<'_>) -> Result<(), BuildError> {
    let label = step.label;
    let c = step.copy;
    let dest = if c.dest.starts_with('/') {
        c.dest.clone()
    } else {
        format!("{}/{}", step.workdir.trim_end_matches('/'), c.dest)
    };
    let dest_is_dir = c.dest.ends_with('/')
        || c.dest == "."
        || c.sources.len() > 1
        || c.sources
            .iter()
            .any(|s| matches!(s, CopySource::Path(p) if p.contains(['*', '?', '['])));
    let dest = clean_path(&dest);
    let owner = match &c.chown {
        Some(spec) => {
            Some(user::resolve_chown(rootfs, spec).map_err(|e| BuildError::step(label, e))?)
        }
        None => None,
    };
    let chmod = match &c.chmod {
        Some(m) => {
            let spec = Chmod::parse(m).ok_or_else(|| {
                BuildError::step(label, format!("--chmod={m}: not an octal or symbolic mode"))
            })?;
            Some(spec)
        }
        None => None,
    };
    let root = Root::open(rootfs).map_err(|e| BuildError::io("open", rootfs, e))?;
    let mut items: Vec<Item> = Vec::new();
    let mut tars: Vec<PathBuf> = Vec::new();
    for (n, src) in c.sources.iter().enumerate() {
        match src {
            CopySource::Heredoc(h) => {
                let host = step.scratch.join(format!("heredoc{n}"));
                fs::write(&host, &h.content).map_err(|e| BuildError::io("write", &host, e))?;
                let md = fs::metadata(&host).map_err(|e| BuildError::io("stat", &host, e))?;
                let target = if dest_is_dir || c.dest.ends_with('/') {
                    format!("{}/{}", dest.trim_end_matches('/'), h.name)
                } else {
                    dest.clone()
                };
                items.push(Item {
                    host,
                    dest: target,
                    md,
                    is_root_dir: false,
                });
            }
            CopySource::Path(p) if is_url(p) => {
                if !step.is_add {
                    return Err(BuildError::step(
                        label,
                        format!("{p}: COPY cannot fetch URLs; use ADD"),
                    ));
                }
                let name = p
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .filter(|s| !s.is_empty() && !s.contains(':'))
                    .unwrap_or("download")
                    .split(['?', '#'])
                    .next()
                    .unwrap_or("download")
                    .to_string();
                let host = step.scratch.join(format!("url{n}"));
                let Some(fetch) = step.fetch else {
                    return Err(BuildError::step(
                        label,
                        format!("cannot download {p}: downloads are not available here"),
                    ));
                };
                fetch(p, &host)
                    .map_err(|e| BuildError::step(label, format!("cannot download {p}: {e}")))?;
                if let Some(want) = &c.checksum {
                    verify_checksum(&host, want)
                        .map_err(|e| BuildError::step(label, format!("{p}: {e}")))?;
                }
                let md = fs::metadata(&host).map_err(|e| BuildError::io("stat", &host, e))?;
                let target = if dest_is_dir {
                    format!("{}/{name}", dest.trim_end_matches('/'))
                } else {
                    dest.clone()
                };
                items.push(Item {
                    host,
                    dest: target,
                    md,
                    is_root_dir: false,
                });
            }
            CopySource::Path(p) => {
                let roots = match &step.source {
                    Source::Context(ctx) => context_roots(ctx, p).map_err(|e| ctx_err(label, e))?,
                    Source::Tree(tree) => {
                        tree_roots(tree, p).map_err(|e| BuildError::step(label, e))?
                    }
                };
                for (host, rel_name) in roots {
                    let md = fs::metadata(&host).map_err(|e| BuildError::io("stat", &host, e))?;
                    // --parents keeps the source's path under the destination.
                    let rel_name = if c.parents {
                        full_rel(&step.source, &host)
                    } else {
                        rel_name
                    };
                    if md.is_dir() {
                        let base = if (dest_is_dir && roots_is_glob(p)) || c.parents {
                            format!("{}/{rel_name}", dest.trim_end_matches('/'))
                        } else {
                            dest.clone()
                        };
                        collect_dir(&host, &base, &step.source, &mut items)
                            .map_err(|e| BuildError::io("read", &host, e))?;
                    } else if step.is_add
                        && matches!(step.source, Source::Context(_))
                        && is_archive(&host)
                    {
                        tars.push(host);
                    } else {
                        let target = if dest_is_dir || c.dest.ends_with('/') || c.parents {
                            format!("{}/{rel_name}", dest.trim_end_matches('/'))
                        } else {
                            dest.clone()
                        };
                        items.push(Item {
                            host,
                            dest: target,
                            md,
                            is_root_dir: false,
                        });
                    }
                }
            }
        }
    }
    if !c.exclude.is_empty()
        && let Source::Context(ctx) = &step.source
    {
        // --exclude patterns match paths relative to the context.
        let exclude = kontti_build::Dockerignore::parse(&c.exclude.join("\n"))
            .map_err(|e| BuildError::step(label, format!("--exclude: {e}")))?;
        items.retain(|item| {
            item.host
                .strip_prefix(ctx.root())
                .map(|rel| !exclude.is_excluded(&rel.to_string_lossy()))
                .unwrap_or(true)
        });
    }
    for item in &items {
        write_item(&root, item, owner, chmod.as_ref())
            .map_err(|e| BuildError::step(label, format!("{}: {e}", item.dest)))?;
    }
    for tar in tars {
        let dir = root
            .dir(Path::new(dest.trim_start_matches('/')), true)
            .map_err(|e| BuildError::step(label, format!("{dest}: {e}")))?;
        let fd_path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&dir)
        ));
        let f = File::open(&tar).map_err(|e| BuildError::io("open", &tar, e))?;
        apply_layer(f, &fd_path, WhiteoutMode::Remove, None).map_err(|source| {
            BuildError::Unpack {
                what: format!("{label}: {}", tar.display()),
                cause: source,
            }
        })?;
    }
    Ok(())
}

/// The path of a source relative to the context or stage root.
fn full_rel(source: &Source<'_>, host: &Path) -> String {
    let root = match source {
        Source::Context(ctx) => ctx.root(),
        Source::Tree(tree) => tree,
    };
    host.strip_prefix(root)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `ADD --checksum=sha256:HEX`: the downloaded file must match.
fn verify_checksum(path: &Path, want: &str) -> Result<(), String> {
    use sha2::Digest as _;
    let Some(hex_want) = want.strip_prefix("sha256:") else {
        return Err(format!(
            "--checksum={want}: only sha256: checksums are supported"
        ));
    };
    let mut f = File::open(path).map_err(|e| e.to_string())?;
    let mut h = sha2::Sha256::new();
    io::copy(&mut f, &mut h).map_err(|e| e.to_string())?;
    let got = hex::encode(h.finalize());
    if got != hex_want.to_ascii_lowercase() {
        return Err(format!(
            "checksum mismatch: expected {want}, got sha256:{got}"
        ));
    }
    Ok(())
}

fn roots_is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The entries a context source names: each match's host path and its name.
fn context_roots(
    ctx: &BuildContext,
    source: &str,
) -> Result<Vec<(PathBuf, String)>, kontti_build::ContextError> {
    // select() checks that the source exists, stays inside and is not
    // excluded; it follows symlinks named as sources within the context.
    ctx.select(source)?;
    let cleaned = clean_path(source.trim_start_matches('/'))
        .trim_start_matches('/')
        .to_string();
    let names: Vec<String> = if roots_is_glob(&cleaned) {
        let pattern =
            Pattern::new(&cleaned).map_err(|reason| kontti_build::ContextError::BadGlob {
                source_path: source.to_string(),
                reason,
            })?;
        ctx.entries()
            .iter()
            .filter(|e| pattern.matches(&e.path))
            .map(|e| e.path.clone())
            .collect()
    } else if cleaned.is_empty() || cleaned == "." {
        vec![String::new()]
    } else {
        vec![cleaned]
    };
    Ok(names
        .into_iter()
        .map(|n| {
            let base = n.rsplit('/').next().unwrap_or("").to_string();
            // A symlink named as a source is copied as what it points to
            // (select() checked that this stays inside the context).
            let host = resolve_in_tree(ctx.root(), &n).unwrap_or_else(|_| ctx.root().join(&n));
            (host, base)
        })
        .collect())
}

/// The paths a `--from` source names inside a mounted tree.
fn tree_roots(tree: &Path, source: &str) -> Result<Vec<(PathBuf, String)>, String> {
    let cleaned = clean_path(source).trim_start_matches('/').to_string();
    let check = |rel: &str| -> Result<PathBuf, String> {
        resolve_in_tree(tree, rel).map_err(|e| format!("{source}: {e}"))
    };
    if !roots_is_glob(&cleaned) {
        let base = cleaned.rsplit('/').next().unwrap_or("").to_string();
        return Ok(vec![(check(&cleaned)?, base)]);
    }
    // A glob in the last component only.
    let (dir, pat) = cleaned.rsplit_once('/').unwrap_or(("", cleaned.as_str()));
    let pattern = Pattern::new(pat).map_err(|e| format!("{source}: {e}"))?;
    let host_dir = check(dir)?;
    let mut out = Vec::new();
    let rd = fs::read_dir(&host_dir).map_err(|e| format!("{source}: {e}"))?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if pattern.matches(&name) {
            out.push((check(&format!("{dir}/{name}"))?, name));
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(format!("{source}: no source files were specified"));
    }
    Ok(out)
}

/// Resolves `rel` inside the mounted tree `tree` as if `tree` were `/`:
/// symlinks (absolute ones too) are followed within it and `..` stops at
/// its root, so the result is always under `tree`.
pub(crate) fn resolve_in_tree(tree: &Path, rel: &str) -> io::Result<PathBuf> {
    let mut todo: Vec<String> = rel
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .rev()
        .map(str::to_string)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop();
            continue;
        }
        let mut host = tree.to_path_buf();
        host.extend(&done);
        host.push(&c);
        let md = fs::symlink_metadata(&host)?;
        if !md.file_type().is_symlink() {
            done.push(c);
            continue;
        }
        hops += 1;
        if hops > 40 {
            return Err(io::Error::other("too many levels of symbolic links"));
        }
        let target = fs::read_link(&host)?;
        let target = target.to_string_lossy();
        if target.starts_with('/') {
            done.clear();
        }
        todo.extend(
            target
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .rev()
                .map(str::to_string),
        );
    }
    let mut host = tree.to_path_buf();
    host.extend(&done);
    Ok(host)
}

/// A directory source: its contents (not itself) under `base`.
fn collect_dir(
    host: &Path,
    base: &str,
    source: &Source<'_>,
    items: &mut Vec<Item>,
) -> io::Result<()> {
    items.push(Item {
        host: host.to_path_buf(),
        dest: base.to_string(),
        md: fs::metadata(host)?,
        is_root_dir: true,
    });
    match source {
        Source::Context(ctx) => {
            // Only what the context includes (.dockerignore applied).
            let rel = host.strip_prefix(ctx.root()).unwrap_or(Path::new(""));
            let prefix = rel.to_string_lossy();
            let prefix = if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            };
            for e in ctx.entries() {
                let Some(rest) = e.path.strip_prefix(&prefix) else {
                    continue;
                };
                if rest.is_empty() {
                    continue;
                }
                if matches!(e.kind, EntryKind::Other) {
                    continue;
                }
                let p = ctx.root().join(&e.path);
                items.push(Item {
                    md: fs::symlink_metadata(&p)?,
                    host: p,
                    dest: format!("{}/{rest}", base.trim_end_matches('/')),
                    is_root_dir: false,
                });
            }
        }
        Source::Tree(_) => {
            let mut stack = vec![(host.to_path_buf(), base.to_string())];
            while let Some((dir, dest)) = stack.pop() {
                let mut names: Vec<_> = fs::read_dir(&dir)?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for n in names {
                    let p = dir.join(&n);
                    let d = format!("{}/{}", dest.trim_end_matches('/'), n.to_string_lossy());
                    let md = fs::symlink_metadata(&p)?;
                    if md.is_dir() {
                        stack.push((p.clone(), d.clone()));
                    }
                    items.push(Item {
                        host: p,
                        dest: d,
                        md,
                        is_root_dir: false,
                    });
                }
            }
            items.sort_by(|a, b| a.dest.cmp(&b.dest));
        }
    }
    Ok(())
}

/// Whether `path` is a tar archive (maybe gzip or zstd compressed).
fn is_archive(path: &Path) -> bool {
    let Ok(f) = File::open(path) else {
        return false;
    };
    let mut r = BufReader::new(f);
    let Ok(head) = r.fill_buf() else { return false };
    if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return true;
    }
    let mut block = [0u8; 512];
    let Ok(f) = File::open(path) else {
        return false;
    };
    if f.take(512).read_exact(&mut block).is_err() {
        return false;
    }
    &block[257..262] == b"ustar"
}

fn write_item(
    root: &Root,
    item: &Item,
    owner: Option<(u32, u32)>,
    chmod: Option<&Chmod>,
) -> io::Result<()> {
    let to_io = |e: kontti_image::fsroot::ResolveError| io::Error::other(e.to_string());
    let ft = item.md.file_type();
    let (uid, gid) = owner.unwrap_or((0, 0));
    let dest = Path::new(item.dest.trim_start_matches('/'));
    if dest.as_os_str().is_empty() && ft.is_dir() {
        // The root directory itself.
        return Ok(());
    }
    if let (Some((uid, gid)), Some(parent)) = (owner, dest.parent()) {
        create_parents(root, parent, uid, gid)?;
    }
    if ft.is_dir() {
        let existed = root.dir(dest, false).is_ok();
        let fd = root.dir(dest, true).map_err(to_io)?;
        if item.is_root_dir && existed {
            return Ok(());
        }
        let fd = reopen_dir(&fd)?;
        rustix::fs::fchmod(
            &fd,
            Mode::from_raw_mode(Chmod::apply(chmod, item.md.mode() & 0o7777, true)),
        )?;
        rustix::fs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        set_times(&fd, &item.md)?;
        return Ok(());
    }
    let (parent, name) = root.parent_of(dest, true).map_err(to_io)?;
    match rustix::fs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileTypeBits::is_dir(st.st_mode) => {
            // COPY file /existing-dir (without a trailing slash) writes into it.
            let inner = Item {
                host: item.host.clone(),
                dest: format!(
                    "{}/{}",
                    item.dest,
                    item.host
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                ),
                md: item.md.clone(),
                is_root_dir: false,
            };
            return write_item(root, &inner, owner, chmod);
        }
        Ok(_) => rustix::fs::unlinkat(&parent, &name, AtFlags::empty())?,
        Err(_) => {}
    }
    if ft.is_symlink() {
        let target = fs::read_link(&item.host)?;
        rustix::fs::symlinkat(&target, &parent, &name)?;
        rustix::fs::chownat(
            &parent,
            &name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        return Ok(());
    }
    let mode = Chmod::apply(chmod, item.md.mode() & 0o7777, false);
    let fd = rustix::fs::openat(
        &parent,
        &name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut out = File::from(fd);
    let mut input = File::open(&item.host)?;
    io::copy(&mut input, &mut out)?;
    rustix::fs::fchown(&out, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    rustix::fs::fchmod(&out, Mode::from_raw_mode(mode))?;
    set_times(&out, &item.md)?;
    Ok(())
}

/// Creates the missing directories of `path` owned by `uid:gid`, as
/// buildah and BuildKit do for `COPY --chown`.
pub(crate) fn create_parents(root: &Root, path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let mut prefix = PathBuf::new();
    for c in path.components() {
        prefix.push(c);
        if root.dir(&prefix, false).is_ok() {
            continue;
        }
        let fd = root
            .dir(&prefix, true)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let fd = reopen_dir(&fd)?;
        rustix::fs::fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
    }
    Ok(())
}

struct FileTypeBits;

impl FileTypeBits {
    fn is_dir(mode: u32) -> bool {
        mode & 0o170000 == 0o040000
    }
}

fn reopen_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn set_times(fd: impl AsFd, md: &fs::Metadata) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: md.mtime(),
        tv_nsec: md.mtime_nsec() as _,
    };
    rustix::fs::futimens(
        fd,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        fs::create_dir_all(t.join("usr/bin")).unwrap();
        fs::write(t.join("usr/bin/real"), "x").unwrap();
        std::os::unix::fs::symlink("/usr/bin/real", t.join("usr/bin/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../etc/passwd", t.join("up")).unwrap();
        fs::create_dir_all(t.join("etc")).unwrap();
        fs::write(t.join("etc/passwd"), "inside").unwrap();
        std::os::unix::fs::symlink("/loop", t.join("loop")).unwrap();
        assert_eq!(
            resolve_in_tree(t, "usr/bin/abs").unwrap(),
            t.join("usr/bin/real")
        );
        assert_eq!(resolve_in_tree(t, "up").unwrap(), t.join("etc/passwd"));
        assert!(resolve_in_tree(t, "up").unwrap().starts_with(t));
        assert!(
            resolve_in_tree(t, "loop").is_err(),
            "a link to itself loops"
        );
    }
}
