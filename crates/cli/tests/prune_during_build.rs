//! `kontti image prune` and `rmi` while a `kontti build` runs in another
//! process: the build's lease holds the snapshots it starts from and
//! commits, so the build succeeds; once it is over, a prune removes what
//! no image needs any more.
#![allow(clippy::disallowed_macros)]

mod build_support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use build_support::Kontti;
use kontti_image::snapshot::{Kind, OverlaySnapshotter, Snapshotter};

/// Stage `a` ends before the RUN that sleeps in the second stage starts:
/// its top snapshot is named by no image and sits under no other snapshot,
/// so only the build's lease keeps it until `COPY --from=a` reads it.
const DOCKERFILE: &str = "\
FROM busybox AS a
RUN echo from-a > /a.txt

FROM busybox
RUN echo one > /one.txt
RUN --mount=type=cache,target=/c,id=marker touch /c/started && sleep 8
COPY --from=a /a.txt /a.txt
RUN cat /a.txt /one.txt > /both.txt
";

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name() == name {
                return Some(p);
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    None
}

fn committed(k: &Kontti) -> BTreeSet<String> {
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
fn build_survives_rmi_of_its_base_and_prune_in_another_process() {
    let k = Kontti::new();
    let ctx = k.context("ctx", DOCKERFILE, &[]);
    let mut c = k.cmd();
    c.args(["build", "--progress=plain", "-t", "leased:1"])
        .arg(&ctx)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let build = c.spawn().unwrap();
    k.pids.borrow_mut().push(build.id());

    // Wait until the sleeping RUN step has started.
    let cache = k.root().join("builder/cache-mounts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while find_file(&cache, "started").is_none() {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = committed(&k);
    assert!(during.len() >= 3, "snapshots while building: {during:?}");

    // The base loses its name and everything unnamed is pruned meanwhile.
    let out = k.ok(&["rmi", "busybox"]);
    assert!(out.contains("Untagged: busybox"), "{out}");
    let out = k.ok(&["image", "prune"]);
    assert!(
        out.contains(", 0 layers)"),
        "the build's layers were pruned: {out}"
    );
    assert_eq!(committed(&k), during, "prune removed a leased snapshot");
    let started = find_file(&cache, "started").unwrap();
    assert!(
        started
            .metadata()
            .unwrap()
            .modified()
            .unwrap()
            .elapsed()
            .unwrap()
            < Duration::from_secs(7),
        "the prune did not run while the step slept"
    );

    let out = build.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "kontti build failed: {err}");
    let root = k.flatten("leased:1");
    assert_eq!(
        fs::read_to_string(root.path().join("both.txt")).unwrap(),
        "from-a\none\n"
    );
    assert!(root.path().join("bin/busybox").is_file());

    // With no build running, stage a's layer is unreferenced: prune takes
    // it, and keeps exactly the chain of the image that remains.
    let image = k.image("leased:1");
    let chain: BTreeSet<String> = image.chain_ids().iter().map(|d| d.to_string()).collect();
    let before = committed(&k);
    assert!(before.len() > chain.len(), "{before:?}");
    let out = k.ok(&["image", "prune"]);
    let gone = before.len() - chain.len();
    assert!(out.contains(&format!(", {gone} layers)")), "{out}");
    assert_eq!(committed(&k), chain);
    let leases: Vec<_> = fs::read_dir(k.root().join("content/leases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leases.is_empty(), "leases left: {leases:?}");
    // The image still runs its layers from the remaining snapshots.
    let root = k.flatten("leased:1");
    assert!(root.path().join("a.txt").is_file());
    k.assert_clean();
}
