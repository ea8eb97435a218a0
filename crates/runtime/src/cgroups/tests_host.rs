//! Tests on this host's real cgroups, as root: v1 (hybrid) controllers for
//! limits, and the cgroup2 hierarchy (`/sys/fs/cgroup/unified` here, without
//! controllers) for `cgroup.freeze` and `cgroup.kill`. Every test works under
//! its own unique top-level name and checks that it leaves nothing behind.

use std::fs;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kontti_testutil::{HostSnapshot, busybox, require_root};
use oci_spec::runtime::LinuxResources;

use super::*;

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("kontti-test-{tag}-{}-{nanos}", std::process::id())
}

/// Kills what the test started and removes its cgroup, even when the test
/// fails half-way.
struct Guard {
    cg: Cgroup,
    children: Vec<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.kill_all(libc::SIGKILL);
        if let Err(e) = self.cg.destroy() {
            eprintln!("cleanup: {e}");
        }
    }
}

fn sleeper() -> Child {
    Command::new(busybox())
        .args(["sleep", "600"])
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn busybox sleep")
}

fn proc_state(pid: u32) -> char {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .unwrap_or('?')
}

fn own_cgroup_line(pid: u32, hierarchy: &str) -> String {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find(|l| l.split(':').nth(1) == Some(hierarchy))
        .unwrap_or_default()
        .to_owned()
}

/// A block device of this host, as `major:minor`.
fn some_block_device() -> Option<(i64, i64)> {
    let mut names: Vec<PathBuf> = fs::read_dir("/sys/block")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    names.iter().find_map(|p| {
        let dev = fs::read_to_string(p.join("dev")).ok()?;
        let (a, b) = dev.trim().split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    })
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}

