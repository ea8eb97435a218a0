//! Pinned network namespaces: a new namespace whose nsfs file is
//! bind-mounted on a path, so that it lives without any process in it and
//! can be joined by path (a pod's or container's network outlives its
//! processes).
//!
//! [`pin`] unshares in a thread of its own that ends right after (the
//! namespace lives on through the mount; `unshare(CLONE_NEWNET)` moves the
//! calling thread only, so the caller's other threads stay where they are);
//! [`pin_with`] runs `kontti-supervisor pin-netns PATH` instead, a
//! short-lived process. [`unpin`] is a detach-unmount and unlink, callable
//! from anywhere.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kontti_core::ErrorKind;
use kontti_runtime::sys::{cpath, fs as rfs, process as rproc};

/// Pinning or unpinning failed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// Something exists at the path already.
    #[error("network namespace {0}: the path exists already")]
    Exists(PathBuf),
    /// A step failed.
    #[error("network namespace {path}: {op}: {source}")]
    Io {
        /// The pin path.
        path: PathBuf,
        /// The step.
        op: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// `kontti-supervisor pin-netns` failed.
    #[error("network namespace {path}: {message}")]
    Helper {
        /// The pin path.
        path: PathBuf,
        /// Its message.
        message: String,
    },
}

impl NetnsError {
    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetnsError::Exists(_) => ErrorKind::AlreadyExists,
            NetnsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            NetnsError::Io { source, .. } if source.kind() == io::ErrorKind::PermissionDenied => {
                ErrorKind::Forbidden
            }
            _ => ErrorKind::Internal,
        }
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> NetnsError + 'a {
    move |source| NetnsError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

/// Pins a new network namespace (loopback up) on `path` from a thread
/// spawned for it, which ends afterwards: no process to fork and exec.
pub fn pin(path: &Path) -> Result<(), NetnsError> {
    let owned = path.to_owned();
    std::thread::Builder::new()
        .name("pin-netns".into())
        .spawn(move || pin_here(&owned))
        .map_err(io_err(path, "spawn a thread"))?
        .join()
        .map_err(|_| NetnsError::Helper {
            path: path.to_owned(),
            message: "the pinning thread panicked".into(),
        })?
}

/// [`pin`] with an explicit supervisor binary.
pub fn pin_with(binary: &Path, path: &Path) -> Result<(), NetnsError> {
    let out = Command::new(binary)
        .arg("pin-netns")
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(io_err(path, "run the supervisor"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let message = text.lines().next().unwrap_or("").trim().to_owned();
    if out.status.code() == Some(ErrorKind::AlreadyExists.exit_code()) {
        return Err(NetnsError::Exists(path.to_owned()));
    }
    Err(NetnsError::Helper {
        path: path.to_owned(),
        message: if message.is_empty() {
            format!("pin-netns exited ({})", out.status)
        } else {
            message
        },
    })
}

/// What `pin-netns` does: moves the calling thread into a new network
/// namespace, brings its loopback up and bind-mounts it on `path` (created
/// as an empty file, 0444). The caller is a single-threaded process or a
/// thread of its own ([`pin`]), and should end afterwards. On failure
/// nothing is left at `path`.
pub fn pin_here(path: &Path) -> Result<(), NetnsError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path);
    match file {
        Ok(f) => drop(f),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(NetnsError::Exists(path.to_owned()));
        }
        Err(e) => return Err(io_err(path, "create")(e)),
    }
    let r = (|| {
        rproc::unshare(libc::CLONE_NEWNET).map_err(io_err(path, "unshare"))?;
        crate::sys::loopback_up().map_err(io_err(path, "bring loopback up"))?;
        let target = cpath(path).map_err(io_err(path, "mount"))?;
        rfs::mount(
            Some(c"/proc/thread-self/ns/net"),
            &target,
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(io_err(path, "bind mount"))
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(path);
    }
    r
}

/// Unmounts (detached) and removes a pinned namespace; a path that is not
/// mounted or does not exist is fine (idempotent).
pub fn unpin(path: &Path) -> Result<(), NetnsError> {
    let target = cpath(path).map_err(io_err(path, "unmount"))?;
    match rfs::umount2(&target, libc::MNT_DETACH) {
        Ok(()) => {}
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => {}
        Err(e) => return Err(io_err(path, "unmount")(e)),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path, "remove")(e)),
    }
}
