//! Snapshots of host state for leak checks.
//!
//! The host is not clean (docker0, other tools' cgroups and mounts may exist),
//! so a leak check compares against a snapshot taken before the test, never
//! against "empty".

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The parts of host state a kontti test could leak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    /// Mount points from /proc/self/mountinfo.
    pub mounts: BTreeSet<String>,
    /// Cgroup directories (relative paths under /sys/fs/cgroup) whose name
    /// contains `filter`.
    pub cgroups: BTreeSet<String>,
    /// Network interfaces.
    pub links: BTreeSet<String>,
}

impl HostSnapshot {
    /// Takes a snapshot; `filter` narrows cgroups to those containing it (a
    /// test's unique prefix), so that unrelated activity does not count.
    pub fn take(filter: &str) -> HostSnapshot {
        let mounts = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .collect();
        let mut cgroups = BTreeSet::new();
        walk(
            Path::new("/sys/fs/cgroup"),
            Path::new(""),
            filter,
            &mut cgroups,
            0,
        );
        let links = fs::read_dir("/sys/class/net")
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        HostSnapshot {
            mounts,
            cgroups,
            links,
        }
    }

    /// Asserts that nothing was added since `before`.
    pub fn assert_no_leaks_since(&self, before: &HostSnapshot) {
        let new_mounts: Vec<_> = self.mounts.difference(&before.mounts).collect();
        let new_cgroups: Vec<_> = self.cgroups.difference(&before.cgroups).collect();
        let new_links: Vec<_> = self.links.difference(&before.links).collect();
        assert!(
            new_mounts.is_empty() && new_cgroups.is_empty() && new_links.is_empty(),
            "leaked host state: mounts {new_mounts:?}, cgroups {new_cgroups:?}, links {new_links:?}"
        );
    }
}

fn walk(root: &Path, rel: &Path, filter: &str, out: &mut BTreeSet<String>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Ok(rd) = fs::read_dir(root.join(rel)) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(ft) = e.file_type() else { continue };
        if !ft.is_dir() {
            continue;
        }
        let child = rel.join(e.file_name());
        let s = child.to_string_lossy().into_owned();
        if s.contains(filter) {
            out.insert(s);
        }
        walk(root, &child, filter, out, depth + 1);
    }
}
