//! Test fixtures shared by kontti's test suites.
//!
//! * [`Rootfs`] builds a busybox root filesystem from Debian's `busybox-static`
//!   (`/bin/busybox`): the static binary plus one symlink per applet, and the
//!   few files (`/etc/passwd`, `/etc/group`) that tests need.
//! * [`Bundle`] is an OCI bundle around such a rootfs with a runc-like default
//!   `config.json` that tests edit as JSON before writing it.
//! * [`write_rootfs_tar`] writes such a rootfs as a tarball for `kontti import`.
//! * [`HostSnapshot`] records the host's mounts, cgroups and processes so that a
//!   test can assert it left nothing behind.
//! * [`require_root`] fails loudly (never skips) when a root-only test runs
//!   without root.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

mod host;
pub use host::HostSnapshot;

/// Where Debian's busybox-static puts its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// Panics with a clear message unless the test runs as root. Root tests are
/// never skipped silently: CI runs as root.
pub fn require_root() {
    // getuid via /proc to stay free of unsafe and libc in this crate.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    assert_eq!(
        uid, "0",
        "this test needs root (it creates namespaces, mounts and cgroups); run the suite as root, as CI does"
    );
}

/// Returns the path of busybox, panicking with an install hint if it is missing.
pub fn busybox() -> &'static Path {
    let p = Path::new(BUSYBOX);
    assert!(
        p.exists(),
        "{BUSYBOX} is missing: install Debian's busybox-static (scripts/test.sh does)"
    );
    p
}

/// A busybox root filesystem in a directory.
pub struct Rootfs {
    path: PathBuf,
}

impl Rootfs {
    /// Builds a busybox rootfs at `path` (created if missing).
    pub fn create(path: &Path) -> io::Result<Rootfs> {
        let bb = busybox();
        for d in [
            "bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
            "home", "var", "run",
        ] {
            fs::create_dir_all(path.join(d))?;
        }
        fs::set_permissions(path.join("tmp"), fs::Permissions::from_mode(0o1777))?;
        fs::copy(bb, path.join("bin/busybox"))?;
        fs::set_permissions(path.join("bin/busybox"), fs::Permissions::from_mode(0o755))?;
        let list = Command::new(bb).arg("--list-full").output()?;
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let applet = applet.trim();
            if applet.is_empty() || applet == "bin/busybox" {
                continue;
            }
            let link = path.join(applet);
            if link.symlink_metadata().is_ok() {
                continue;
            }
            symlink("/bin/busybox", &link)?;
        }
        fs::write(
            path.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
        )?;
        fs::write(
            path.join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\nuser:x:1000:\nextra:x:2000:user\n",
        )?;
        fs::write(path.join("etc/hostname"), "busybox\n")?;
        Ok(Rootfs {
            path: path.to_owned(),
        })
    }

    /// The rootfs directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Writes a busybox root filesystem as a tar archive at `path` (numeric
/// owners, root-owned entries), ready for `kontti import`.
pub fn write_rootfs_tar(path: &Path) -> io::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("kontti-rootfs-")
        .tempdir()?;
    Rootfs::create(dir.path())?;
    let status = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(dir.path())
        .arg("-cf")
        .arg(path)
        .arg(".")
        .status()?;
    if !status.success() {
        return Err(io::Error::other(format!(
            "tar failed writing {}: {status}",
            path.display()
        )));
    }
    Ok(())
}

/// An OCI bundle (a directory with `rootfs/` and `config.json`) in its own
/// temporary directory, removed on drop.
pub struct Bundle {
    dir: tempfile::TempDir,
    /// The config that [`Bundle::write_config`] writes; edit it freely.
    pub config: Value,
}

impl Bundle {
    /// Creates a bundle whose process runs `args`.
    pub fn new(args: &[&str]) -> io::Result<Bundle> {
        let dir = tempfile::Builder::new()
            .prefix("kontti-bundle-")
            .tempdir()?;
        Rootfs::create(&dir.path().join("rootfs"))?;
        let mut b = Bundle {
            dir,
            config: default_config(args),
        };
        b.write_config()?;
        Ok(b)
    }

    /// The bundle directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The rootfs directory inside the bundle.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// Writes [`Bundle::config`] to `config.json`.
    pub fn write_config(&mut self) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(&self.config).map_err(io::Error::other)?;
        fs::write(self.dir.path().join("config.json"), text)
    }
}

/// A runc-like default config for a busybox rootfs running `args`, without a
/// terminal: the runtime's own default spec ([`default_spec`], what
/// `kontti-runc spec` writes) with a writable root, the hostname `kontti` and
/// `args`. The same document is used for kontti-runc, runc and crun in
/// benchmarks, so it only uses fields all three support.
///
/// [`default_spec`]: kontti_runtime::templates::default_spec
pub fn default_config(args: &[&str]) -> Value {
    let mut v = kontti_runtime::templates::default_spec(false, 0, 0);
    v["process"]["terminal"] = json!(false);
    v["process"]["args"] = json!(args);
    v["root"]["readonly"] = json!(false);
    v["hostname"] = json!("kontti");
    v
}
