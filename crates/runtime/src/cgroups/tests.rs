//! Tests of the cgroup mapping against fake cgroupfs trees (the same code
//! path as the host), and of path handling. Real-host tests are in
//! `tests_host.rs`.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use kontti_core::ErrorKind;
use oci_spec::runtime::LinuxResources;

use super::*;

/// The interface files the kernel creates in a v2 cgroup with these
/// controllers enabled.
const V2_FILES: &[&str] = &[
    "cgroup.procs",
    "cgroup.freeze",
    "cgroup.kill",
    "cgroup.events",
    "cgroup.controllers",
    "cgroup.subtree_control",
    "memory.max",
    "memory.low",
    "memory.swap.max",
    "memory.current",
    "memory.peak",
    "cpu.weight",
    "cpu.max",
    "cpu.max.burst",
    "cpu.idle",
    "cpu.stat",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "pids.current",
    "io.weight",
    "io.max",
    "hugetlb.2MB.max",
    "memory.high",
];

fn touch_all(dir: &Path, files: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for f in files {
        if !dir.join(f).exists() {
            fs::write(dir.join(f), "").unwrap();
        }
    }
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn v2_tree() -> (tempfile::TempDir, Cgroup) {
    let root = tempfile::tempdir().unwrap();
    fs::write(
        root.path().join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids\n",
    )
    .unwrap();
    fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
    let cg = Cgroup::create_in(root.path(), Hierarchy::V2, Some("/pods/pod-1/ctr"), "ctr").unwrap();
    // The kernel would create these on mkdir.
    touch_all(&root.path().join("pods/pod-1/ctr"), V2_FILES);
    (root, cg)
}

fn file(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn paths_resolve_like_runc() {
    assert_eq!(resolve_path(None, "abc").unwrap(), Path::new("kontti/abc"));
    assert_eq!(resolve_path(Some("/a/b"), "x").unwrap(), Path::new("a/b"));
    assert_eq!(
        resolve_path(Some("pod/c"), "x").unwrap(),
        Path::new("kontti/pod/c")
    );
    for bad in ["/a/../b", "/", "system.slice:kontti:x", "a/./b"] {
        let e = resolve_path(Some(bad), "x").unwrap_err();
        assert!(e.to_string().contains("invalid cgroupsPath"), "{bad}: {e}");
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
    assert!(resolve_path(None, "../x").is_err());
}

#[test]
fn v2_full_mapping_on_fake_tree() {
    let (root, cg) = v2_tree();
    let dir = root.path().join("pods/pod-1/ctr");
    // Controllers were delegated down to the leaf's parent.
    assert_eq!(
        file(root.path(), "cgroup.subtree_control"),
        "+cpuset +cpu +io +memory +hugetlb +pids"
    );
    let res = resources(
        r#"{
        "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0-1", "mems": "0", "idle": 0},
        "pids": {"limit": 42},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 1073741824}],
        "unified": {"memory.high": "90000000"}
    }"#,
    );
    cg.apply(&res).unwrap();
    assert_eq!(file(&dir, "memory.max"), "104857600");
    assert_eq!(file(&dir, "memory.low"), "52428800");
    assert_eq!(file(&dir, "memory.swap.max"), "104857600");
    // 1 + (1024 - 2) * 9999 / 262142
    assert_eq!(file(&dir, "cpu.weight"), "39");
    assert_eq!(file(&dir, "cpu.max"), "50000 100000");
    assert_eq!(file(&dir, "cpu.max.burst"), "1000");
    assert_eq!(file(&dir, "cpu.idle"), "0");
    assert_eq!(file(&dir, "cpuset.cpus"), "0-1");
    assert_eq!(file(&dir, "cpuset.mems"), "0");
    assert_eq!(file(&dir, "pids.max"), "42");
    // The last write wins in a plain file; the kernel keeps one line per
    // device. The device weight came last.
    assert_eq!(file(&dir, "io.weight"), "8:0 910");
    assert_eq!(file(&dir, "io.max"), "8:0 wiops=100");
    assert_eq!(file(&dir, "hugetlb.2MB.max"), "1073741824");
    assert_eq!(file(&dir, "memory.high"), "90000000");
    drop(root);
}

