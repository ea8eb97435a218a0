//! The host is clean after the suite: nothing left by a kontti-runc test
//! whose test process has ended. Every test's container id is
//! `kt-<name>-<test pid>` and its bundle a `kontti-bundle-*` temp dir, so
//! leftovers of finished tests can be told from tests still running. Run it
//! last (`cargo nextest run -p kontti-runc -E 'test(host_is_clean)'` after
//! the rest); it is also meaningful while other tests run.

use std::path::Path;

/// The pid embedded in a test container id (`kt-<name>-<pid>`).
fn test_pid(name: &str) -> Option<i32> {
    name.strip_prefix("kt-")?.rsplit('-').next()?.parse().ok()
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn host_is_clean_after_the_suite() {
    kontti_testutil::require_root();
    let mut leaks = Vec::new();
    // cgroups of finished tests
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let parent = h.path().join("kontti");
        for c in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            if test_pid(&name).is_some_and(|p| !alive(p)) && c.path().is_dir() {
                leaks.push(format!("cgroup {}", c.path().display()));
            }
        }
    }
    // mounts under bundles that no longer exist
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for l in info.lines() {
        let mp = l.split(' ').nth(4).unwrap_or("");
        if mp.contains("/kontti-bundle-") && !Path::new(mp).exists() {
            leaks.push(format!("mount {mp}"));
        }
    }
    // processes whose root is a removed bundle's rootfs
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(root) = std::fs::read_link(format!("/proc/{pid}/root")) else {
            continue;
        };
        let root = root.to_string_lossy().into_owned();
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
            .unwrap_or(true);
        if root.contains("/kontti-bundle-") && root.ends_with("(deleted)") && !zombie {
            leaks.push(format!("process {pid} in {root}"));
        }
    }
    // state dirs in the default root
    for e in std::fs::read_dir("/run/kontti-runc")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if test_pid(&name).is_some_and(|p| !alive(p)) {
            leaks.push(format!("state dir {}", e.path().display()));
        }
    }
    assert!(
        leaks.is_empty(),
        "left behind by finished tests: {leaks:#?}"
    );
}

#[test]
fn test_pids_are_read_from_ids() {
    assert_eq!(test_pid("kt-exec-1234"), Some(1234));
    assert_eq!(test_pid("kt-no-pid-x"), None);
    assert_eq!(test_pid("other-1"), None);
}
