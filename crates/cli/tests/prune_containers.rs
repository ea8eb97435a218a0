//! `kontti rmi` and `kontti image prune` never remove the layers under an
//! existing container, created or running: the container's own snapshot
//! sits on the image's chain. Once the containers are gone, prune takes them.
#![allow(clippy::disallowed_macros)]

mod container_support;

use std::time::Duration;

use container_support::Kontti;
use kontti_image::snapshot::{Kind, OverlaySnapshotter, Snapshotter};

fn committed(k: &Kontti) -> Vec<String> {
    OverlaySnapshotter::open(k.root().join("snapshots/overlay"))
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == Kind::Committed)
        .map(|i| i.key)
        .collect()
}

#[test]
fn prune_keeps_the_layers_of_created_and_running_containers() {
    let k = Kontti::new();
    let running = k.run_detached(&["--name", "running"], &["sleep", "1000"]);
    k.ok(&[
        "create",
        "--name",
        "created",
        "--network",
        "none",
        "--cgroup-parent",
        &k.cgroup_parent,
        "busybox",
        "sh",
        "-c",
        "echo created-ok; ls /bin/busybox",
    ]);
    let layers = committed(&k);
    assert_eq!(layers.len(), 1, "{layers:?}");

    let out = k.ok(&["rmi", "-f", "busybox"]);
    assert!(out.contains("Untagged: busybox"), "{out}");
    let out = k.ok(&["image", "prune"]);
    assert!(out.contains(", 0 layers)"), "{out}");
    assert_eq!(committed(&k), layers);

    // Both still work on their layers.
    let out = k.ok(&["exec", "running", "ls", "/bin/busybox"]);
    assert_eq!(out.trim(), "/bin/busybox");
    k.ok(&["start", "created"]);
    k.wait_for("created", Duration::from_secs(10), |v| {
        v["State"]["Status"] == "exited"
    });
    let logs = k.ok(&["logs", "created"]);
    assert_eq!(logs, "created-ok\n/bin/busybox\n");
    assert_eq!(k.inspect(&running)["State"]["Status"], "running");

    // Without the containers, nothing needs the layer.
    k.ok(&["rm", "-f", "running", "created"]);
    let out = k.ok(&["image", "prune"]);
    assert!(out.contains(", 1 layers)"), "{out}");
    assert!(committed(&k).is_empty());
    k.finish();
}
