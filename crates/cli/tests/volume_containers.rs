//! Volumes with real containers, end to end with the `kontti` binary (as
//! root): data outlives containers, a volume a container uses (running or
//! stopped) cannot be removed, `run --rm` removes its anonymous volumes,
//! and prune leaves used volumes alone.
#![allow(clippy::disallowed_macros)]

#[path = "container_support/mod.rs"]
mod container_support;

use container_support::Kontti;

/// On a failing test, removes the containers of `k` before its state root
/// goes (else they would outlive the test).
struct Cleanup<'a>(&'a Kontti);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let ids = self.0.run(&["ps", "-aq", "--no-trunc"]);
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.0.run(&["rm", "-f", id]);
            }
        }
    }
}

#[test]
fn volume_data_outlives_containers_and_a_used_volume_is_kept() {
    let k = Kontti::new();
    let cleanup = Cleanup(&k);
    let cg = k.cgroup_parent.clone();
    let run = |extra: &[&str]| {
        let mut a = vec!["run", "--rm", "--network", "none", "--cgroup-parent", &cg];
        a.extend_from_slice(extra);
        k.ok(&a)
    };
    run(&[
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        run(&["-v", "data:/data:ro", "busybox", "cat", "/data/f"]),
        "kept\n"
    );
    let err = k.fails(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--cgroup-parent",
            &cg,
            "-v",
            "data:/data:ro",
            "busybox",
            "sh",
            "-c",
            "echo x > /data/g",
        ],
        1,
    );
    assert!(err.contains("Read-only file system"), "{err}");
    let data = k.root().join("volumes/data/_data");
    assert_eq!(std::fs::read_to_string(data.join("f")).unwrap(), "kept\n");

    // A stopped container still holds its volumes.
    let id = k.run_detached(&["--name", "holder", "-v", "data:/data"], &["true"]);
    k.wait_for(&id, std::time::Duration::from_secs(10), |v| {
        v["State"]["Status"] == "exited"
    });
    let err = k.fails(&["volume", "rm", "data"], 4);
    assert_eq!(
        err,
        format!("kontti: volume data is in use by container {}", &id[..12])
    );
    let pruned = k.ok(&["volume", "prune", "--all", "--force"]);
    assert_eq!(pruned, "Total reclaimed space: 0B\n");
    assert_eq!(
        k.ok(&["volume", "ls", "-q", "-f", "dangling=false"]),
        "data\n"
    );
    k.ok(&["rm", "holder"]);
    assert_eq!(k.ok(&["volume", "rm", "data"]), "data\n");
    assert!(!data.exists());

    // run --rm removes the anonymous volume it made.
    run(&[
        "-v",
        "/scratch",
        "busybox",
        "sh",
        "-c",
        "echo x > /scratch/f",
    ]);
    assert_eq!(k.ok(&["volume", "ls", "-q"]), "");
    drop(cleanup);
    k.finish();
}
