use super::*;
use crate::options::parse_volume;

fn input<'a>(img: &'a ImageConfig, o: &'a RunOptions, dir: &'a Path) -> SpecInput<'a> {
    SpecInput {
        id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        image: img,
        options: o,
        rootfs: dir,
        container_dir: dir,
        netns: NetnsChoice::New,
        extra_mounts: vec![],
        init_binary: None,
    }
}

fn image() -> ImageConfig {
    ImageConfig {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["echo hi".into()]),
        env: Some(vec!["PATH=/bin".into(), "A=1".into()]),
        working_dir: Some("/srv".into()),
        stop_signal: Some("SIGQUIT".into()),
        ..Default::default()
    }
}

#[test]
fn image_config_and_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image();
    let o = RunOptions {
        env: vec!["A=2".into()],
        ..Default::default()
    };
    let g = generate(&input(&img, &o, tmp.path())).unwrap();
    let p = &g.spec["process"];
    assert_eq!(p["args"], json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(p["cwd"], "/srv");
    let env: Vec<&str> = p["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"PATH=/bin")
            && env.contains(&"A=2")
            && env.contains(&"HOSTNAME=0123456789ab"),
        "{env:?}"
    );
    assert_eq!(g.stop_signal, libc::SIGQUIT);
    assert_eq!(p["capabilities"]["bounding"].as_array().unwrap().len(), 14);
    assert_eq!(
        g.spec["linux"]["maskedPaths"].as_array().unwrap().len(),
        MASKED_PATHS.len()
    );
    assert!(g.spec["linux"]["seccomp"]["syscalls"].is_array());
    assert_eq!(
        g.spec["linux"]["resources"]["devices"][0],
        json!({"allow": false, "access": "rwm"})
    );
    assert_eq!(g.spec["hostname"], "0123456789ab");
}

#[test]
fn command_and_entrypoint_overrides() {
    let img = image();
    let o = RunOptions {
        command: vec!["ls".into()],
        ..Default::default()
    };
    assert_eq!(process_args(&img, &o).unwrap(), vec!["/bin/sh", "-c", "ls"]);
    let o = RunOptions {
        entrypoint: Some(vec!["/bin/true".into()]),
        ..Default::default()
    };
    assert_eq!(process_args(&img, &o).unwrap(), vec!["/bin/true"]);
    let o = RunOptions {
        entrypoint: Some(vec![]),
        ..Default::default()
    };
    assert!(matches!(
        process_args(&img, &o),
        Err(EngineError::NoCommand)
    ));
}

#[test]
fn privileged_lifts_the_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image();
    let o = RunOptions {
        privileged: true,
        ..Default::default()
    };
    let g = generate(&input(&img, &o, tmp.path())).unwrap();
    assert!(g.spec["linux"]["maskedPaths"].is_null());
    assert!(g.spec["linux"]["seccomp"].is_null());
    assert_eq!(
        g.spec["linux"]["resources"]["devices"],
        json!([{"allow": true, "access": "rwm"}])
    );
    assert!(
        g.spec["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .len()
            > 30
    );
}

#[test]
fn capability_changes() {
    let o = RunOptions {
        cap_add: vec!["sys_admin".into()],
        cap_drop: vec!["CAP_NET_RAW".into(), "chown".into()],
        ..Default::default()
    };
    let caps = capabilities(&o).unwrap();
    assert!(caps.contains(&"CAP_SYS_ADMIN".to_owned()));
    assert!(!caps.contains(&"CAP_NET_RAW".to_owned()) && !caps.contains(&"CAP_CHOWN".to_owned()));
    let o = RunOptions {
        cap_drop: vec!["ALL".into()],
        cap_add: vec!["KILL".into()],
        ..Default::default()
    };
    assert_eq!(capabilities(&o).unwrap(), vec!["CAP_KILL"]);
    let o = RunOptions {
        cap_add: vec!["CAP_BOGUS".into()],
        ..Default::default()
    };
    assert!(
        capabilities(&o)
            .unwrap_err()
            .to_string()
            .contains("unknown capability")
    );
}

#[test]
fn resources_mounts_and_security_options() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image();
    let o = RunOptions {
        memory: Some(64 << 20),
        nano_cpus: Some(500_000_000),
        pids_limit: Some(50),
        read_only: true,
        no_new_privileges: true,
        seccomp: SeccompChoice::Unconfined,
        volumes: vec![parse_volume(&format!("{}:/data:ro", tmp.path().display())).unwrap()],
        tmpfs: vec![crate::options::parse_tmpfs("/run:size=1m").unwrap()],
        cgroup_parent: Some("test-parent".into()),
        ..Default::default()
    };
    let g = generate(&input(&img, &o, tmp.path())).unwrap();
    let r = &g.spec["linux"]["resources"];
    assert_eq!(r["memory"]["limit"], 64 << 20);
    assert_eq!(r["cpu"]["quota"], 50_000);
    assert_eq!(r["pids"]["limit"], 50);
    assert_eq!(g.spec["root"]["readonly"], true);
    assert_eq!(g.spec["process"]["noNewPrivileges"], true);
    assert!(g.spec["linux"]["seccomp"].is_null());
    assert!(
        g.spec["linux"]["cgroupsPath"]
            .as_str()
            .unwrap()
            .starts_with("test-parent/")
    );
    let dests: Vec<&str> = g.spec["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    assert!(
        dests.contains(&"/data") && dests.contains(&"/run"),
        "{dests:?}"
    );
    let missing = RunOptions {
        volumes: vec![parse_volume("/nonexistent-kontti-path:/x").unwrap()],
        ..Default::default()
    };
    assert!(generate(&input(&img, &missing, tmp.path())).is_err());
}

#[test]
fn init_without_a_binary_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image();
    let o = RunOptions {
        init: true,
        ..Default::default()
    };
    let e = generate(&input(&img, &o, tmp.path())).unwrap_err();
    assert!(e.to_string().contains("--init"), "{e}");
    let mut i = input(&img, &o, tmp.path());
    i.init_binary = Some("/usr/bin/catatonit".into());
    let g = generate(&i).unwrap();
    assert_eq!(g.spec["process"]["args"][0], INIT_PATH);
}