#[test]
fn v1_limits_are_written_and_a_real_process_joins() {
    require_root();
    let name = unique("v1");
    let before = HostSnapshot::take(&name);
    let layout = Layout::detect().unwrap();
    assert_ne!(
        layout.mode,
        Hierarchy::V2,
        "this test expects the v1/hybrid host of CI"
    );
    let cg = Cgroup::create_with(&layout, Some(&format!("/{name}/ctr")), "ctr").unwrap();
    let mut g = Guard {
        cg,
        children: Vec::new(),
    };
    let dev = some_block_device();
    let mut json = serde_json::json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swappiness": 0},
        "cpu": {"shares": 256, "quota": 25000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 16},
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]
    });
    if let Some((major, minor)) = dev {
        json["blockIO"] = serde_json::json!({"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]});
    }
    let res: LinuxResources = serde_json::from_value(json).unwrap();
    g.cg.apply(&res).unwrap();
    let dir = |c: &str| g.cg.controller_dir(c).unwrap();
    assert_eq!(
        read(&dir("memory"), "memory.limit_in_bytes").trim(),
        "67108864"
    );
    assert_eq!(
        read(&dir("memory"), "memory.soft_limit_in_bytes").trim(),
        "33554432"
    );
    assert_eq!(read(&dir("memory"), "memory.swappiness").trim(), "0");
    assert_eq!(read(&dir("cpu"), "cpu.shares").trim(), "256");
    assert_eq!(read(&dir("cpu"), "cpu.cfs_quota_us").trim(), "25000");
    assert_eq!(read(&dir("cpu"), "cpu.cfs_period_us").trim(), "100000");
    assert_eq!(read(&dir("cpuset"), "cpuset.cpus").trim(), "0");
    assert_eq!(read(&dir("pids"), "pids.max").trim(), "16");
    let devices = read(&dir("devices"), "devices.list");
    assert!(devices.contains("c 1:3 rw"), "{devices}");
    assert!(
        devices.contains("c 1:5 rwm"),
        "default devices allowed: {devices}"
    );
    assert!(!devices.contains("a *:*"), "deny-all applied: {devices}");
    if let Some((major, minor)) = dev {
        let t = read(&dir("blkio"), "blkio.throttle.read_bps_device");
        assert!(t.contains(&format!("{major}:{minor} 1048576")), "{t}");
    }

    // A real process joins every hierarchy.
    g.children.push(sleeper());
    let pid = g.children[0].id();
    g.cg.add_process(pid as i32).unwrap();
    for h in ["memory", "pids", "cpu", "name=systemd"] {
        let line = own_cgroup_line(pid, h);
        assert!(line.ends_with(&format!("/{name}/ctr")), "{h}: {line}");
    }
    assert_eq!(g.cg.pids().unwrap(), vec![pid as i32]);
    let st = g.cg.stats().unwrap();
    // (v1 does not move existing charges with a task, so usage may be 0.)
    assert!(st.memory_usage.is_some(), "{st:?}");
    assert_eq!(st.memory_limit, Some(67108864));
    assert_eq!(st.pids_current, Some(1));
    assert_eq!(st.pids_limit, Some(16));
    assert!(st.cpu_usage_ns.is_some(), "{st:?}");

    // Update (as `kontti-runc update` does): raise memory.
    let res: LinuxResources = serde_json::from_str(r#"{"memory": {"limit": 134217728}}"#).unwrap();
    g.cg.apply(&res).unwrap();
    assert_eq!(
        read(&dir("memory"), "memory.limit_in_bytes").trim(),
        "134217728"
    );

    g.cg.kill_all(libc::SIGKILL).unwrap();
    let status = g.children[0].wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    g.children.clear();
    drop(g);
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}

#[test]
fn v1_pids_limit_stops_forks() {
    require_root();
    let name = unique("pids");
    let before = HostSnapshot::take(&name);
    let cg = Cgroup::create(Some(&format!("/{name}")), "x").unwrap();
    let g = Guard {
        cg,
        children: Vec::new(),
    };
    let res: LinuxResources = serde_json::from_str(r#"{"pids": {"limit": 3}}"#).unwrap();
    g.cg.apply(&res).unwrap();
    // The shell waits for a line on stdin, so that it is in the cgroup
    // before it forks.
    let mut child = Command::new(busybox())
        .args(["sh", "-c", "read go; for i in 1 2 3 4 5 6; do sleep 30 </dev/null >/dev/null 2>&1 & done; echo forked"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    g.cg.add_process(child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let pids_now = g.cg.pids().unwrap().len();
    let _ = child.wait();
    assert!(err.contains("fork"), "sh should fail to fork: {err:?}");
    assert!(
        pids_now <= 3,
        "{pids_now} processes in a cgroup limited to 3"
    );
    g.cg.kill_all(libc::SIGKILL).unwrap();
    assert!(g.cg.pids().unwrap().is_empty());
    drop(g);
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}

#[test]
fn v1_freezer_freezes_and_thaws() {
    require_root();
    let name = unique("frz1");
    let before = HostSnapshot::take(&name);
    let cg = Cgroup::create(Some(&format!("/{name}/ctr")), "ctr").unwrap();
    let g = Guard {
        cg,
        children: vec![sleeper()],
    };
    let pid = g.children[0].id();
    g.cg.add_process(pid as i32).unwrap();
    g.cg.freeze().unwrap();
    assert!(g.cg.is_frozen().unwrap());
    assert_eq!(
        read(&g.cg.controller_dir("freezer").unwrap(), "freezer.state").trim(),
        "FROZEN"
    );
    g.cg.thaw().unwrap();
    assert!(!g.cg.is_frozen().unwrap());
    drop(g);
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}

/// cgroup v2 freeze and kill for real, in the unified hierarchy.
#[test]
fn v2_freeze_thaw_and_kill_in_the_unified_hierarchy() {
    require_root();
    let layout = Layout::detect().unwrap();
    let unified = layout.unified.clone().expect("a cgroup2 mount");
    let name = unique("v2");
    let before = HostSnapshot::take(&name);
    let cg = Cgroup::create_in(
        &unified,
        Hierarchy::V2,
        Some(&format!("/{name}/pod/ctr")),
        "ctr",
    )
    .unwrap();
    let dir = unified.join(&name).join("pod/ctr");
    assert!(dir.join("cgroup.freeze").exists() && dir.join("cgroup.kill").exists());
    let mut g = Guard {
        cg,
        children: vec![sleeper(), sleeper()],
    };
    for c in &g.children {
        g.cg.add_process(c.id() as i32).unwrap();
    }
    let mut pids = g.cg.pids().unwrap();
    pids.sort();
    let mut want: Vec<i32> = g.children.iter().map(|c| c.id() as i32).collect();
    want.sort();
    assert_eq!(pids, want);

    g.cg.freeze().unwrap();
    assert!(read(&dir, "cgroup.events").lines().any(|l| l == "frozen 1"));
    assert!(g.cg.is_frozen().unwrap());
    for c in &g.children {
        // A frozen task sleeps in the freezer.
        assert_eq!(proc_state(c.id()), 'S');
    }
    g.cg.thaw().unwrap();
    assert!(read(&dir, "cgroup.events").lines().any(|l| l == "frozen 0"));

    // Freeze again, then kill: cgroup.kill works on frozen cgroups.
    g.cg.freeze().unwrap();
    let start = Instant::now();
    g.cg.kill_all(libc::SIGKILL).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    for c in &mut g.children {
        let st = c.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL)
        );
    }
    g.children.clear();
    assert!(g.cg.pids().unwrap().is_empty());
    drop(g);
    assert!(!unified.join(&name).exists());
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}

#[test]
fn other_signals_reach_every_member() {
    require_root();
    let name = unique("sig");
    let before = HostSnapshot::take(&name);
    let cg = Cgroup::create(Some(&format!("/{name}")), "x").unwrap();
    let mut g = Guard {
        cg,
        children: vec![sleeper(), sleeper()],
    };
    for c in &g.children {
        g.cg.add_process(c.id() as i32).unwrap();
    }
    g.cg.kill_all(libc::SIGTERM).unwrap();
    for c in &mut g.children {
        let st = c.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGTERM)
        );
    }
    g.children.clear();
    drop(g);
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}

#[test]
fn destroy_keeps_a_shared_parent_in_use() {
    require_root();
    let name = unique("pod");
    let before = HostSnapshot::take(&name);
    let a = Cgroup::create(Some(&format!("/{name}/pod/a")), "a").unwrap();
    let b = Cgroup::create(Some(&format!("/{name}/pod/b")), "b").unwrap();
    // `a` created the pod parent; `b` did not. Destroying `a` first keeps
    // the parent `b` still uses.
    a.destroy().unwrap();
    for d in b.dirs() {
        assert!(d.is_dir(), "{}", d.display());
    }
    b.destroy().unwrap();
    // The parent `a` created stays behind only because `b` was still in it:
    // remove it as the owner of the pod would.
    let layout = Layout::detect().unwrap();
    let pod = Cgroup::create_with(&layout, Some(&format!("/{name}/pod")), "pod").unwrap();
    pod.destroy().unwrap();
    let top = Cgroup::create_with(&layout, Some(&format!("/{name}")), "top").unwrap();
    top.destroy().unwrap();
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}

#[test]
fn a_bad_path_creates_nothing() {
    require_root();
    let name = unique("bad");
    let before = HostSnapshot::take(&name);
    let e = Cgroup::create(Some(&format!("/{name}/../x")), "x").unwrap_err();
    assert!(e.to_string().contains("invalid cgroupsPath"), "{e}");
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}

/// Runs a busybox shell `script` inside `cg` (it waits until it has been
/// moved in) and returns its combined output.
fn run_inside(cg: &Cgroup, script: &str) -> String {
    let mut child = Command::new(busybox())
        .args(["sh", "-c", &format!("read go; {script}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cg.add_process(child.id() as i32).unwrap();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// v2 device rules for real: the eBPF program attached in the unified
/// hierarchy (a process is in both; the v1 devices cgroup here allows all).
#[test]
fn v2_device_program_enforces_the_rules() {
    require_root();
    let unified = Layout::detect().unwrap().unified.expect("a cgroup2 mount");
    let name = unique("dev");
    let before = HostSnapshot::take(&name);
    let cg = Cgroup::create_in(&unified, Hierarchy::V2, Some(&format!("/{name}")), "x").unwrap();
    let g = Guard {
        cg,
        children: Vec::new(),
    };
    // /dev/kmsg (1:11) is readable by root without the program.
    let script = "echo x >/dev/null && echo null-ok; head -c 1 /dev/zero >/dev/null && echo zero-ok; head -c 1 /dev/kmsg >/dev/null && echo kmsg-ok";
    let res: LinuxResources =
        serde_json::from_str(r#"{"devices": [{"allow": false, "access": "rwm"}]}"#).unwrap();
    g.cg.apply(&res).unwrap();
    let out = run_inside(&g.cg, script);
    assert!(
        out.contains("null-ok") && out.contains("zero-ok"),
        "default devices allowed: {out}"
    );
    assert!(
        !out.contains("kmsg-ok") && out.contains("Operation not permitted"),
        "kmsg denied: {out}"
    );

    // An update replaces the program: allow reading 1:11.
    let res: LinuxResources = serde_json::from_str(
        r#"{"devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "r"}]}"#,
    )
    .unwrap();
    g.cg.apply(&res).unwrap();
    let out = run_inside(&g.cg, script);
    assert!(out.contains("kmsg-ok"), "kmsg allowed after update: {out}");
    // Write access was not granted.
    let out = run_inside(&g.cg, "echo x >/dev/kmsg && echo wrote");
    assert!(!out.contains("wrote"), "{out}");
    drop(g);
    HostSnapshot::take(&name).assert_no_leaks_since(&before);
}
