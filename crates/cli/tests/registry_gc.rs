//! `kontti registry garbage-collect` on the storage of a real `kontti
//! registry serve`: two images sharing layers are pushed, one manifest is
//! deleted, and collection removes exactly what only that image used; the
//! other still pulls with the same digests. Dry runs remove nothing, a
//! running server makes collection refuse (and a collection makes a server
//! refuse), stale uploads go, bad storage arguments get one line and an exit
//! code.
#![allow(clippy::disallowed_macros)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use kontti_core::{Digest, ImageRef};
use kontti_image::{ContentStore, Image};

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
    let runc = PathBuf::from(KONTTI).with_file_name("kontti-runc");
    Command::new(KONTTI)
        .arg("--root")
        .arg(root)
        .args(args)
        .env("KONTTI_AUTH_FILE", root.join("auth.json"))
        .env("KONTTI_REGISTRIES_CONFIG", root.join("registries.json"))
        .env("DOCKER_CONFIG", root.join("docker"))
        .env("KONTTI_RUNC", runc)
        .env("KONTTI_BUILD_RESOLV_CONF", "none")
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

/// Runs `kontti registry garbage-collect --storage DIR ARGS`.
fn gc(storage: &Path, extra: &[&str]) -> Output {
    Command::new(KONTTI)
        .args(["registry", "garbage-collect", "--storage"])
        .arg(storage)
        .args(extra)
        .output()
        .expect("run kontti registry garbage-collect")
}

/// Starts `kontti registry serve` on a free port; returns it and its address.
fn serve(storage: &Path) -> (Proc, String) {
    let mut child = Command::new(KONTTI)
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
        .arg(storage)
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

/// One plain HTTP/1.1 request; returns the status and the headers.
fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Every blob in the registry's storage.
fn blobs(storage: &Path) -> BTreeSet<Digest> {
    fs::read_dir(storage.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())).unwrap())
        .collect()
}

/// Every file under `dir` (relative paths), to tell that nothing changed.
fn tree(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(dir).unwrap().to_owned());
        }
    }
    out
}

/// The digests an image is made of: manifest, config, layers.
fn digests(image: &Image) -> BTreeSet<Digest> {
    let mut out: BTreeSet<Digest> = image.layers().iter().map(|l| l.digest.clone()).collect();
    out.insert(image.manifest_descriptor.digest.clone());
    out.insert(image.id().clone());
    out
}

fn local_image(root: &Path, name: &str) -> Image {
    let store = ContentStore::open(root.join("content")).unwrap();
    Image::open(&store, &ImageRef::parse(name).unwrap()).unwrap()
}

/// Two images that share the busybox layer, built in `root` and pushed to
/// `addr` as gc/app:a and gc/app:b; returns them as the local store has them.
fn push_two(dir: &Path, root: &Path, addr: &str) -> (Image, Image) {
    let tar = dir.join("rootfs.tar");
    kontti_testutil::write_rootfs_tar(&tar).unwrap();
    ok(kontti(root, &["import", tar.to_str().unwrap(), "busybox"]));
    let mut out = Vec::new();
    for which in ["a", "b"] {
        let ctx = dir.join(format!("ctx-{which}"));
        fs::create_dir_all(&ctx).unwrap();
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nCOPY {which} /{which}\n"),
        )
        .unwrap();
        fs::write(ctx.join(which), format!("only in {which}\n")).unwrap();
        let name = format!("{addr}/gc/app:{which}");
        ok(kontti(
            root,
            &[
                "build",
                "--progress=plain",
                "-t",
                &name,
                ctx.to_str().unwrap(),
            ],
        ));
        ok(kontti(root, &["push", "--quiet", &name]));
        out.push(local_image(root, &name));
    }
    let b = out.pop().unwrap();
    let a = out.pop().unwrap();
    (a, b)
}

