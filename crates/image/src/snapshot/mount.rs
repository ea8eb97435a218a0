//! Mount descriptions and mounting them.

use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

/// One mount: what [`mount_all`] mounts at a target to expose a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `bind` or `overlay`.
    pub kind: String,
    /// The source directory (`overlay` for overlay mounts).
    pub source: PathBuf,
    /// Options: `ro`, `rbind`, or overlay's `lowerdir=`, `upperdir=`, `workdir=`.
    pub options: Vec<String>,
}

impl Mount {
    /// A bind mount of `dir`.
    pub fn bind(dir: PathBuf, readonly: bool) -> Mount {
        let mut options = vec!["rbind".to_owned()];
        options.push(if readonly { "ro" } else { "rw" }.to_owned());
        Mount {
            kind: "bind".into(),
            source: dir,
            options,
        }
    }

    /// An overlay of `lowers` (nearest first), writable with `(upper, work)`.
    pub fn overlay(lowers: &[PathBuf], upper: Option<(PathBuf, PathBuf)>) -> Mount {
        let lower = lowers
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let mut options = vec![format!("lowerdir={lower}")];
        if let Some((u, w)) = upper {
            options.push(format!("upperdir={}", u.display()));
            options.push(format!("workdir={}", w.display()));
        } else {
            options.push("ro".into());
        }
        Mount {
            kind: "overlay".into(),
            source: PathBuf::from("overlay"),
            options,
        }
    }

    /// The lower directories of an overlay mount, nearest first.
    pub fn lowerdirs(&self) -> Vec<PathBuf> {
        self.option("lowerdir")
            .map(|l| l.split(':').map(PathBuf::from).collect())
            .unwrap_or_default()
    }

    /// The value of option `key=`.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    fn readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }
}

/// Mounts `mounts` at `target`, in order. Overlays are set up through the
/// new mount API with one `lowerdir+` per layer, so deep layer stacks are
/// not limited by the one-page size of the legacy mount option string.
pub fn mount_all(mounts: &[Mount], target: &Path) -> std::io::Result<()> {
    for m in mounts {
        match m.kind.as_str() {
            "bind" => {
                rustix::mount::mount_bind_recursive(&m.source, target)?;
                if m.readonly() {
                    rustix::mount::mount_remount(
                        target,
                        MountFlags::BIND | MountFlags::RDONLY,
                        "",
                    )?;
                }
            }
            "overlay" => mount_overlay(m, target)?,
            other => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("unknown mount type {other:?}"),
                ));
            }
        }
    }
    Ok(())
}

fn mount_overlay(m: &Mount, target: &Path) -> std::io::Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for l in m.lowerdirs() {
        match rustix::mount::fsconfig_set_string(&fs, "lowerdir+", &l) {
            Ok(()) => {}
            // Kernels before 6.5 have no "lowerdir+": use the legacy option
            // string, which works while it fits in a page.
            Err(rustix::io::Errno::INVAL) => return mount_overlay_legacy(m, target),
            Err(e) => return Err(e.into()),
        }
    }
    if let (Some(u), Some(w)) = (m.option("upperdir"), m.option("workdir")) {
        rustix::mount::fsconfig_set_string(&fs, "upperdir", u)?;
        rustix::mount::fsconfig_set_string(&fs, "workdir", w)?;
    }
    rustix::mount::fsconfig_create(&fs)?;
    let attrs = if m.readonly() {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

fn mount_overlay_legacy(m: &Mount, target: &Path) -> std::io::Result<()> {
    let data = m
        .options
        .iter()
        .filter(|o| *o != "ro")
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    let data = std::ffi::CString::new(data).map_err(std::io::Error::other)?;
    let flags = if m.readonly() {
        MountFlags::RDONLY
    } else {
        MountFlags::empty()
    };
    rustix::mount::mount("overlay", target, "overlay", flags, data.as_c_str())?;
    Ok(())
}

/// Unmounts the `count` mounts [`mount_all`] stacked at `target`.
pub fn unmount_all(target: &Path, count: usize) -> std::io::Result<()> {
    for _ in 0..count {
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) => {}
            Err(rustix::io::Errno::INVAL) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
