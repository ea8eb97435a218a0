//! `kontti pull`, `push`, `login`, `logout` and `registry serve` as a user
//! runs them, against real peers on loopback: skopeo copies into and out of
//! kontti's registry, kontti pushes to and pulls from Debian's
//! docker-registry, and content digests match end to end. Also: a pull
//! killed with SIGKILL mid-download leaves a consistent store and the next
//! pull resumes.
#![allow(clippy::disallowed_macros)]

#[path = "../../registry/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kontti_image::hash::sha256 as sha256_of;
use support::{Image, Req, Scripted};

const KONTTI: &str = env!("CARGO_BIN_EXE_kontti");

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kontti(root: &Path, args: &[&str]) -> Output {
    Command::new(KONTTI)
        .arg("--root")
        .arg(root)
        .args(args)
        .env("KONTTI_AUTH_FILE", root.join("auth.json"))
        .env("KONTTI_REGISTRIES_CONFIG", root.join("registries.json"))
        .env("DOCKER_CONFIG", root.join("docker"))
        .output()
        .expect("run kontti")
}

fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "kontti failed: {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn run(cmd: &mut Command) {
    let o = cmd.output().expect("run peer");
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Starts `kontti registry serve` on a free port; returns it and its address.
fn serve(storage: &Path, extra: &[&str]) -> (Proc, String) {
    let mut child = Command::new(KONTTI)
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
        .arg(storage)
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kontti registry serve");
    let stderr = child.stderr.take().unwrap();
    let mut line = String::new();
    BufReader::new(stderr).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("kontti registry listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (Proc(child), addr)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts Debian's docker-registry on a free loopback port with its own storage.
fn docker_registry(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let config = dir.join("docker-registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("docker-registry-data").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start /usr/bin/docker-registry (Debian package docker-registry)");
    let addr = format!("127.0.0.1:{port}");
    let t = Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "docker-registry did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Proc(child), addr)
}

/// Builds a two-layer OCI layout with umoci: a busybox rootfs, then a layer
/// of generated files. Returns the layout directory (tag `t`).
fn oci_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .arg("init")
        .arg("--layout")
        .arg(&layout));
    run(Command::new("umoci")
        .args(["new", "--image"])
        .arg(format!("{}:t", layout.display())));
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    kontti_testutil::Rootfs::create(&rootfs).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    std::fs::create_dir_all(rootfs.join("data")).unwrap();
    for i in 0..50 {
        let body: Vec<u8> = (0..(i * 1000 + 17))
            .map(|j| ((i * 31 + j) % 251) as u8)
            .collect();
        std::fs::write(rootfs.join(format!("data/f{i}")), body).unwrap();
    }
    run(Command::new("umoci")
        .args(["repack", "--image"])
        .arg(format!("{}:t", layout.display()))
        .arg(&bundle));
    run(Command::new("umoci")
        .args(["config", "--image"])
        .arg(format!("{}:t", layout.display()))
        .args(["--config.cmd", "/bin/sh"]));
    layout
}

/// The manifest digest the layout's index names.
fn layout_manifest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"].as_str().unwrap().to_owned()
}

/// The blobs the layout's image references: manifest, config, layers.
fn image_blobs(layout: &Path) -> BTreeSet<String> {
    let m = layout_manifest(layout);
    let hex = m.trim_start_matches("sha256:").to_owned();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(&hex)).unwrap())
            .unwrap();
    let mut out = BTreeSet::from([hex]);
    let mut descs = vec![doc["config"].clone()];
    descs.extend(doc["layers"].as_array().unwrap().iter().cloned());
    for d in descs {
        out.insert(
            d["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:")
                .to_owned(),
        );
    }
    out
}

