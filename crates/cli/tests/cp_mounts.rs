//! `kontti cp` through a container's volumes, bind mounts and tmpfs mounts,
//! end to end with real containers (as root): the path is resolved against
//! the container's mounts as docker does, in both directions, for created,
//! running and exited containers; read-only mounts and a `--read-only`
//! root filesystem refuse writes; a symlink in a volume never takes the
//! copy to a host file.
#![allow(clippy::disallowed_macros)]

#[path = "container_support/mod.rs"]
mod container_support;

use std::path::Path;
use std::time::Duration;

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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn exited(k: &Kontti, c: &str) {
    k.wait_for(c, Duration::from_secs(10), |v| {
        v["State"]["Status"] == "exited"
    });
}

#[test]
fn cp_into_a_named_volume_is_seen_by_another_container_and_out_of_a_bind_mount() {
    let k = Kontti::new();
    let cleanup = Cleanup(&k);
    let host = k.dir.path().join("host");
    let bind = k.dir.path().join("bind");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::create_dir_all(&bind).unwrap();
    std::fs::write(bind.join("from-host"), "bound\n").unwrap();
    let file = host.join("f.txt");
    std::fs::write(&file, "into the volume\n").unwrap();
    let bind_spec = format!("{}:/srv", bind.display());

    // running: the image's /data is not where the file goes
    k.run_detached(
        &["--name", "a", "-v", "vol1:/data", "-v", &bind_spec],
        &["sh", "-c", "echo made > /srv/made-inside; sleep 60"],
    );
    k.ok(&["cp", s(&file), "a:/data"]);
    k.ok(&["cp", s(&file), "a:/data/renamed.txt"]);
    let cg = k.cgroup_parent.clone();
    let read = k.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "-v",
        "vol1:/v:ro",
        "busybox",
        "cat",
        "/v/f.txt",
        "/v/renamed.txt",
    ]);
    assert_eq!(read, "into the volume\ninto the volume\n");

    // out of a bind mount of the running container: what it wrote there
    k.wait_for("a", Duration::from_secs(10), |_| {
        bind.join("made-inside").exists()
    });
    let out = host.join("made");
    k.ok(&["cp", "a:/srv/made-inside", s(&out)]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "made\n");
    // a whole mounted directory, as the container sees it
    let tree = host.join("tree");
    k.ok(&["cp", "a:/srv", s(&tree)]);
    assert_eq!(
        std::fs::read_to_string(tree.join("from-host")).unwrap(),
        "bound\n"
    );
    // the host path of a running bind mount swapped for a symlink to the
    // host's /etc: cp still sees the mounted directory, as the container does
    let moved = k.dir.path().join("bind-moved");
    std::fs::rename(&bind, &moved).unwrap();
    std::os::unix::fs::symlink("/etc", &bind).unwrap();
    let e = k.fails(&["cp", "a:/srv/passwd", s(&host)], 125);
    assert!(e.contains("No such file"), "{e}");
    assert!(!host.join("passwd").exists());
    k.ok(&["cp", "a:/srv/from-host", s(&host.join("still"))]);
    std::fs::remove_file(&bind).unwrap();
    std::fs::rename(&moved, &bind).unwrap();
    // a copy of the container's / goes into its volumes and bind mounts
    let all = host.join("all");
    k.ok(&["cp", "a:/", s(&all)]);
    assert!(all.join("data/renamed.txt").is_file());
    assert!(all.join("srv/from-host").is_file());
    assert!(all.join("bin/busybox").is_file());

    // stopped (exited) and never started (created) containers
    k.ok(&["stop", "-t", "1", "a"]);
    exited(&k, "a");
    let out2 = host.join("f-stopped");
    k.ok(&["cp", "a:/data/f.txt", s(&out2)]);
    assert_eq!(std::fs::read_to_string(&out2).unwrap(), "into the volume\n");
    k.ok(&["cp", "a:/srv/from-host", s(&host.join("b-stopped"))]);
    k.ok(&[
        "create",
        "--name",
        "c",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "-v",
        "vol1:/other",
        "busybox",
        "true",
    ]);
    std::fs::write(&file, "from a created one\n").unwrap();
    k.ok(&["cp", s(&file), "c:/other/created.txt"]);
    let out3 = host.join("created-back");
    k.ok(&["cp", "a:/data/created.txt", s(&out3)]);
    assert_eq!(
        std::fs::read_to_string(&out3).unwrap(),
        "from a created one\n"
    );

    drop(cleanup);
    k.ok(&["rm", "-f", "a", "c"]);
    k.ok(&["volume", "rm", "vol1"]);
    k.finish();
}

