//! Where the cgroup hierarchies are mounted, read from `/proc/self/mountinfo`
//! (or laid out under a root directory, for tests against a fake tree).

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::CgroupError;

/// Which cgroup version a host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hierarchy {
    /// Only v1 controller hierarchies are mounted.
    V1,
    /// v1 controllers plus a cgroup2 mount without controllers (usually at
    /// `/sys/fs/cgroup/unified`), used for `cgroup.kill` when present.
    Hybrid,
    /// One cgroup2 hierarchy holds every controller.
    V2,
}

/// One mounted v1 hierarchy: its controllers (`name=systemd` for named ones)
/// and its mount point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1Mount {
    /// Controllers bound to this hierarchy, e.g. `["cpu", "cpuacct"]`.
    pub controllers: Vec<String>,
    /// Where the hierarchy is mounted.
    pub mount_point: PathBuf,
}

/// The mounted cgroup hierarchies of a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The version the host runs.
    pub mode: Hierarchy,
    /// v1 hierarchies (empty on pure v2).
    pub v1: Vec<V1Mount>,
    /// The cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
}

impl Layout {
    /// Reads the layout of the calling process's mount namespace.
    pub fn detect() -> Result<Layout, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(|source| CgroupError::Read {
            path: path.to_owned(),
            source,
        })?;
        Layout::from_mountinfo(&text)
    }

    /// Parses mountinfo text (see proc(5)).
    pub fn from_mountinfo(text: &str) -> Result<Layout, CgroupError> {
        let mut v1 = Vec::new();
        let mut unified = None;
        for line in text.lines() {
            // Fields: id parent maj:min root mount-point options [optional...] - fstype source super-options
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mount_point) = pre.split(' ').nth(4) else {
                continue;
            };
            let mut post = post.split(' ');
            let fstype = post.next().unwrap_or("");
            let super_opts = post.nth(1).unwrap_or("");
            let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
            match fstype {
                "cgroup2" if unified.is_none() => unified = Some(mount_point),
                "cgroup" => {
                    let controllers: Vec<String> = super_opts
                        .split(',')
                        .filter(|o| is_controller_option(o))
                        .map(str::to_owned)
                        .collect();
                    if controllers.is_empty() {
                        continue;
                    }
                    // A hierarchy may be mounted twice; keep the first.
                    if !v1.iter().any(|m: &V1Mount| m.controllers == controllers) {
                        v1.push(V1Mount {
                            controllers,
                            mount_point,
                        });
                    }
                }
                _ => {}
            }
        }
        let mode = match (v1.is_empty(), unified.is_some()) {
            (false, false) => Hierarchy::V1,
            (false, true) => Hierarchy::Hybrid,
            (true, true) => Hierarchy::V2,
            (true, false) => return Err(CgroupError::NoHierarchy),
        };
        Ok(Layout { mode, v1, unified })
    }

    /// A layout under `root` as a host would mount it, for tests against a
    /// fake tree and for hosts with the usual `/sys/fs/cgroup` layout.
    ///
    /// * `V2`: `root` is the cgroup2 mount.
    /// * `V1`/`Hybrid`: each directory under `root` is a hierarchy named after
    ///   its controllers (`cpu,cpuacct`, `memory`; `systemd` means
    ///   `name=systemd`); for `Hybrid`, `root/unified` is the cgroup2 mount.
    pub fn under_root(root: &Path, mode: Hierarchy) -> Result<Layout, CgroupError> {
        if mode == Hierarchy::V2 {
            return Ok(Layout {
                mode,
                v1: Vec::new(),
                unified: Some(root.to_owned()),
            });
        }
        let rd = fs::read_dir(root).map_err(|source| CgroupError::Read {
            path: root.to_owned(),
            source,
        })?;
        let mut v1 = Vec::new();
        let mut unified = None;
        for entry in rd.filter_map(Result::ok) {
            let Ok(ft) = entry.file_type() else { continue };
            if !ft.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "unified" {
                if mode == Hierarchy::Hybrid {
                    unified = Some(entry.path());
                }
                continue;
            }
            let controllers = name
                .split(',')
                .map(|c| {
                    if c == "systemd" {
                        "name=systemd".to_owned()
                    } else {
                        c.to_owned()
                    }
                })
                .collect();
            v1.push(V1Mount {
                controllers,
                mount_point: entry.path(),
            });
        }
        if v1.is_empty() {
            return Err(CgroupError::NoHierarchy);
        }
        v1.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
        Ok(Layout { mode, v1, unified })
    }
}

/// Whether a cgroup v1 super option names a controller (rather than a mount
/// option such as `rw` or `clone_children`).
fn is_controller_option(opt: &str) -> bool {
    const NOT_CONTROLLERS: &[&str] = &[
        "rw",
        "ro",
        "noprefix",
        "clone_children",
        "xattr",
        "cpuset_v2_mode",
        "favordynmods",
    ];
    !opt.is_empty()
        && !NOT_CONTROLLERS.contains(&opt)
        && !opt.starts_with("release_agent=")
        && !opt.starts_with("none")
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let l = Layout::from_mountinfo(HYBRID).unwrap();
        assert_eq!(l.mode, Hierarchy::Hybrid);
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(l.v1.len(), 3);
        assert_eq!(l.v1[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(l.v1[2].controllers, ["name=systemd"]);
    }

    #[test]
    fn parses_pure_v2_and_escapes() {
        let l = Layout::from_mountinfo(
            "30 1 0:26 / /sys/fs/cg\\040root rw - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .unwrap();
        assert_eq!(l.mode, Hierarchy::V2);
        assert_eq!(l.unified.as_deref(), Some(Path::new("/sys/fs/cg root")));
    }

    #[test]
    fn no_cgroup_mount_is_an_error() {
        let e = Layout::from_mountinfo("1 0 0:1 / / rw - ext4 /dev/sda rw\n").unwrap_err();
        assert!(e.to_string().contains("no cgroup"), "{e}");
    }

    #[test]
    fn reads_this_host() {
        let l = Layout::detect().unwrap();
        assert!(!l.v1.is_empty() || l.unified.is_some());
    }
}
