//! The engine through its library API, as the node agent uses it: create,
//! start, wait, logs, inspect and remove a real container, with no exit
//! command (the caller reaps), and nothing left behind.
#![allow(clippy::disallowed_macros)]

use std::path::Path;

use kontti_engine::logs::{self, LogOptions};
use kontti_engine::{CreateRequest, Engine, RunOptions, Status};

#[test]
fn create_start_wait_logs_remove_through_the_library() {
    kontti_testutil::require_root();
    let exe = std::env::current_exe().unwrap();
    let supervisor = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("kontti-supervisor");
    assert!(
        supervisor.is_file(),
        "{} is missing: build it first (cargo build -p kontti-supervisor; CI builds the workspace)",
        supervisor.display()
    );
    let tmp = tempfile::Builder::new()
        .prefix("kontti-eng-")
        .tempdir()
        .unwrap();
    let root = tmp.path().join("root");
    let tar = tmp.path().join("rootfs.tar");
    kontti_testutil::write_rootfs_tar(&tar).unwrap();
    let store = kontti_image::ContentStore::open(kontti_image::content_dir(&root)).unwrap();
    let name = kontti_core::ImageRef::parse("busybox").unwrap();
    kontti_image::import::import_rootfs(
        &store,
        std::fs::File::open(&tar).unwrap(),
        "rootfs.tar",
        Some(&name),
        kontti_image::ImageConfig::default(),
    )
    .unwrap();
    let parent = format!("test-{}", tmp.path().file_name().unwrap().to_string_lossy());
    let before = kontti_testutil::HostSnapshot::take(&parent);

    let engine = Engine::open(&root).unwrap().with_supervisor(supervisor);
    let rec = engine
        .create(&CreateRequest {
            name: Some("api".into()),
            image: "busybox".into(),
            options: RunOptions {
                command: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo hello; echo oops >&2; exit 3".into(),
                ],
                network: Some("none".into()),
                cgroup_parent: Some(parent.clone()),
                ..RunOptions::default()
            },
        })
        .unwrap();
    assert_eq!(rec.state.status, Status::Created);
    // a second container cannot take the name
    let e = engine
        .create(&CreateRequest {
            name: Some("api".into()),
            image: "busybox".into(),
            options: RunOptions {
                command: vec!["true".into()],
                ..RunOptions::default()
            },
        })
        .unwrap_err();
    assert_eq!(e.kind(), kontti_core::ErrorKind::AlreadyExists);

    engine.start("api", false).unwrap();
    assert_eq!(engine.wait("api").unwrap(), 3);
    let mut lines = Vec::new();
    logs::logs(&engine, "api", &LogOptions::default(), |l| {
        lines.push((
            l.stream.as_str(),
            String::from_utf8_lossy(&l.text).into_owned(),
        ));
        Ok(())
    })
    .unwrap();
    assert_eq!(
        lines,
        [
            ("stdout", "hello".to_owned()),
            ("stderr", "oops".to_owned())
        ]
    );
    let seen = engine.inspect(&rec.id[..8]).unwrap();
    assert_eq!(
        (seen.state.status, seen.state.exit_code),
        (Status::Exited, 3)
    );

    engine.remove("api", false, false).unwrap();
    assert!(engine.list().unwrap().is_empty());
    assert!(!root.join("containers").join(&rec.id).exists());
    let after = kontti_testutil::HostSnapshot::take(&parent);
    let d = tmp.path().to_string_lossy().into_owned();
    let leaked: Vec<_> = after
        .mounts
        .difference(&before.mounts)
        .filter(|m| m.starts_with(&d))
        .collect();
    assert!(leaked.is_empty(), "leaked mounts {leaked:?}");
    let cg: Vec<_> = after.cgroups.difference(&before.cgroups).collect();
    assert!(cg.is_empty(), "leaked cgroups {cg:?}");
}