#[test]
fn v2_unlimited_values_are_max() {
    let (root, cg) = v2_tree();
    let dir = root.path().join("pods/pod-1/ctr");
    cg.apply(&resources(r#"{"memory": {"limit": -1}, "cpu": {"quota": -1, "period": 100000}, "pids": {"limit": 0}}"#))
        .unwrap();
    assert_eq!(file(&dir, "memory.max"), "max");
    assert_eq!(file(&dir, "memory.swap.max"), "max");
    assert_eq!(file(&dir, "cpu.max"), "max 100000");
    assert_eq!(file(&dir, "pids.max"), "max");
    drop(root);
}

#[test]
fn v2_bfq_weight_is_used_when_io_weight_is_missing() {
    let (root, cg) = v2_tree();
    let dir = root.path().join("pods/pod-1/ctr");
    fs::remove_file(dir.join("io.weight")).unwrap();
    fs::write(dir.join("io.bfq.weight"), "").unwrap();
    cg.apply(&resources(r#"{"blockIO": {"weight": 300}}"#))
        .unwrap();
    assert_eq!(file(&dir, "io.bfq.weight"), "default 300");
    drop(root);
}

#[test]
fn v2_missing_controller_is_named() {
    let (root, cg) = v2_tree();
    fs::remove_file(root.path().join("pods/pod-1/ctr/pids.max")).unwrap();
    let e = cg
        .apply(&resources(r#"{"pids": {"limit": 5}}"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.pids.limit needs the pids cgroup controller, which is not available here"
    );
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    drop(root);
}

#[test]
fn invalid_resources_name_the_field() {
    let (_root, cg) = v2_tree();
    let cases = [
        (r#"{"memory": {"swappiness": 101}}"#, "memory.swappiness"),
        (r#"{"memory": {"limit": -5}}"#, "memory.limit"),
        (r#"{"memory": {"swap": 100}}"#, "memory.swap"),
        (r#"{"memory": {"limit": 200, "swap": 100}}"#, "memory.swap"),
        (r#"{"cpu": {"quota": 0}}"#, "cpu.quota"),
        (r#"{"cpu": {"period": 10}}"#, "cpu.period"),
        (r#"{"cpu": {"cpus": "0-a"}}"#, "cpu.cpus"),
        (r#"{"blockIO": {"weight": 5}}"#, "blockIO.weight"),
        (
            r#"{"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}"#,
            "hugepageLimits.pageSize",
        ),
        (
            r#"{"devices": [{"allow": false, "access": "rwx"}]}"#,
            "devices.access",
        ),
        (r#"{"unified": {"../x": "1"}}"#, "unified"),
        (r#"{"unified": {"cgroup.procs": "1"}}"#, "unified"),
    ];
    for (json, field) in cases {
        let e = cg.apply(&resources(json)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("invalid linux.resources.{field}:")),
            "{json}: {e}"
        );
        assert_eq!(e.kind(), ErrorKind::Invalid);
    }
}

/// A fake v1 hybrid tree like this host's.
fn v1_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for h in [
        "cpu,cpuacct",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "devices",
        "freezer",
        "systemd",
        "unified",
    ] {
        fs::create_dir(root.path().join(h)).unwrap();
    }
    fs::write(root.path().join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
    fs::write(root.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
    root
}

#[test]
fn v1_mapping_on_fake_tree() {
    let root = v1_tree();
    // A pre-existing parent (a pod) is kept on destroy.
    fs::create_dir(root.path().join("memory/pod")).unwrap();
    let cg = Cgroup::create_in(root.path(), Hierarchy::Hybrid, Some("/pod/ctr"), "ctr").unwrap();
    // cpuset was seeded from the parent at mkdir time (the fake has no files;
    // copy_cpuset writes only into files the kernel created).
    let d = |h: &str| root.path().join(h).join("pod/ctr");
    touch_all(
        &d("memory"),
        &[
            "memory.limit_in_bytes",
            "memory.memsw.limit_in_bytes",
            "memory.soft_limit_in_bytes",
            "memory.swappiness",
            "memory.oom_control",
            "memory.kmem.tcp.limit_in_bytes",
        ],
    );
    touch_all(
        &d("cpu,cpuacct"),
        &[
            "cpu.shares",
            "cpu.cfs_period_us",
            "cpu.cfs_quota_us",
            "cpu.rt_period_us",
        ],
    );
    touch_all(&d("cpuset"), &["cpuset.cpus", "cpuset.mems"]);
    touch_all(&d("pids"), &["pids.max"]);
    touch_all(
        &d("blkio"),
        &[
            "blkio.bfq.weight",
            "blkio.throttle.read_bps_device",
            "blkio.weight_device",
            "blkio.leaf_weight",
        ],
    );
    touch_all(&d("devices"), &["devices.allow", "devices.deny"]);
    let res = resources(
        r#"{
        "memory": {"limit": 104857600, "swap": 209715200, "reservation": 1000, "swappiness": 10, "disableOOMKiller": true, "kernel": 5, "kernelTCP": 100},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "1", "mems": "0", "realtimePeriod": 1000000},
        "pids": {"limit": 10},
        "blockIO": {"weight": 200, "leafWeight": 300, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 4096}]},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 4, "minor": 1, "access": "rw"}],
        "network": {"classID": 5}
    }"#,
    );
    cg.apply(&res).unwrap();
    assert_eq!(file(&d("memory"), "memory.limit_in_bytes"), "104857600");
    assert_eq!(
        file(&d("memory"), "memory.memsw.limit_in_bytes"),
        "209715200"
    );
    assert_eq!(file(&d("memory"), "memory.soft_limit_in_bytes"), "1000");
    assert_eq!(file(&d("memory"), "memory.swappiness"), "10");
    assert_eq!(file(&d("memory"), "memory.oom_control"), "1");
    assert_eq!(file(&d("memory"), "memory.kmem.tcp.limit_in_bytes"), "100");
    assert_eq!(file(&d("cpu,cpuacct"), "cpu.shares"), "512");
    assert_eq!(file(&d("cpu,cpuacct"), "cpu.cfs_quota_us"), "20000");
    assert_eq!(file(&d("cpu,cpuacct"), "cpu.cfs_period_us"), "100000");
    assert_eq!(file(&d("cpu,cpuacct"), "cpu.rt_period_us"), "1000000");
    assert_eq!(file(&d("cpuset"), "cpuset.cpus"), "1");
    assert_eq!(file(&d("pids"), "pids.max"), "10");
    assert_eq!(file(&d("blkio"), "blkio.bfq.weight"), "200");
    assert_eq!(file(&d("blkio"), "blkio.leaf_weight"), "300");
    assert_eq!(
        file(&d("blkio"), "blkio.throttle.read_bps_device"),
        "8:0 4096"
    );
    // Last allow is the default tun rule; last deny the user's deny-all.
    assert_eq!(file(&d("devices"), "devices.deny"), "a *:* rwm");
    assert_eq!(file(&d("devices"), "devices.allow"), "c 10:200 rwm");
    // unified keys need the file in the cgroup2 hierarchy.
    let e = cg
        .apply(&resources(r#"{"unified": {"memory.high": "1"}}"#))
        .unwrap_err();
    assert!(e.to_string().contains("not supported on cgroup v1"), "{e}");
    // Hugepages: no hugetlb hierarchy here.
    let e = cg
        .apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}"#,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("hugetlb"), "{e}");
    // Paths exist in every hierarchy, systemd and unified included.
    for h in [
        "cpu,cpuacct",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "devices",
        "freezer",
        "systemd",
        "unified",
    ] {
        assert!(d(h).is_dir(), "{h}");
    }
    // Remove the interface files (the kernel does that on rmdir).
    for h in [
        "memory",
        "cpu,cpuacct",
        "cpuset",
        "pids",
        "blkio",
        "devices",
    ] {
        for e in fs::read_dir(d(h)).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
    }
    cg.destroy().unwrap();
    for h in ["cpu,cpuacct", "cpuset", "pids", "systemd", "unified"] {
        assert!(
            !root.path().join(h).join("pod").exists(),
            "{h}: created parent removed"
        );
    }
    assert!(
        root.path().join("memory/pod").is_dir(),
        "pre-existing parent kept"
    );
    assert!(!d("memory").exists());
}

#[test]
fn v1_memory_pair_is_ordered_by_the_writer() {
    // Both orders are planned as one step.
    let steps = resources::plan(
        &resources(r#"{"memory": {"limit": 100, "swap": 200}}"#),
        resources::Version::V1,
    )
    .unwrap();
    assert!(matches!(steps.as_slice(), [Step::MemoryPair { .. }]));
}

#[test]
fn v2_device_rules_become_one_program_with_the_defaults() {
    let steps = resources::plan(
        &resources(r#"{"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 4, "minor": 1, "access": "rw"}]}"#),
        resources::Version::V2,
    )
    .unwrap();
    let [Step::DeviceProgram(rules)] = steps.as_slice() else {
        panic!("{steps:?}");
    };
    assert_eq!(rules.len(), 2 + default_device_rules().len());
    assert_eq!(&rules[2..], default_device_rules().as_slice());
}

#[test]
fn shares_and_weights_convert_like_runc() {
    assert_eq!(resources::shares_to_weight(2), 1);
    assert_eq!(resources::shares_to_weight(262_144), 10_000);
    assert_eq!(resources::shares_to_weight(1024), 39);
    assert_eq!(resources::blkio_weight_to_io(10), 1);
    assert_eq!(resources::blkio_weight_to_io(1000), 10_000);
}

#[test]
fn cgroup_round_trips_through_json() {
    let (_root, cg) = v2_tree();
    let json = serde_json::to_string(&cg).unwrap();
    let back: Cgroup = serde_json::from_str(&json).unwrap();
    assert_eq!(back, cg);
}

#[test]
fn stats_read_v2_files() {
    let (root, cg) = v2_tree();
    let dir = root.path().join("pods/pod-1/ctr");
    let files: HashMap<&str, &str> = [
        ("memory.current", "4096\n"),
        ("memory.peak", "8192\n"),
        ("memory.max", "max\n"),
        ("pids.current", "3\n"),
        ("pids.max", "10\n"),
        ("cpu.stat", "usage_usec 1500\nuser_usec 1000\n"),
    ]
    .into_iter()
    .collect();
    for (f, v) in &files {
        fs::write(dir.join(f), v).unwrap();
    }
    let st = cg.stats().unwrap();
    assert_eq!(st.memory_usage, Some(4096));
    assert_eq!(st.memory_max_usage, Some(8192));
    assert_eq!(st.memory_limit, None);
    assert_eq!(st.pids_current, Some(3));
    assert_eq!(st.pids_limit, Some(10));
    assert_eq!(st.cpu_usage_ns, Some(1_500_000));
}
