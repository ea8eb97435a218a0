//! `kontti rmi` and `kontti image prune` while a `kontti pull` runs in
//! another process: the pull reuses a layer that is unpacked already, and
//! its lease keeps that snapshot (and the blob) until the pulled image has
//! its name, so the pull succeeds; once it is over, prune removes what no
//! image needs.
#![allow(clippy::disallowed_macros)]

#[path = "../../registry/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kontti_image::hash::sha256;
use kontti_image::snapshot::{OverlaySnapshotter, Snapshotter};
use serde_json::json;
use support::{Image, Resp, Scripted, tar_with_file};

const KONTTI: &str = env!("CARGO_BIN_EXE_kontti");

fn cmd(root: &Path) -> Command {
    let mut c = Command::new(KONTTI);
    c.arg("--root")
        .arg(root)
        .env("KONTTI_AUTH_FILE", root.join("auth.json"))
        .env("KONTTI_REGISTRIES_CONFIG", root.join("registries.json"))
        .env("DOCKER_CONFIG", root.join("docker"))
        .env("KONTTI_SNAPSHOTTER", "overlay");
    c
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

/// An image of `layers` (uncompressed tars).
fn image(layers: Vec<Vec<u8>>) -> Image {
    let media_type = "application/vnd.oci.image.layer.v1.tar";
    let diff_ids: Vec<String> = layers.iter().map(|l| sha256(l).to_string()).collect();
    let config = json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}})
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(&config).to_string(), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": media_type,
            "digest": sha256(l).to_string(), "size": l.len()})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    Image {
        layers,
        config,
        manifest,
        layer_media_type: media_type.to_owned(),
    }
}

fn snapshots(root: &Path) -> BTreeSet<String> {
    OverlaySnapshotter::open(root.join("snapshots/overlay"))
        .unwrap()
        .list()
        .unwrap()
        .into_iter()
        .map(|i| i.key)
        .collect()
}

#[test]
fn pull_survives_rmi_and_prune_of_the_layer_it_reuses() {
    kontti_testutil::require_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let base_layer = tar_with_file("base.bin", &[1u8; 1500]);
    let app_layer = tar_with_file("app.bin", &[2u8; 3000]);
    let slow = sha256(&app_layer).to_string();
    let base = image(vec![base_layer.clone()]);
    let app = image(vec![base_layer.clone(), app_layer.clone()]);
    let server = Scripted::start(move |req| {
        if req.path.starts_with("/v2/app/") {
            let mut r = app.answer("app", req);
            if req.path.ends_with(&slow) && req.method == "GET" {
                // About 5 s for the layer that is not local yet.
                r.throttle = Some((300, Duration::from_millis(400)));
            }
            r
        } else if req.path == "/v2/" {
            Resp::ok(b"{}".to_vec())
        } else {
            base.answer("base", req)
        }
    });
    let host = server.host();
    let base_ref = format!("{host}/base:v1");
    let app_ref = format!("{host}/app:v1");
    ok(cmd(&root)
        .args(["pull", "--quiet", &base_ref])
        .output()
        .unwrap());
    let base_chain = sha256(&base_layer).to_string();
    assert_eq!(snapshots(&root), BTreeSet::from([base_chain.clone()]));

    let pull = cmd(&root)
        .args(["pull", "--quiet", &app_ref])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the pull downloads the new layer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let slow = sha256(&app_layer).to_string();
    while !server
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path.ends_with(&slow))
    {
        assert!(
            Instant::now() < deadline,
            "the pull never fetched the layer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    // The layer it reuses loses its image, and everything unnamed is pruned.
    let out = ok(cmd(&root).args(["rmi", &base_ref]).output().unwrap());
    assert!(out.contains("Untagged:"), "{out}");
    let out = ok(cmd(&root).args(["image", "prune"]).output().unwrap());
    assert!(
        out.contains(", 0 layers)"),
        "the pull's layer was pruned: {out}"
    );
    assert!(snapshots(&root).contains(&base_chain));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the prune did not run during the download"
    );

    let out = pull.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kontti pull failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app_chain =
        kontti_image::hash::sha256(format!("{base_chain} {}", sha256(&app_layer)).as_bytes())
            .to_string();
    assert_eq!(
        snapshots(&root),
        BTreeSet::from([base_chain.clone(), app_chain.clone()])
    );
    // Named now: a prune keeps both layers; without the name, it takes them.
    let out = ok(cmd(&root).args(["image", "prune"]).output().unwrap());
    assert!(out.contains(", 0 layers)"), "{out}");
    ok(cmd(&root).args(["rmi", &app_ref]).output().unwrap());
    ok(cmd(&root).args(["image", "prune"]).output().unwrap());
    assert!(snapshots(&root).is_empty(), "{:?}", snapshots(&root));
    let leases = std::fs::read_dir(root.join("content/leases"))
        .unwrap()
        .count();
    assert_eq!(leases, 0, "leases left");
    let blobs = std::fs::read_dir(root.join("content/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "blobs left");
}