#[test]
fn registry_gc_removes_exactly_what_a_deleted_manifest_alone_used() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let root = dir.path().join("root");
    let (server, addr) = serve(&storage);
    let (a, b) = push_two(dir.path(), &root, &addr);
    let shared: BTreeSet<Digest> = digests(&a).intersection(&digests(&b)).cloned().collect();
    assert_eq!(shared.len(), 1, "the busybox layer is shared: {shared:?}");
    let only_a: BTreeSet<Digest> = digests(&a).difference(&shared).cloned().collect();
    assert_eq!(blobs(&storage), &digests(&a) | &digests(&b));

    // An upload the client abandoned, and one in progress.
    let (status, head) = http(&addr, "POST", "/v2/gc/app/blobs/uploads/");
    assert_eq!(status, 202, "{head}");
    let (status, _) = http(&addr, "POST", "/v2/gc/app/blobs/uploads/");
    assert_eq!(status, 202);

    // Refused while the server runs; nothing changes.
    let before = tree(&storage);
    let out = gc(&storage, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("in use by a running registry; stop it"),
        "{err}"
    );
    assert_eq!(tree(&storage), before);

    let (status, head) = http(
        &addr,
        "DELETE",
        &format!("/v2/gc/app/manifests/{}", a.manifest_descriptor.digest),
    );
    assert_eq!(status, 202, "{head}");
    drop(server);
    // The abandoned upload is two days old.
    let uploads: Vec<PathBuf> = fs::read_dir(storage.join("uploads"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(uploads.len(), 2);
    let old = SystemTime::now() - Duration::from_secs(48 * 3600);
    fs::File::options()
        .write(true)
        .open(uploads[0].join("data"))
        .unwrap()
        .set_modified(old)
        .unwrap();

    // A dry run names what would go and removes nothing.
    let before = tree(&storage);
    let out = String::from_utf8_lossy(&gc(&storage, &["--dry-run"]).stdout).into_owned();
    for d in &only_a {
        assert!(
            out.contains(&format!("blob eligible for deletion: {d}")),
            "{out}"
        );
    }
    assert!(
        out.contains(&format!(
            "{} blobs marked, {} blobs and 0 manifests eligible for deletion",
            digests(&b).len(),
            only_a.len()
        )),
        "{out}"
    );
    assert!(
        out.contains("1 stale uploads (dry run: nothing removed)"),
        "{out}"
    );
    assert_eq!(tree(&storage), before);

    let out = ok(gc(&storage, &[]));
    assert!(out.contains("1 stale uploads removed"), "{out}");
    assert_eq!(blobs(&storage), digests(&b), "{out}");
    assert!(!uploads[0].exists() && uploads[1].exists());
    // The links to the removed layer went with it.
    let layer_links: BTreeSet<String> =
        fs::read_dir(storage.join("repositories/gc/app/_layers/sha256"))
            .unwrap()
            .flatten()
            .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
            .collect();
    for d in &only_a {
        assert!(!layer_links.contains(&d.to_string()), "{d} still linked");
    }

    // A second run finds nothing more.
    let out = ok(gc(&storage, &[]));
    assert!(out.contains("0 blobs and 0 manifests eligible"), "{out}");

    // b still pulls, with the same digests, into a fresh store.
    let (_server, addr2) = serve(&storage);
    let fresh = dir.path().join("fresh");
    let name_b = format!("{addr2}/gc/app:b");
    ok(kontti(&fresh, &["pull", "--quiet", &name_b]));
    let pulled = local_image(&fresh, &name_b);
    assert_eq!(digests(&pulled), digests(&b));
    let name_a = format!("{addr2}/gc/app:a");
    let out = kontti(&fresh, &["pull", "--quiet", &name_a]);
    assert!(!out.status.success(), "a was deleted");
}

/// With `--delete-untagged`, a manifest that no tag reaches goes with what
/// only it uses; a tagged one's referrer and an index's children stay.
#[test]
fn registry_gc_delete_untagged() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let root = dir.path().join("root");
    let (server, addr) = serve(&storage);
    let (a, b) = push_two(dir.path(), &root, &addr);
    // Untag a: its manifest stays (by digest) until --delete-untagged.
    let (status, head) = http(&addr, "DELETE", "/v2/gc/app/manifests/a");
    assert_eq!(status, 202, "{head}");
    drop(server);
    let out = ok(gc(&storage, &[]));
    assert!(out.contains("0 blobs and 0 manifests eligible"), "{out}");
    assert_eq!(blobs(&storage), &digests(&a) | &digests(&b));

    let before = tree(&storage);
    let out = ok(gc(&storage, &["-m", "--dry-run"]));
    assert!(
        out.contains(&format!(
            "manifest eligible for deletion: gc/app@{}",
            a.manifest_descriptor.digest
        )),
        "{out}"
    );
    assert_eq!(tree(&storage), before);
    let out = ok(gc(&storage, &["--delete-untagged"]));
    assert!(out.contains("1 manifests eligible"), "{out}");
    assert_eq!(blobs(&storage), digests(&b));
    assert!(
        !storage
            .join("repositories/gc/app/_manifests/sha256")
            .join(a.manifest_descriptor.digest.hex())
            .exists()
    );
}

#[test]
fn registry_gc_bad_storage_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let out = gc(&missing, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "kontti: registry storage {} does not exist",
            missing.display()
        )
    );
    assert!(!missing.exists());

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let out = gc(&empty, &["--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert_eq!(
        err.trim(),
        format!(
            "kontti: {} is not a registry storage directory: it has no repositories/ directory",
            empty.display()
        )
    );
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0, "nothing created");

    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    let out = gc(&file, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err.contains("is not a registry storage directory: not a directory"),
        "{err}"
    );

    let out = gc(&empty, &["--upload-max-age", "soon"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("\"soon\" is not an age like 30m, 24h or 7d"),
        "{err}"
    );
}

/// A server does not start on storage that a collection holds.
#[test]
fn registry_gc_lock_keeps_a_server_off() {
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("storage");
    let (server, _addr) = serve(&storage);
    drop(server);
    let lock = fs::File::options()
        .write(true)
        .open(storage.join("registry.lock"))
        .unwrap();
    lock.lock().unwrap();
    let out = Command::new(KONTTI)
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
        .arg(&storage)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("a garbage collection is running on it"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}