/// The layout's image layers: compressed sizes summed, and uncompressed
/// (each layer through `gzip -dc`) summed.
fn layer_sizes(layout: &Path) -> (u64, u64) {
    let m = layout_manifest(layout);
    let doc: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(m.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let (mut compressed, mut uncompressed) = (0, 0);
    for l in doc["layers"].as_array().unwrap() {
        assert!(l["mediaType"].as_str().unwrap().ends_with("gzip"), "{l}");
        compressed += l["size"].as_u64().unwrap();
        let blob = layout
            .join("blobs/sha256")
            .join(l["digest"].as_str().unwrap().trim_start_matches("sha256:"));
        let o = Command::new("gzip").arg("-dc").arg(blob).output().unwrap();
        assert!(o.status.success());
        uncompressed += o.stdout.len() as u64;
    }
    (compressed, uncompressed)
}

fn blob_set(layout: &Path) -> BTreeSet<String> {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn store_ref(root: &Path, name: &str) -> Option<String> {
    let store = kontti_image::ContentStore::open(root.join("content")).unwrap();
    store
        .resolve_ref(&kontti_core::ImageRef::parse(name).unwrap())
        .unwrap()
        .map(|d| d.digest.to_string())
}

#[test]
fn skopeo_and_docker_registry_interoperate() {
    let dir = tempfile::tempdir().unwrap();
    let layout = oci_layout(dir.path());
    let manifest = layout_manifest(&layout);
    let (_kreg, kaddr) = serve(&dir.path().join("kontti-registry"), &[]);
    let (_dreg, daddr) = docker_registry(dir.path());

    // skopeo pushes into kontti's registry; kontti pulls it.
    run(Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("docker://{kaddr}/peer/busy:v1")));
    let root = dir.path().join("root");
    let out = ok(kontti(&root, &["pull", &format!("{kaddr}/peer/busy:v1")]));
    assert_eq!(out.trim(), format!("{kaddr}/peer/busy:v1"));
    assert_eq!(
        store_ref(&root, &format!("{kaddr}/peer/busy:v1")).as_deref(),
        Some(manifest.as_str())
    );
    // SIZE is the unpacked size: the layers' uncompressed tars, summed.
    let (compressed, uncompressed) = layer_sizes(&layout);
    let rows = ok(kontti(&root, &["images", "--format", "json"]));
    let row: serde_json::Value = serde_json::from_str(rows.trim()).unwrap();
    assert!(uncompressed > compressed, "{uncompressed} vs {compressed}");
    assert_eq!(row["VirtualSize"], uncompressed, "{row}");
    let inspect: serde_json::Value = serde_json::from_str(&ok(kontti(
        &root,
        &["image", "inspect", &format!("{kaddr}/peer/busy:v1")],
    )))
    .unwrap();
    assert_eq!(inspect[0]["Size"], uncompressed);

    // kontti pushes to docker-registry under another name, pulls it back into a fresh root.
    let store = kontti_image::ContentStore::open(root.join("content")).unwrap();
    let desc = store
        .resolve_ref(&kontti_core::ImageRef::parse(&format!("{kaddr}/peer/busy:v1")).unwrap())
        .unwrap()
        .unwrap();
    store
        .set_ref(
            &kontti_core::ImageRef::parse(&format!("{daddr}/x/busy:v2")).unwrap(),
            &desc,
        )
        .unwrap();
    let pushed = ok(kontti(&root, &["push", &format!("{daddr}/x/busy:v2")]));
    assert_eq!(pushed.trim(), format!("v2: digest: {manifest}"));
    let root2 = dir.path().join("root2");
    ok(kontti(&root2, &["pull", &format!("{daddr}/x/busy:v2")]));
    assert_eq!(
        store_ref(&root2, &format!("{daddr}/x/busy:v2")).as_deref(),
        Some(manifest.as_str())
    );
    let want = image_blobs(&layout);
    let got: BTreeSet<String> = blob_set(&root2.join("content"));
    assert!(
        want.is_subset(&got),
        "missing blobs: {:?}",
        want.difference(&got).collect::<Vec<_>>()
    );

    // kontti pushes into its own registry; skopeo copies out of it.
    store
        .set_ref(
            &kontti_core::ImageRef::parse(&format!("{kaddr}/again/busy:v3")).unwrap(),
            &desc,
        )
        .unwrap();
    ok(kontti(&root, &["push", &format!("{kaddr}/again/busy:v3")]));
    let back = dir.path().join("back");
    run(Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{kaddr}/again/busy:v3"))
        .arg(format!("oci:{}:t", back.display())));
    assert_eq!(layout_manifest(&back), manifest);
    assert_eq!(image_blobs(&back), want);
    assert!(want.is_subset(&blob_set(&back)));
}

#[test]
fn login_logout_against_htpasswd_registry() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret", 5)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let (_reg, addr) = serve(
        &dir.path().join("storage"),
        &["--htpasswd", htpasswd.to_str().unwrap()],
    );
    let root = dir.path().join("root");
    let login = |password: &str| {
        let mut c = Command::new(KONTTI)
            .arg("--root")
            .arg(&root)
            .args(["login", "-u", "alice", "--password-stdin", &addr])
            .env("KONTTI_AUTH_FILE", root.join("auth.json"))
            .env("DOCKER_CONFIG", root.join("docker"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        c.wait_with_output().unwrap()
    };
    let bad = login("wrong");
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(msg.contains("unauthorized"), "{msg}");
    assert!(
        !root.join("auth.json").exists(),
        "nothing stored on failure"
    );
    let good = login("s3cret");
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&good.stdout).trim(),
        "Login Succeeded"
    );
    // The stored credentials work for a pull (404: authenticated, nothing there).
    let o = kontti(&root, &["pull", &format!("{addr}/none:v1")]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("404"), "{e}");
    ok(kontti(&root, &["logout", &addr]));
    let o = kontti(&root, &["logout", &addr]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("not logged in to {addr}")));
    let o = kontti(&root, &["pull", &format!("{addr}/none:v1")]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("kontti login"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn bad_input_is_refused_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // Exit codes follow the error kind: 5 invalid, 2 not found, 6 unavailable.
    for (args, needle, code) in [
        (vec!["pull", "Bad Name"], "invalid image reference", 5),
        (
            vec!["pull", "--platform", "linux", "127.0.0.1:1/x"],
            "invalid platform",
            5,
        ),
        (vec!["push", "127.0.0.1:1/never:pulled"], "no such image", 2),
        (
            vec!["pull", "-q", "127.0.0.1:1/closed:port"],
            "127.0.0.1:1",
            6,
        ),
    ] {
        let o = kontti(&root, &args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(needle), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{args:?}: {e}");
    }
    let mut p = Command::new(KONTTI)
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
        .arg(dir.path().join("s"))
        .args(["--htpasswd", "/nonexistent/htpasswd"])
        .output()
        .unwrap();
    assert_eq!(p.status.code(), Some(2), "htpasswd file not found");
    p.stderr.truncate(400);
    assert!(String::from_utf8_lossy(&p.stderr).contains("/nonexistent/htpasswd"));
}

#[test]
fn sigkill_mid_pull_leaves_a_consistent_store_and_the_next_pull_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[8 << 20]);
    let layer = img.layers[0].clone();
    let slow = Arc::new(AtomicBool::new(true));
    let (i2, s2) = (img.clone(), slow.clone());
    let srv = Scripted::start(move |r: &Req| {
        let mut resp = i2.answer("slow/img", r);
        if r.path.contains("/blobs/") && resp.body.len() > 1 << 20 && s2.load(Ordering::SeqCst) {
            resp.throttle = Some((64 << 10, Duration::from_millis(20)));
        }
        resp
    });
    let root = dir.path().join("root");
    let reference = format!("{}/slow/img:v1", srv.host());
    let mut child = Proc(
        Command::new(KONTTI)
            .arg("--root")
            .arg(&root)
            .args(["pull", "-q", &reference])
            .env("KONTTI_AUTH_FILE", root.join("auth.json"))
            .env("DOCKER_CONFIG", root.join("docker"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ingest = root.join("content/ingest");
    let t = Instant::now();
    let partial = loop {
        let size: u64 = walk_sizes(&ingest);
        if size > 1 << 20 {
            break size;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "download did not progress"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let blob = root
        .join("content/blobs/sha256")
        .join(sha256_of(&layer).hex());
    assert!(!blob.exists(), "a partial layer is not visible");
    assert_eq!(
        store_ref(&root, &reference),
        None,
        "no name for an incomplete image"
    );

    slow.store(false, Ordering::SeqCst);
    let before = srv.requests().len();
    ok(kontti(&root, &["pull", "-q", &reference]));
    assert_eq!(std::fs::read(&blob).unwrap(), layer);
    assert_eq!(store_ref(&root, &reference), Some(img.manifest_digest()));
    let resumed = srv.requests()[before..]
        .iter()
        .filter_map(|r| r.header("Range").map(str::to_owned))
        .collect::<Vec<_>>();
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    let from: u64 = resumed[0]
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        from >= partial.min(1 << 20),
        "resumed at {from} after {partial} bytes had arrived"
    );
    // The layer was unpacked once, into a snapshot.
    let unpacked =
        find_file(&root.join("snapshots"), "layer0.bin").expect("layer unpacked into a snapshot");
    assert_eq!(std::fs::metadata(&unpacked).unwrap().len(), 8 << 20);
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if e.file_type().is_ok_and(|t| t.is_dir())
            && let Some(found) = find_file(&p, name)
        {
            return Some(found);
        }
    }
    None
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn walk_sizes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk_sizes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// A tmpfs of `size` mounted over `at`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at));
        Tmpfs(at.to_owned())
    }

    fn resize(&self, size: &str) {
        run(Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Pulls `reference` into `root` and expects the disk-full failure.
fn pull_fails_for_space(root: &Path, reference: &str) {
    let o = kontti(root, &["pull", "-q", reference]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(6), "exit code; stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("no space left on device"), "{err}");
}

#[test]
fn disk_full_mid_pull_is_a_clear_error_and_leaves_the_store_consistent() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let img = Image::new(&[256 << 10, 6 << 20]);
    let i2 = img.clone();
    let srv = Scripted::start(move |r: &Req| i2.answer("full/img", r));
    let reference = format!("{}/full/img:v1", srv.host());
    let root = dir.path().join("root");
    let fs = Tmpfs::new(&root, "3m");
    let big = root
        .join("content/blobs/sha256")
        .join(sha256_of(&img.layers[1]).hex());

    // The download of the big layer does not fit.
    pull_fails_for_space(&root, &reference);
    assert!(!big.exists(), "no half blob under its digest");
    assert_eq!(store_ref(&root, &reference), None, "no name for it");
    assert!(ok(kontti(&root, &["images", "-q"])).is_empty());
    // The failed pull removed its partial download and released its lease;
    // a prune then removes the unnamed blobs it had completed.
    assert!(entries(&root.join("content/ingest")).is_empty());
    assert!(entries(&root.join("content/leases")).is_empty());
    let out = ok(kontti(&root, &["image", "prune"]));
    assert!(out.contains(" blobs, 0 abandoned downloads"), "{out}");

    // The download fits, its unpacking does not.
    fs.resize("9m");
    pull_fails_for_space(&root, &reference);
    assert_eq!(store_ref(&root, &reference), None, "no name for it");
    assert!(
        find_file(&root.join("snapshots"), "layer1.bin").is_none(),
        "no half-unpacked layer visible"
    );
    assert!(entries(&root.join("content/ingest")).is_empty());
    assert!(entries(&root.join("content/leases")).is_empty());
    let out = ok(kontti(&root, &["image", "prune"]));
    assert!(out.contains(" blobs, 0 abandoned downloads"), "{out}");

    // With space, the same store completes the pull.
    fs.resize("64m");
    ok(kontti(&root, &["pull", "-q", &reference]));
    assert_eq!(store_ref(&root, &reference), Some(img.manifest_digest()));
    assert_eq!(std::fs::read(&big).unwrap(), img.layers[1]);
    let unpacked = find_file(&root.join("snapshots"), "layer1.bin").expect("layer unpacked");
    assert_eq!(std::fs::metadata(&unpacked).unwrap().len(), 6 << 20);
    drop(fs);
}
