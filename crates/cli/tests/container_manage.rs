//! `ps` with filters and formats, `rename`, `pause`/`unpause`, `restart`,
//! `wait`, `attach`, `kill`, `port` and `container prune` on real containers.
#![allow(clippy::disallowed_macros)]

mod container_support;

use std::process::Command;
use std::time::Duration;

use container_support::Kontti;

#[test]
fn ps_rename_pause_restart_wait_attach_prune() {
    let k = Kontti::new();
    let a = k.run_detached(
        &["--name", "alpha", "--label", "tier=web"],
        &[
            "sh",
            "-c",
            "trap 'exit 3' TERM; while true; do sleep 0.1; done",
        ],
    );
    k.run_detached(&["--name", "beta"], &["sh", "-c", "exit 4"]);
    k.wait_for("beta", Duration::from_secs(5), |v| {
        v["State"]["Status"] == "exited"
    });

    assert_eq!(k.ok(&["ps", "--format", "{{.Names}}"]), "alpha\n");
    let all = k.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    let mut lines: Vec<&str> = all.lines().collect();
    lines.sort();
    assert_eq!(lines, ["alpha running", "beta exited"]);
    assert_eq!(
        k.ok(&["ps", "-q", "--filter", "label=tier=web"]).trim(),
        &a[..12]
    );
    assert_eq!(
        k.ok(&["ps", "-a", "--filter", "exited=4", "--format", "{{.Names}}"]),
        "beta\n"
    );
    assert_eq!(
        k.ok(&["ps", "-a", "--filter", "status=running", "-q", "--no-trunc"])
            .trim(),
        a
    );
    let t = k.ok(&["ps", "--format", "table {{.Names}}\t{{.State}}"]);
    assert_eq!(t, "NAMES\tSTATE\nalpha\trunning\n");
    let table = k.ok(&["ps"]);
    assert!(table.starts_with("CONTAINER ID   IMAGE"), "{table}");
    assert!(table.contains("Up "), "{table}");
    let e = k.fails(&["ps", "--filter", "colour=red"], 125);
    assert!(e.contains("unknown filter"), "{e}");

    k.ok(&["rename", "alpha", "gamma"]);
    assert_eq!(k.inspect(&a)["Name"], "/gamma");
    let e = k.fails(&["rename", "gamma", "beta"], 125);
    assert!(e.contains("already in use"), "{e}");

    k.ok(&["pause", "gamma"]);
    assert_eq!(k.inspect("gamma")["State"]["Status"], "paused");
    assert!(k.ok(&["ps"]).contains("(Paused)"));
    k.ok(&["unpause", "gamma"]);
    assert_eq!(k.inspect("gamma")["State"]["Status"], "running");

    let started = k.inspect("gamma")["State"]["StartedAt"].clone();
    k.ok(&["restart", "-t", "0", "gamma"]);
    let v = k.inspect("gamma");
    assert_eq!(v["State"]["Status"], "running");
    assert_ne!(v["State"]["StartedAt"], started);

    // wait prints the exit code; kill sends the signal
    let waiter = k
        .cmd()
        .args(["wait", "gamma"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    k.ok(&["kill", "-s", "TERM", "gamma"]);
    let out = waiter.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "3\n");

    // start -a attaches and returns the exit code
    let out = k.run(&["start", "-a", "beta"]);
    assert_eq!(out.status.code(), Some(4));

    // attach to a running container sees its output and exit code
    let c = k.run_detached(
        &["--name", "talker"],
        &["sh", "-c", "sleep 0.5; echo late; exit 9"],
    );
    let out = k.run(&["attach", &c]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "late\n");
    assert_eq!(out.status.code(), Some(9));

    // every change left an event
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = k.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now.to_string(),
        "--filter",
        &format!("container={}", &a[..12]),
    ]);
    let actions: Vec<&str> = events.lines().filter_map(|l| l.split(' ').nth(2)).collect();
    for want in [
        "create", "start", "rename", "pause", "unpause", "stop", "kill", "die",
    ] {
        assert!(actions.contains(&want), "no {want} event in {events}");
    }

    let pruned = k.ok(&["container", "prune", "-f"]);
    assert!(pruned.contains("Total reclaimed containers: 3"), "{pruned}");
    assert_eq!(k.ok(&["ps", "-aq"]), "");
    k.finish();
}

/// What a reboot takes away: every process and mount of the test's containers.
fn simulate_reboot(k: &Kontti) {
    for id in k.ok(&["ps", "-q", "--no-trunc"]).lines() {
        let rec: serde_json::Value = serde_json::from_slice(
            &std::fs::read(k.root().join("containers").join(id).join("container.json")).unwrap(),
        )
        .unwrap();
        let sup = rec["state"]["supervisorPid"].as_i64().unwrap();
        assert!(sup > 0);
        Command::new("kill")
            .args(["-9", &sup.to_string()])
            .status()
            .unwrap();
        let procs = format!(
            "/sys/fs/cgroup/pids/kontti/{}/{id}/cgroup.procs",
            k.cgroup_parent
        );
        for pid in std::fs::read_to_string(&procs).unwrap().lines() {
            Command::new("kill").args(["-9", pid]).status().unwrap();
        }
    }
    let dir = k.dir.path().to_string_lossy().into_owned();
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&dir))
        .collect();
    mounts.reverse();
    for m in mounts {
        Command::new("umount").args(["-l", &m]).status().unwrap();
    }
}

