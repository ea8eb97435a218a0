//! The executor through its library API (as the node agent or another
//! front end would call it): progress events, step counts, the cache, and
//! recovery with nothing to recover. Runs real RUN steps through the
//! `kontti-runc` binary next to the test executable.

use std::fs;
use std::sync::{Arc, Mutex};

use kontti_builder::{BuildOptions, Progress, build, find_runtime, recover};
use kontti_image::{ContentStore, ImageConfig, content_dir};

#[derive(Default)]
struct Recorder {
    steps: Mutex<Vec<(String, bool)>>,
    output: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn step(&self, _stage: &str, step: &str, cached: bool) {
        self.steps.lock().unwrap().push((step.to_string(), cached));
    }
    fn output(&self, _stage: &str, line: &[u8]) {
        self.output
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(line).into_owned());
    }
}

/// A state root with busybox imported.
fn state_with_busybox() -> (tempfile::TempDir, std::path::PathBuf, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let tar = dir.path().join("rootfs.tar");
    kontti_testutil::write_rootfs_tar(&tar).unwrap();
    let store = ContentStore::open(content_dir(&root)).unwrap();
    let name = kontti_core::ImageRef::parse("busybox").unwrap();
    kontti_image::import::import_rootfs(
        &store,
        fs::File::open(&tar).unwrap(),
        "rootfs.tar",
        Some(&name),
        ImageConfig::default(),
    )
    .unwrap();
    (dir, root, store)
}

#[test]
fn symlinks_named_as_sources_copy_their_targets() {
    kontti_testutil::require_root();
    let (dir, root, store) = state_with_busybox();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(ctx.join("realdir")).unwrap();
    fs::write(ctx.join("realdir/f"), "inner").unwrap();
    std::os::unix::fs::symlink("realdir", ctx.join("linkdir")).unwrap();
    std::os::unix::fs::symlink("realdir/f", ctx.join("linkfile")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY linkdir /x\nCOPY linkfile /y\n",
    )
    .unwrap();
    let mut options = BuildOptions::new(&ctx);
    options.tags = vec![kontti_core::ImageRef::parse("links").unwrap()];
    build(&root, &options).unwrap();
    let image = kontti_image::Image::open(&store, &options.tags[0]).unwrap();
    let out = tempfile::tempdir().unwrap();
    for l in image.layers() {
        kontti_image::unpack::apply_layer(
            store.open_blob(&l.digest).unwrap(),
            out.path(),
            kontti_image::unpack::WhiteoutMode::Remove,
            None,
        )
        .unwrap();
    }
    assert_eq!(fs::read_to_string(out.path().join("x/f")).unwrap(), "inner");
    let y = out.path().join("y");
    assert!(!y.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(fs::read_to_string(y).unwrap(), "inner");
}

#[test]
fn build_through_the_library_then_from_the_cache() {
    kontti_testutil::require_root();
    let runtime = find_runtime();
    assert!(
        runtime.is_file(),
        "{} is missing: build kontti-runc first (cargo build -p kontti-runc)",
        runtime.display()
    );
    let (dir, root, store) = state_with_busybox();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nCOPY f /f\nRUN echo from-run && cat /f\nLABEL a=b\n",
    )
    .unwrap();
    fs::write(ctx.join("f"), "file content\n").unwrap();
    let recorder = Arc::new(Recorder::default());
    let mut options = BuildOptions::new(&ctx);
    options.tags = vec![kontti_core::ImageRef::parse("lib:1").unwrap()];
    options.runtime = runtime.clone();
    options.progress = recorder.clone();

    let first = build(&root, &options).unwrap();
    assert_eq!((first.executed_steps, first.cached_steps), (2, 0));
    let out = recorder.output.lock().unwrap().clone();
    assert_eq!(out, ["from-run", "file content"]);
    assert!(
        recorder
            .steps
            .lock()
            .unwrap()
            .iter()
            .all(|(_, cached)| !cached),
        "nothing cached on the first build"
    );

    recorder.steps.lock().unwrap().clear();
    recorder.output.lock().unwrap().clear();
    let second = build(&root, &options).unwrap();
    assert_eq!((second.executed_steps, second.cached_steps), (0, 2));
    assert_eq!(
        second.id, first.id,
        "an unchanged rebuild is the same image"
    );
    assert!(recorder.output.lock().unwrap().is_empty(), "nothing ran");
    let cached: Vec<String> = recorder
        .steps
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, c)| *c)
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(cached.len(), 2, "{cached:?}");

    let image = kontti_image::Image::open(&store, &options.tags[0]).unwrap();
    assert_eq!(image.id(), &first.id);
    assert_eq!(recover(&root, &runtime).unwrap(), 0, "nothing to recover");
}
