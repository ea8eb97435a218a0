//! Unix socket paths longer than `sun_path` allows (108 bytes with the NUL):
//! a state root deep in a temporary directory plus a 64-character container
//! id easily passes that. Such a path is reached through the directory's
//! file descriptor, `/proc/self/fd/N/NAME`, which the kernel resolves like
//! any path.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The longest path `sun_path` takes (it needs a terminating NUL).
const SUN_PATH_MAX: usize = 107;

/// A socket path short enough to bind or connect to; holds the directory
/// open while it is used.
#[derive(Debug)]
pub struct ShortPath {
    _dir: Option<File>,
    path: PathBuf,
}

impl ShortPath {
    /// `path` itself when short enough, else its name under
    /// `/proc/self/fd/N` of its (opened) directory.
    pub fn new(path: &Path) -> io::Result<ShortPath> {
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(ShortPath {
                _dir: None,
                path: path.to_owned(),
            });
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a socket path",
            ));
        };
        let d = File::open(dir)?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())).join(name);
        Ok(ShortPath {
            _dir: Some(d),
            path,
        })
    }

    /// The path to use (valid in this process while `self` lives).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Connects to a unix socket at a path of any length.
pub fn connect(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(ShortPath::new(path)?.path())
}

/// Binds a unix socket at a path of any length.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    UnixListener::bind(ShortPath::new(path)?.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_paths_bind_and_connect_through_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let sock = deep.join("attach.sock");
        assert!(sock.as_os_str().len() > SUN_PATH_MAX);
        assert!(
            UnixListener::bind(&sock).is_err(),
            "the plain path is too long"
        );
        let l = bind(&sock).unwrap();
        assert!(sock.exists());
        let _c = connect(&sock).unwrap();
        assert!(l.accept().is_ok());
        // short paths are used as they are
        let short = root.path().join("s.sock");
        assert_eq!(ShortPath::new(&short).unwrap().path(), short);
    }
}