#[test]
fn cp_into_a_read_only_volume_is_refused_and_symlinks_in_a_volume_stay_inside() {
    let k = Kontti::new();
    let cleanup = Cleanup(&k);
    let host = k.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    let file = host.join("f.txt");
    std::fs::write(&file, "x\n").unwrap();
    let shadow_before = std::fs::read("/etc/shadow").unwrap();
    let victim = host.join("victim");
    let script = format!(
        "ln -s /etc/shadow /data/shadow && ln -s /etc /data/etc && \
         ln -s ../../../../../../.. /data/up && ln -s {} /data/trap && \
         echo container > /etc/shadow && sleep 60",
        victim.display()
    );
    k.run_detached(
        &["--name", "v", "-v", "links:/data", "-v", "ro1:/ro:ro"],
        &["sh", "-c", &script],
    );
    k.wait_for("v", Duration::from_secs(10), |_| {
        k.run(&["exec", "v", "test", "-f", "/etc/shadow"])
            .status
            .success()
    });

    for dest in ["v:/ro", "v:/ro/f.txt"] {
        let e = k.fails(&["cp", s(&file), dest], 125);
        assert!(e.contains("mounted volume is marked read-only"), "{e}");
    }
    let listing = k.ok(&["exec", "v", "ls", "-A", "/ro"]);
    assert_eq!(listing, "", "a read-only volume was written");

    // a symlink to /etc/shadow comes out as a symlink, never the host's file
    let out = host.join("shadow");
    k.ok(&["cp", "v:/data/shadow", s(&out)]);
    assert_eq!(std::fs::read_link(&out).unwrap(), Path::new("/etc/shadow"));
    // through a symlinked directory: the container's /etc, not the host's
    let out2 = host.join("shadow2");
    k.ok(&["cp", "v:/data/etc/shadow", s(&out2)]);
    assert_eq!(std::fs::read_to_string(&out2).unwrap(), "container\n");
    // .. in a volume cannot climb out of the container
    let e = k.fails(&["cp", "v:/data/up/etc/shadow", s(&host)], 125);
    assert!(e.contains("escapes"), "{e}");
    // writes never go through the symlinks to host files
    k.fails(&["cp", s(&file), "v:/data/shadow"], 125);
    k.fails(&["cp", s(&file), "v:/data/trap"], 125);
    assert!(!victim.exists(), "wrote through a symlink to the host");
    assert_eq!(std::fs::read("/etc/shadow").unwrap(), shadow_before);

    // the same once it has stopped
    k.ok(&["stop", "-t", "1", "v"]);
    exited(&k, "v");
    let e = k.fails(&["cp", s(&file), "v:/ro/f.txt"], 125);
    assert!(e.contains("mounted volume is marked read-only"), "{e}");
    let out3 = host.join("shadow3");
    k.ok(&["cp", "v:/data/etc/shadow", s(&out3)]);
    assert_eq!(std::fs::read_to_string(&out3).unwrap(), "container\n");
    assert_eq!(std::fs::read("/etc/shadow").unwrap(), shadow_before);

    drop(cleanup);
    k.ok(&["rm", "-f", "v"]);
    k.ok(&["volume", "rm", "links", "ro1"]);
    k.finish();
}

#[test]
fn cp_reaches_a_running_containers_tmpfs_and_refuses_a_stopped_ones_and_a_read_only_rootfs() {
    let k = Kontti::new();
    let cleanup = Cleanup(&k);
    let host = k.dir.path().join("host");
    std::fs::create_dir_all(&host).unwrap();
    k.run_detached(
        &["--name", "t", "--read-only", "--tmpfs", "/scratch"],
        &["sh", "-c", "echo in-tmpfs > /scratch/x; sleep 60"],
    );
    k.wait_for("t", Duration::from_secs(10), |_| {
        k.run(&["exec", "t", "test", "-f", "/scratch/x"])
            .status
            .success()
    });
    let out = host.join("x");
    k.ok(&["cp", "t:/scratch/x", s(&out)]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "in-tmpfs\n");
    let file = host.join("y");
    std::fs::write(&file, "copied in\n").unwrap();
    k.ok(&["cp", s(&file), "t:/scratch"]);
    assert_eq!(k.ok(&["exec", "t", "cat", "/scratch/y"]), "copied in\n");
    // the --read-only root filesystem itself refuses the copy
    let e = k.fails(&["cp", s(&file), "t:/"], 125);
    assert!(e.contains("container rootfs is marked read-only"), "{e}");

    k.ok(&["stop", "-t", "1", "t"]);
    exited(&k, "t");
    let e = k.fails(&["cp", "t:/scratch/x", s(&host)], 125);
    assert!(e.contains("only while the container runs"), "{e}");
    drop(cleanup);
    k.finish();
}
