//! End-to-end tests of the local image commands, driving the real `kontti`
//! binary (and podman, with state of its own, as a peer).
#![allow(clippy::disallowed_macros)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Kontti {
    dir: tempfile::TempDir,
}

impl Kontti {
    fn new() -> Kontti {
        Kontti {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kontti"));
        c.arg("--root").arg(self.root());
        c.env("KONTTI_SNAPSHOTTER", "copy");
        c
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kontti {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    /// Runs a command that must fail with `code`; returns its stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "kontti {args:?}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one-line error expected: {err}"
        );
        err
    }
    fn rootfs_tar(&self) -> PathBuf {
        let p = self.dir.path().join("rootfs.tar");
        if !p.exists() {
            kontti_testutil::write_rootfs_tar(&p).unwrap();
        }
        p
    }
    fn count(&self, sub: &str) -> usize {
        fs::read_dir(self.root().join("content").join(sub))
            .map(|rd| rd.count())
            .unwrap_or(0)
    }
}

fn lines_json(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn import_list_tag_inspect_rmi() {
    let k = Kontti::new();
    let tar = k.rootfs_tar();
    let id = k.ok(&["import", tar.to_str().unwrap(), "busybox"]);
    let id = id.trim().to_owned();
    assert!(id.starts_with("sha256:"), "{id}");
    k.ok(&["tag", "busybox", "localhost:5000/tools/bb:v1"]);
    let rows = lines_json(&k.ok(&["images", "--format", "json"]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["Repository"], "busybox");
    assert_eq!(rows[0]["Tag"], "latest");
    assert_eq!(rows[1]["Repository"], "localhost:5000/tools/bb");
    assert_eq!(rows[0]["ID"], rows[1]["ID"]);
    // An uncompressed layer: its size is the tarball's.
    assert_eq!(rows[0]["VirtualSize"], fs::metadata(&tar).unwrap().len());
    let table = k.ok(&["image", "ls"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(table.contains(&id[7..19]), "{table}");

    let inspect: serde_json::Value =
        serde_json::from_str(&k.ok(&["image", "inspect", "busybox"])).unwrap();
    assert_eq!(inspect[0]["Id"], id.as_str());
    assert_eq!(inspect[0]["Os"], "linux");
    assert_eq!(inspect[0]["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    let tags: Vec<&str> = inspect[0]["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(tags, vec!["busybox:latest", "localhost:5000/tools/bb:v1"]);

    // By id with two names: refused without --force.
    let err = k.fails(&["rmi", &id[7..19]], 4);
    assert!(err.contains("several names"), "{err}");
    let out = k.ok(&["rmi", "busybox"]);
    assert_eq!(out.trim(), "Untagged: busybox:latest");
    let out = k.ok(&["rmi", "localhost:5000/tools/bb:v1"]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
    assert_eq!(k.ok(&["images", "-q"]), "");
    assert_eq!(k.count("blobs/sha256"), 0, "rmi removed the content");
}

#[test]
fn import_change_edits_the_config_and_bad_changes_store_nothing() {
    let k = Kontti::new();
    let tar = k.rootfs_tar();
    let tar = tar.to_str().unwrap();
    k.ok(&[
        "import",
        "--change",
        "ENV GREETING=hello",
        "-c",
        "WORKDIR /srv/$GREETING",
        "-c",
        r#"CMD ["sh", "-c", "echo $GREETING"]"#,
        "-c",
        "ENTRYPOINT /bin/env",
        "-c",
        "EXPOSE 8080",
        "-c",
        "USER 1000",
        "-c",
        "LABEL team=blue",
        "-c",
        "VOLUME /data",
        "-c",
        "STOPSIGNAL SIGTERM",
        tar,
        "demo:1",
    ]);
    let inspect: serde_json::Value =
        serde_json::from_str(&k.ok(&["image", "inspect", "demo:1"])).unwrap();
    let c = &inspect[0]["Config"];
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"GREETING=hello"), "{c}");
    assert!(env.iter().any(|e| e.starts_with("PATH=")), "{c}");
    assert_eq!(c["WorkingDir"], "/srv/hello");
    assert_eq!(c["Cmd"], serde_json::json!(["sh", "-c", "echo $GREETING"]));
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c", "/bin/env"])
    );
    assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(c["User"], "1000");
    assert_eq!(c["Labels"], serde_json::json!({"team": "blue"}));
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");

    let blobs = k.count("blobs/sha256");
    for (change, want) in [
        ("RUN echo hi", "RUN cannot be applied to an image config"),
        ("NOPE x", "invalid --change \"NOPE x\""),
        ("", "invalid --change \"\": empty"),
        ("CMD a\nRUN b", "one instruction per --change"),
    ] {
        let err = k.fails(&["import", "-c", change, tar, "bad:1"], 5);
        assert!(err.contains(want), "{change:?}: {err}");
    }
    assert_eq!(
        k.count("blobs/sha256"),
        blobs,
        "a bad change stored nothing"
    );
    assert_eq!(lines_json(&k.ok(&["images", "--format", "json"])).len(), 1);
}

#[test]
fn bad_input_gives_one_line_errors_and_exit_codes() {
    let k = Kontti::new();
    let err = k.fails(&["image", "inspect", "nosuch"], 2);
    assert!(err.contains("image nosuch:latest not found"), "{err}");
    let err = k.fails(&["tag", "nosuch", "x"], 2);
    assert!(err.contains("not found"), "{err}");
    let err = k.fails(&["image", "inspect", "Bad Name"], 5);
    assert!(err.contains("must be lowercase"), "{err}");
    let err = k.fails(&["import", "/etc/passwd", "x"], 5);
    assert!(
        err.contains("/etc/passwd is not a valid tar archive"),
        "{err}"
    );
    let err = k.fails(&["import", "/nonexistent.tar"], 1);
    assert!(err.contains("opening /nonexistent.tar"), "{err}");
    let bad = k.dir.path().join("bad.tar");
    fs::write(&bad, b"not an archive at all, not even close, nope").unwrap();
    let err = k.fails(&["load", "-i", bad.to_str().unwrap()], 5);
    assert!(err.contains("not"), "{err}");
    let tar = k.rootfs_tar();
    let err = k.fails(&["import", tar.to_str().unwrap(), "x:-bad"], 5);
    assert!(err.contains("bad tag"), "{err}");
    assert_eq!(k.count("blobs/sha256"), 0);
    assert_eq!(k.count("ingest"), 0);
}

#[test]
fn save_and_load_through_pipes_with_podman() {
    kontti_testutil::require_root();
    let k = Kontti::new();
    let tar = k.rootfs_tar();
    let id = k.ok(&["import", tar.to_str().unwrap(), "localhost/piped:1"]);
    let podman_dir = tempfile::tempdir().unwrap();
    let podman = |args: &[&str]| -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(podman_dir.path().join("root"))
            .arg("--runroot")
            .arg(podman_dir.path().join("runroot"))
            .args(["--storage-driver", "vfs", "--events-backend", "none"])
            .args(args);
        c
    };
    // kontti save | podman load
    let mut save = k
        .cmd()
        .args(["save", "localhost/piped:1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let load = podman(&["load"])
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let pid = podman(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "localhost/piped:1",
    ])
    .output()
    .unwrap();
    assert_eq!(String::from_utf8_lossy(&pid.stdout).trim(), &id.trim()[7..]);
    // podman save --format oci-archive | kontti load
    podman(&["tag", "localhost/piped:1", "localhost/back:2"])
        .output()
        .unwrap();
    let mut save = podman(&["save", "--format", "oci-archive", "localhost/back:2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = k
        .cmd()
        .arg("load")
        .stdin(save.stdout.take().unwrap())
        .output()
        .unwrap();
    assert!(save.wait().unwrap().success());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Loaded image: localhost/back:2"
    );
    // not `system reset`: it also empties podman's run directory, which every
    // podman root on the host shares
    let _ = podman(&["rm", "-a", "-f"]).output();
    let _ = podman(&["rmi", "-a", "-f"]).output();
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ingest_bytes(k: &Kontti) -> u64 {
    let dir = k.root().join("content/ingest");
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| fs::metadata(e.path().join("data")).ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_write_leaves_a_consistent_store_and_prune_honours_leases() {
    let k = Kontti::new();
    let tar = fs::read(k.rootfs_tar()).unwrap();
    assert!(tar.len() > 1 << 20);
    let fifo = k.dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = k
        .cmd()
        .args(["import", fifo.to_str().unwrap(), "half:1"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut w = File::create(&fifo).unwrap();
    w.write_all(&tar[..tar.len() / 2]).unwrap();
    w.flush().unwrap();
    wait_for("the import to write", || ingest_bytes(&k) > 0);

    // A prune meanwhile leaves the import's ingest and lease alone.
    k.ok(&["image", "prune", "-f"]);
    assert_eq!(k.count("ingest"), 1);
    assert_eq!(k.count("leases"), 1);

    child.kill().unwrap();
    child.wait().unwrap();
    drop(w);
    // Consistent: no image, no committed blob, listing works.
    assert_eq!(k.ok(&["images", "-q"]), "");
    assert_eq!(k.count("blobs/sha256"), 0);
    // The dead process's ingest and lease go at the next prune.
    let out = k.ok(&["image", "prune"]);
    assert!(out.contains("1 abandoned downloads"), "{out}");
    assert_eq!(k.count("ingest"), 0);
    assert_eq!(k.count("leases"), 0);
    // And the next import completes.
    k.ok(&["import", k.rootfs_tar().to_str().unwrap(), "half:1"]);
    assert_eq!(lines_json(&k.ok(&["images", "--format", "json"])).len(), 1);
}

/// A tmpfs of `size` mounted on a new directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success());
        Tmpfs(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_is_a_clear_error_and_leaves_nothing() {
    kontti_testutil::require_root();
    let k = Kontti::new();
    let tar = k.rootfs_tar();
    let _fs = Tmpfs::new(&k.root(), "1m");
    let err = k.fails(&["import", tar.to_str().unwrap(), "big:1"], 6);
    assert!(err.contains("no space left on device"), "{err}");
    assert_eq!(k.count("blobs/sha256"), 0);
    assert_eq!(k.count("ingest"), 0);
    assert_eq!(k.ok(&["images", "-q"]), "");
}

#[test]
fn image_mount_gives_a_writable_rootfs_and_unmount_removes_it() {
    kontti_testutil::require_root();
    let k = Kontti::new();
    let tar = k.rootfs_tar();
    k.ok(&["import", tar.to_str().unwrap(), "demo:1"]);
    let before = kontti_testutil::HostSnapshot::take("kontti-image-mount-test");
    let path = k.ok(&["image", "mount", "--name", "m1", "demo:1"]);
    let path = PathBuf::from(path.trim());
    assert!(
        path.join("bin/busybox").exists(),
        "rootfs at {}",
        path.display()
    );
    fs::write(path.join("tmp/written"), "x").unwrap();
    k.fails(&["image", "mount", "--name", "m1", "demo:1"], 3);
    k.ok(&["image", "unmount", "m1"]);
    assert!(!path.exists());
    let err = k.fails(&["image", "unmount", "m1"], 2);
    assert!(err.contains("no image is mounted as m1"), "{err}");
    let err = k.fails(&["image", "mount", "--name", "../x", "demo:1"], 5);
    assert!(err.contains("invalid snapshot key"), "{err}");
    k.fails(&["image", "mount", "nope:1"], 2);
    // A fresh mount does not see what the removed one wrote.
    let path = k.ok(&["image", "mount", "--name", "m2", "demo:1"]);
    assert!(!PathBuf::from(path.trim()).join("tmp/written").exists());
    k.ok(&["image", "unmount", "m2"]);
    kontti_testutil::HostSnapshot::take("kontti-image-mount-test").assert_no_leaks_since(&before);
}
