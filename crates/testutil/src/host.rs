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
    ///
    /// Other tests run beside this one and mount or create links of their
    /// own for a while: a mount or link counts as leaked only if it is still
    /// there after up to 30 s (whatever this test left stays; another test's
    /// goes when that test ends). Cgroups are filtered by the test's own
    /// prefix and are judged at once.
    pub fn assert_no_leaks_since(&self, before: &HostSnapshot) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut now = self.clone();
        loop {
            let new_mounts: Vec<_> = now.mounts.difference(&before.mounts).collect();
            let new_cgroups: Vec<_> = now.cgroups.difference(&before.cgroups).collect();
            let new_links: Vec<_> = now.links.difference(&before.links).collect();
            let clean = new_mounts.is_empty() && new_links.is_empty();
            if (clean && new_cgroups.is_empty())
                || !new_cgroups.is_empty()
                || std::time::Instant::now() >= deadline
            {
                assert!(
                    clean && new_cgroups.is_empty(),
                    "leaked host state: mounts {new_mounts:?}, cgroups {new_cgroups:?}, links {new_links:?}"
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
            // only what was seen at first and is still there counts, so a
            // caller's filtering of `self` is kept
            let fresh = HostSnapshot::take("\0no cgroups");
            now.mounts = now.mounts.intersection(&fresh.mounts).cloned().collect();
            now.links = now.links.intersection(&fresh.links).cloned().collect();
        }
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
