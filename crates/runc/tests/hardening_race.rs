//! A race against mount-target resolution (CVE-2021-30465 class): while the
//! runtime mounts onto a path in the image, a thread of the test keeps
//! flipping that path between a directory and a symlink to a host directory.
//! Whatever the interleaving, nothing is created or mounted in the host
//! directory. To see this fail, set `IN_ROOT` to `0` in
//! crates/runtime/src/mounts.rs: whenever the path is a symlink at the
//! moment the target is resolved, the mount points are created in the host
//! directory.
#![allow(clippy::disallowed_macros)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{World, scratch};
use serde_json::json;

/// Flips `path` between an empty directory and a symlink to `target`
/// until `stop` is set; returns how many times it was a symlink.
fn flip(path: &Path, target: &Path, stop: &AtomicBool) -> usize {
    let mut flips = 0;
    while !stop.load(Ordering::Relaxed) {
        // the runtime's mount points, if any, go with the directory (its
        // mounts are in the container's mount namespace, not here)
        let _ = std::fs::remove_dir_all(path);
        if std::os::unix::fs::symlink(target, path).is_ok() {
            flips += 1;
        }
        let _ = std::fs::remove_file(path);
        let _ = std::fs::create_dir(path);
    }
    flips
}

#[test]
fn mount_target_swapped_for_a_host_symlink_mid_mount_never_leaves_the_rootfs() {
    let host = scratch();
    let src = scratch();
    std::fs::write(src.join("volume-marker"), "from the volume\n").unwrap();
    let mut w = World::new("mntrace", &["true"]);
    let flipped = w.bundle.rootfs().join("flip");
    std::fs::create_dir(&flipped).unwrap();
    let m = w.config()["mounts"].as_array_mut().unwrap();
    for i in 0..4 {
        m.push(
            json!({"destination": format!("/flip/vol{i}"), "type": "bind",
                      "source": src.to_str().unwrap(), "options": ["rbind", "ro"]}),
        );
        m.push(json!({"destination": format!("/flip/sub{i}"), "type": "tmpfs", "source": "tmpfs"}));
    }
    w.write();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let (path, target, stop) = (flipped.clone(), host.clone(), Arc::clone(&stop));
        std::thread::spawn(move || flip(&path, &target, &stop))
    };
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..40 {
        let out = w.run();
        if out.status.success() {
            ok += 1;
        } else {
            // a refusal is fine (the path vanished mid-way); half-done is not
            common::one_line_error(&out);
            refused += 1;
        }
        let entries: Vec<_> = std::fs::read_dir(&host).unwrap().collect();
        assert!(entries.is_empty(), "host dir touched: {entries:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(host.to_str().unwrap()), "host dir mounted");
        w.assert_clean();
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    eprintln!("{ok} runs succeeded, {refused} refused, {flips} flips");
    assert!(flips > 40, "the path hardly flipped ({flips})");
    std::fs::remove_dir_all(host).unwrap();
    std::fs::remove_dir_all(src).unwrap();
}
