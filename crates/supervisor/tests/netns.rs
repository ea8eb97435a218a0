//! `kontti-supervisor pin-netns` and `netns::unpin`.
#![allow(clippy::disallowed_macros)]

mod common;

use kontti_supervisor::netns;

fn mounted(path: &std::path::Path) -> bool {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap();
    text.lines().any(|l| l.split(' ').nth(4) == Some(p))
}

#[test]
fn pin_and_unpin_leave_no_mount() {
    kontti_testutil::require_root();
    let before = kontti_testutil::HostSnapshot::take("ksv-netns");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns1");
    let bin = std::path::Path::new(common::BIN);
    netns::pin_with(bin, &path).expect("pin");
    assert!(mounted(&path));
    // a namespace of its own, with loopback up
    let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
    let pinned = std::fs::metadata(&path).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(ours.ino(), pinned.ino());
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .args(["ip", "-o", "link", "show", "lo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("UP"), "{text}");
    // pinning again on the same path is refused
    let e = netns::pin_with(bin, &path).unwrap_err();
    assert_eq!(e.kind(), kontti_core::ErrorKind::AlreadyExists, "{e}");
    assert!(mounted(&path));

    netns::unpin(&path).expect("unpin");
    assert!(!mounted(&path));
    assert!(!path.exists());
    netns::unpin(&path).expect("unpin is idempotent");
    // a path whose directory does not exist
    let e = netns::pin_with(bin, &dir.path().join("no/dir/ns")).unwrap_err();
    assert!(e.to_string().contains("no/dir/ns"), "{e}");
    // other tests run beside this one: only mounts under our directory count
    let ours = |s: kontti_testutil::HostSnapshot| kontti_testutil::HostSnapshot {
        mounts: s
            .mounts
            .into_iter()
            .filter(|m| m.starts_with(dir.path().to_str().unwrap()))
            .collect(),
        ..s
    };
    ours(kontti_testutil::HostSnapshot::take("ksv-netns")).assert_no_leaks_since(&ours(before));
}

#[test]
fn a_container_joining_a_pinned_namespace_is_supervised_to_its_exit() {
    // joining by path puts an intermediate process between the supervisor
    // and the init, which the supervisor then reaps as a subreaper
    let mut w = common::World::new(
        "joinns",
        &["sh", "-c", "cat /sys/class/net/lo/operstate; exit 3"],
    );
    let ns = w.root.path().join("netns");
    netns::pin_with(std::path::Path::new(common::BIN), &ns).expect("pin");
    let nss = w.config()["linux"]["namespaces"].as_array_mut().unwrap();
    for n in nss.iter_mut() {
        if n["type"] == "network" {
            n["path"] = serde_json::json!(ns.to_str().unwrap());
        }
    }
    let c = w.command();
    w.start(&c);
    let exit = w.wait_exit();
    assert_eq!((exit.exit_code, exit.error), (3, None));
    assert_eq!(
        w.log_text(kontti_supervisor::crilog::Stream::Stdout),
        "unknown\n"
    );
    netns::unpin(&ns).expect("unpin");
    w.assert_clean();
}

#[test]
fn pin_from_a_threaded_process_leaves_the_callers_namespace_alone() {
    kontti_testutil::require_root();
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &str| std::fs::metadata(p).unwrap().ino();
    let (process_before, thread_before) =
        (ino("/proc/self/ns/net"), ino("/proc/thread-self/ns/net"));
    // other threads running while the pin happens
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                ino("/proc/thread-self/ns/net")
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ns");
    netns::pin(&path).expect("pin");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in busy {
        assert_eq!(t.join().unwrap(), process_before, "another thread moved");
    }
    assert_eq!(ino("/proc/self/ns/net"), process_before);
    assert_eq!(ino("/proc/thread-self/ns/net"), thread_before);
    assert!(mounted(&path));
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), process_before);
    let out = std::process::Command::new("nsenter")
        .arg(format!("--net={}", path.display()))
        .args(["ip", "-o", "link", "show", "lo"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("UP"), "{text}");
    let e = netns::pin(&path).unwrap_err();
    assert_eq!(e.kind(), kontti_core::ErrorKind::AlreadyExists, "{e}");
    netns::unpin(&path).expect("unpin");
    assert!(!mounted(&path));
    let e = netns::pin(&dir.path().join("no/dir/ns")).unwrap_err();
    assert!(e.to_string().contains("no/dir/ns"), "{e}");
}
