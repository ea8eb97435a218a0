//! `kontti exec`, mounts and the security profile, on the real kernel.
#![allow(clippy::disallowed_macros)]

mod container_support;

use std::time::Duration;

use container_support::Kontti;

#[test]
fn exec_runs_in_the_running_container() {
    let k = Kontti::new();
    k.run_detached(&["--name", "box", "-e", "A=1"], &["sleep", "60"]);
    k.wait_for("box", Duration::from_secs(5), |v| {
        v["State"]["Running"] == true
    });
    let out = k.run(&["exec", "box", "sh", "-c", "echo $A; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    let out = k.ok(&[
        "exec",
        "-u",
        "user",
        "-w",
        "/tmp",
        "-e",
        "B=2",
        "box",
        "sh",
        "-c",
        "id -u; pwd; echo $A$B",
    ]);
    assert_eq!(out, "1000\n/tmp\n12\n");
    let mut child = k
        .cmd()
        .args(["exec", "-i", "box", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"through exec\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through exec\n");
    let out = k.run(&["exec", "box", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(127));
    // ps inside sees the container's processes only
    let out = k.ok(&["exec", "box", "ps", "-o", "pid,args"]);
    assert!(
        out.contains("sleep 60") && out.lines().count() <= 4,
        "{out}"
    );
    // -d: started, not waited for
    k.ok(&[
        "exec",
        "-d",
        "box",
        "sh",
        "-c",
        "sleep 0.3; touch /tmp/detached",
    ]);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while k
        .run(&["exec", "box", "test", "-f", "/tmp/detached"])
        .status
        .code()
        != Some(0)
    {
        assert!(std::time::Instant::now() < deadline, "exec -d never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    let top = k.ok(&["top", "box"]);
    assert!(top.contains("sleep 60"), "{top}");
    k.ok(&["stop", "-t", "0", "box"]);
    let e = k.fails(&["exec", "box", "true"], 125);
    assert!(e.contains("exec needs a running container"), "{e}");
    k.finish();
}

#[test]
fn binds_volumes_tmpfs_read_only_and_default_profile() {
    let k = Kontti::new();
    let host = k.dir.path().join("shared");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host\n").unwrap();
    let bind = format!("{}:/data", host.display());
    let cg = k.cgroup_parent.clone();
    let out = k.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "--read-only",
        "-v",
        &bind,
        "-v",
        "named:/vol",
        "--tmpfs",
        "/scratch:size=1m",
        "--hostname",
        "hosty",
        "busybox",
        "sh",
        "-c",
        "cat /data/in.txt; echo out > /data/out.txt; echo v > /vol/v; echo t > /scratch/t; \
         hostname; touch /root-write 2>/dev/null || echo ro-root; \
         grep CapBnd /proc/self/status; grep Seccomp: /proc/self/status; \
         cat /proc/keys | wc -c",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "from host");
    assert_eq!(lines[1], "hosty");
    assert_eq!(lines[2], "ro-root");
    // docker's 14 capabilities: 0x00000000a80425fb
    assert_eq!(lines[3], "CapBnd:\t00000000a80425fb", "{stdout}");
    assert_eq!(lines[4], "Seccomp:\t2", "{stdout}");
    assert_eq!(lines[5], "0", "/proc/keys is masked: {stdout}");
    assert_eq!(
        std::fs::read_to_string(host.join("out.txt")).unwrap(),
        "out\n"
    );
    // the named volume outlives the container and is reused
    let out = k.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "-v",
        "named:/vol:ro",
        "busybox",
        "sh",
        "-c",
        "cat /vol/v; echo x > /vol/w 2>/dev/null || echo ro-vol",
    ]);
    assert_eq!(out, "v\nro-vol\n");
    // --privileged lifts the profile
    let out = k.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; grep CapBnd /proc/self/status",
    ]);
    assert!(out.starts_with("Seccomp:\t0\n"), "{out}");
    assert!(!out.contains("00000000a80425fb"), "{out}");
    k.ok(&["volume", "rm", "named"]);
    // a new volume over image content starts with a copy of it
    let out = k.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "-v",
        "etcvol:/etc",
        "busybox",
        "grep",
        "-c",
        "^root:",
        "/etc/passwd",
    ]);
    assert_eq!(out, "1\n");
    k.ok(&["volume", "rm", "etcvol"]);
    k.finish();
}

#[test]
fn run_flags_reach_the_container() {
    let k = Kontti::new();
    let env_file = k.dir.path().join("env");
    std::fs::write(&env_file, "# comment\nFROM_FILE=yes\n").unwrap();
    let cg = k.cgroup_parent.clone();
    let out = k.ok(&[
        "run", "--rm", "--network", "none", "--cgroup-parent", &cg,
        "--env-file", env_file.to_str().unwrap(), "-e", "X=1",
        "-u", "user", "-w", "/tmp", "--ulimit", "nofile=100:200", "--shm-size", "1m",
        "--pids-limit", "20", "--cpus", "0.5", "--device", "/dev/null:/dev/mynull",
        "--label", "a=b", "--mount", "type=tmpfs,target=/m,tmpfs-size=2m", "--entrypoint", "/bin/sh", "busybox", "-c",
        "echo $FROM_FILE$X; id -u; id -G; pwd; ulimit -n; df -k /dev/shm | tail -1 | tr -s ' ' | cut -d' ' -f2; \
         cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us; ls -l /dev/mynull | cut -c1; df -k /m | tail -1 | tr -s ' ' | cut -d' ' -f2",
    ]);
    assert_eq!(
        out,
        "yes1\n1000\n1000 2000\n/tmp\n100\n1024\n20\n50000\nc\n2048\n"
    );
    // --init runs the host's static init as PID 1
    let out = k.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &cg,
        "--init",
        "busybox",
        "cat",
        "/proc/1/cmdline",
    ]);
    assert!(out.starts_with("/run/kontti-init\0--\0cat"), "{out:?}");
    k.finish();
}