#[test]
fn container_restore_after_a_reboot_starts_what_the_policy_asks() {
    let k = Kontti::new();
    k.run_detached(
        &["--name", "keep", "--restart", "always"],
        &["sleep", "300"],
    );
    k.run_detached(&["--name", "gone", "--restart", "no"], &["sleep", "300"]);
    k.run_detached(
        &["--name", "parked", "--restart", "unless-stopped"],
        &["sleep", "300"],
    );
    k.ok(&["stop", "-t", "0", "parked"]);
    let old_pid = k.inspect("keep")["State"]["Pid"].clone();
    simulate_reboot(&k);

    let out = k.ok(&["container", "restore"]);
    assert_eq!(out, "keep\n");
    let v = k.inspect("keep");
    assert_eq!(v["State"]["Status"], "running");
    assert_ne!(v["State"]["Pid"], old_pid);
    assert_eq!(k.inspect("gone")["State"]["Status"], "exited");
    assert_eq!(k.inspect("parked")["State"]["Status"], "exited");
    // running it again changes nothing
    assert_eq!(k.ok(&["container", "restore"]), "");
    assert_eq!(k.inspect("keep")["State"]["Pid"], v["State"]["Pid"]);
    let stats = k.ok(&["stats", "--no-stream", "keep"]);
    assert!(
        stats.contains("keep") && stats.lines().count() == 2,
        "{stats}"
    );
    k.finish();
}

#[test]
fn cp_copies_both_ways_and_never_follows_a_symlink_out_of_the_container() {
    let k = Kontti::new();
    let host = k.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let victim = host.join("victim");
    let script = format!(
        "mkdir -p /data/sub && echo one > /data/sub/f && ln -s /etc/passwd /tmp/link && \
         ln -s {} /tmp/trap && ln -s ../../../../../../.. /tmp/up",
        victim.display()
    );
    k.run_detached(&["--name", "files"], &["sh", "-c", &script]);
    k.wait_for("files", Duration::from_secs(5), |v| {
        v["State"]["Status"] == "exited"
    });

    // out: a directory tree, into an existing directory
    k.ok(&["cp", "files:/data", host.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(host.join("data/sub/f")).unwrap(),
        "one\n"
    );
    // a symlink comes out as a symlink, its target is not read
    let out = host.join("link");
    k.ok(&["cp", "files:/tmp/link", out.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_link(&out).unwrap(),
        std::path::Path::new("/etc/passwd")
    );

    // in: a file, then read back
    let src = host.join("in.txt");
    std::fs::write(&src, "two\n").unwrap();
    k.ok(&["cp", src.to_str().unwrap(), "files:/data/sub"]);
    let back = host.join("back.txt");
    k.ok(&["cp", "files:/data/sub/in.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "two\n");

    // a symlink at the destination is not written through
    let e = k.fails(&["cp", src.to_str().unwrap(), "files:/tmp/trap"], 125);
    assert!(e.contains("cp"), "{e}");
    assert!(!victim.exists(), "wrote through a symlink to the host");
    // .. cannot climb out of the container's root
    let e = k.fails(&["cp", src.to_str().unwrap(), "files:/tmp/up/x"], 125);
    assert!(e.contains("escapes"), "{e}");
    let e = k.fails(&["cp", "files:/nonexistent", host.to_str().unwrap()], 125);
    assert!(e.contains("No such file"), "{e}");
    let e = k.fails(&["cp", "a", "b"], 125);
    assert!(e.contains("exactly one"), "{e}");
    k.finish();
}

#[test]
fn health_checks_turn_unhealthy_then_healthy_and_stop_with_the_container() {
    let k = Kontti::new();
    k.run_detached(
        &[
            "--name",
            "doc",
            "--health-cmd",
            "test -f /tmp/ok",
            "--health-interval",
            "200ms",
            "--health-retries",
            "2",
        ],
        &["sleep", "60"],
    );
    let v = k.wait_for("doc", Duration::from_secs(10), |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    assert!(v["State"]["Health"]["FailingStreak"].as_u64().unwrap() >= 2);
    assert!(
        k.ok(&["ps", "--format", "{{.Status}}"])
            .contains("(unhealthy)")
    );
    k.ok(&["exec", "doc", "touch", "/tmp/ok"]);
    let v = k.wait_for("doc", Duration::from_secs(10), |v| {
        v["State"]["Health"]["Status"] == "healthy"
    });
    assert_eq!(v["State"]["Health"]["FailingStreak"], 0);
    assert_eq!(
        v["State"]["Health"]["Log"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["ExitCode"],
        0
    );
    let e = k.fails(
        &["run", "--health-interval", "soon", "busybox", "true"],
        125,
    );
    assert!(e.contains("--health-interval"), "{e}");
    // the check loop ends with the container (finish checks for leftover processes)
    k.finish();
}
