//! Each config field's effect, observed from inside the container.

mod common;

use common::{World, scratch};
use serde_json::json;

#[test]
fn hostname_and_domainname() {
    let mut w = World::new("uts", &["true"]);
    w.config()["hostname"] = json!("box1");
    w.config()["domainname"] = json!("example.org");
    let (code, out) = w.sh("hostname; cat /proc/sys/kernel/domainname");
    assert_eq!((code, out.as_str()), (0, "box1\nexample.org\n"));
    w.assert_clean();
}

#[test]
fn user_group_and_additional_gids() {
    let mut w = World::new("user", &["true"]);
    w.config()["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [2000]});
    let (code, out) = w.sh("id -u; id -g; id -G");
    assert_eq!((code, out.as_str()), (0, "1000\n1000\n1000 2000\n"));
    w.assert_clean();
}

#[test]
fn env_cwd_and_umask() {
    let mut w = World::new("env", &["true"]);
    w.config()["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    w.config()["process"]["cwd"] = json!("/tmp");
    w.config()["process"]["user"]["umask"] = json!(0o027);
    let (code, out) = w.sh("echo $FOO; pwd; umask");
    assert_eq!((code, out.as_str()), (0, "bar baz\n/tmp\n0027\n"));
    w.assert_clean();
}

#[test]
fn all_five_capability_sets() {
    let mut w = World::new("caps", &["true"]);
    w.config()["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    w.config()["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL"],
        "effective": ["CAP_CHOWN"],
        "permitted": ["CAP_CHOWN"],
        "inheritable": ["CAP_CHOWN"],
        "ambient": ["CAP_CHOWN"]
    });
    let (code, out) = w.sh("grep ^Cap /proc/self/status");
    assert_eq!(code, 0, "{out}");
    for line in [
        "CapInh:\t0000000000000001",
        "CapPrm:\t0000000000000001",
        "CapEff:\t0000000000000001",
        "CapBnd:\t0000000000000021",
        "CapAmb:\t0000000000000001",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    w.assert_clean();
}

#[test]
fn default_capabilities_for_root() {
    let mut w = World::new("rootcaps", &["true"]);
    let (_, out) = w.sh("grep -E '^Cap(Bnd|Eff)' /proc/self/status");
    assert_eq!(
        out,
        "CapEff:\t0000000020000420\nCapBnd:\t0000000020000420\n"
    );
    w.assert_clean();
}

#[test]
fn no_new_privileges_on_and_off() {
    for (flag, want) in [(true, "1"), (false, "0")] {
        let mut w = World::new(&format!("nnp{want}"), &["true"]);
        w.config()["process"]["noNewPrivileges"] = json!(flag);
        let (_, out) = w.sh("grep NoNewPrivs /proc/self/status");
        assert_eq!(out, format!("NoNewPrivs:\t{want}\n"));
        w.assert_clean();
    }
}

#[test]
fn rlimits_are_applied() {
    let mut w = World::new("rlimit", &["true"]);
    w.config()["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 256, "hard": 512},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    let (code, out) = w.sh("ulimit -n; ulimit -Hn; ulimit -c");
    assert_eq!((code, out.as_str()), (0, "256\n512\n0\n"));
    w.assert_clean();
}

#[test]
fn oom_score_adj_is_raised() {
    let mut w = World::new("oom", &["true"]);
    w.config()["process"]["oomScoreAdj"] = json!(500);
    let (_, out) = w.sh("cat /proc/self/oom_score_adj");
    assert_eq!(out, "500\n");
    w.assert_clean();
}

#[test]
fn masked_paths_read_empty() {
    let mut w = World::new("masked", &["true"]);
    // /proc/keys and /proc/timer_list have content on the host; /proc/acpi
    // and /sys/firmware are directories
    let (code, out) = w.sh("cat /proc/keys /proc/timer_list | wc -c; ls -A /proc/acpi | wc -l; ls -A /sys/firmware | wc -l; touch /proc/acpi/x 2>/dev/null || echo refused");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "0\n0\n0\nrefused\n");
    w.assert_clean();
}

#[test]
fn readonly_paths_refuse_writes() {
    let mut w = World::new("ropath", &["true"]);
    let (_, out) = w.sh("(echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo written || echo refused; grep ' /proc/sys ' /proc/self/mountinfo | grep -c ' ro,'");
    assert_eq!(out, "refused\n1\n");
    w.assert_clean();
}

#[test]
fn readonly_root() {
    let mut w = World::new("roroot", &["true"]);
    w.config()["root"]["readonly"] = json!(true);
    let (_, out) = w.sh("touch /newfile 2>/dev/null && echo written || echo refused; touch /dev/shm/ok && echo tmpfs-ok");
    assert_eq!(out, "refused\ntmpfs-ok\n");
    w.assert_clean();
}

#[test]
fn mounts_tmpfs_and_readonly_bind() {
    let mut w = World::new("mounts", &["true"]);
    let src = scratch();
    std::fs::write(src.join("file"), "from host\n").unwrap();
    let mounts = w.config()["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m", "mode=700"]}));
    mounts.push(json!({"destination": "/data", "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "rprivate"]}));
    let (code, out) = w.sh("grep ' /mnt/t ' /proc/self/mountinfo | cut -d' ' -f6; stat -c %a /mnt/t; cat /data/file; touch /data/x 2>/dev/null && echo written || echo refused; grep ' /data ' /proc/self/mountinfo | cut -d' ' -f6");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out,
        "rw,nosuid,nodev,relatime\n700\nfrom host\nrefused\nro,nosuid,relatime\n"
    );
    assert!(!src.join("x").exists());
    std::fs::remove_dir_all(src).unwrap();
    w.assert_clean();
}

#[test]
fn default_mounts_and_devices() {
    let mut w = World::new("devs", &["true"]);
    let (code, out) = w.sh("for f in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$f; done; for l in fd stdin ptmx; do readlink /dev/$l; done; ls /sys/fs/cgroup | grep -c memory; grep -c mqueue /proc/self/mountinfo");
    assert_eq!(code, 0, "{out}");
    let want = "/dev/null 1:3 666\n/dev/zero 1:5 666\n/dev/full 1:7 666\n/dev/random 1:8 666\n/dev/urandom 1:9 666\n/dev/tty 5:0 666\n/proc/self/fd\n/proc/self/fd/0\npts/ptmx\n1\n1\n";
    assert_eq!(out, want);
    w.assert_clean();
}

#[test]
fn user_namespace_with_id_maps() {
    let mut w = World::new("userns", &["true"]);
    let c = w.config();
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    c["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let (code, out) = w.sh("id -u; cat /proc/self/uid_map /proc/self/gid_map | tr -s ' '");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "0\n 0 100000 65536\n 0 100000 65536\n");
    w.assert_clean();
}

#[test]
fn sysctl_is_written() {
    let mut w = World::new("sysctl", &["true"]);
    w.config()["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "1000"});
    let (code, out) = w.sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni");
    assert_eq!((code, out.as_str()), (0, "1\n1000\n"));
    w.assert_clean();
}

#[test]
fn all_six_hooks_run_with_the_state() {
    let mut w = World::new("hooks", &["true"]);
    let dir = scratch();
    let host_hook = |phase: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}/{phase}", dir.display())]});
    w.config()["hooks"] = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        // runs after pivot_root: the path resolves in the container
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /tmp/startContainer"]}],
        "poststart": [host_hook("poststart")],
        "poststop": [host_hook("poststop")]
    });
    let out = w.run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = w.id.clone();
    for (phase, path, status) in [
        ("prestart", dir.join("prestart"), "creating"),
        ("createRuntime", dir.join("createRuntime"), "creating"),
        ("createContainer", dir.join("createContainer"), "creating"),
        (
            "startContainer",
            w.bundle.rootfs().join("tmp/startContainer"),
            "creating",
        ),
        ("poststart", dir.join("poststart"), "running"),
        ("poststop", dir.join("poststop"), "stopped"),
    ] {
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{phase} hook did not run: {e}"));
        let v: serde_json::Value =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{phase}: {e}"));
        assert_eq!(v["id"], id.as_str(), "{phase}");
        assert_eq!(v["status"], status, "{phase}");
    }
    std::fs::remove_dir_all(dir).unwrap();
    w.assert_clean();
}

#[test]
fn a_failing_hook_fails_create_and_leaves_nothing() {
    let mut w = World::new("hookfail", &["true"]);
    w.config()["hooks"] = json!({"createRuntime": [{"path": "/bin/false"}]});
    let out = w.run();
    let err = common::one_line_error(&out);
    assert!(err.contains("createRuntime hook /bin/false"), "{err}");
    w.assert_clean();
}

#[test]
fn no_pivot_uses_move_and_chroot() {
    let mut w = World::new(
        "nopivot",
        &["sh", "-c", "ls /bin/busybox; cat /proc/1/comm"],
    );
    w.write();
    let b = w.bundle.path().to_str().unwrap().to_owned();
    let out = w.runc(&["run", "--no-pivot", "--bundle", &b, &w.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/bin/busybox\ncat\n");
    w.assert_clean();
}

#[test]
fn namespaces_joined_by_path() {
    let mut a = World::new("nsa", &["sleep", "100"]);
    assert!(a.create().status.success());
    let pid = a.state()["pid"].as_i64().unwrap();
    let net = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    let ipc = std::fs::read_link(format!("/proc/{pid}/ns/ipc")).unwrap();
    let mut b = World::new("nsb", &["true"]);
    let c = b.config();
    c.as_object_mut().unwrap().remove("hostname");
    c["linux"]["namespaces"] = json!([
        {"type": "pid"}, {"type": "mount"},
        {"type": "network", "path": format!("/proc/{pid}/ns/net")},
        {"type": "ipc", "path": format!("/proc/{pid}/ns/ipc")}
    ]);
    let (code, out) = b.sh("readlink /proc/self/ns/net; readlink /proc/self/ns/ipc");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("{}\n{}\n", net.display(), ipc.display()));
    b.assert_clean();
    assert!(a.runc(&["delete", "--force", &a.id]).status.success());
    a.assert_clean();
}

#[test]
fn resources_reach_the_cgroup_and_a_parent_path_is_honoured() {
    let mut w = World::new("res", &["true"]);
    let parent = format!("kt-parent-{}", std::process::id());
    let c = w.config();
    c["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    c["linux"]["resources"]["pids"] = json!({"limit": 10});
    c["linux"]["cgroupsPath"] = json!(format!("/{parent}/ctr"));
    let (code, out) = w.sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; grep -c ':/$' /proc/self/cgroup >/dev/null && echo nsroot");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "67108864\n10\nnsroot\n");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory/{parent}")).exists(),
        "parent cgroup left behind"
    );
    w.assert_clean();
}

#[test]
fn terminal_goes_through_the_console_socket() {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;
    let mut w = World::new(
        "tty",
        &[
            "sh",
            "-c",
            "tty; stty size; readlink /dev/console >/dev/null || echo console-bound",
        ],
    );
    w.config()["process"]["terminal"] = json!(true);
    w.config()["process"]["consoleSize"] = json!({"height": 30, "width": 100});
    let dir = scratch();
    let sock = dir.join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let reader = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut name = [0u8; 64];
        let (_, fd) = kontti_runtime::sys::term::recv_fd(conn.as_fd(), &mut name).unwrap();
        let mut master = std::fs::File::from(fd.expect("pty master"));
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once the container's side is closed
        while let Ok(n) = std::io::Read::read(&mut master, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).replace('\r', "")
    });
    w.write();
    let b = w.bundle.path().to_str().unwrap().to_owned();
    let out = w.runc(&[
        "run",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        &b,
        &w.id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = reader.join().unwrap();
    assert_eq!(text, "/dev/pts/0\n30 100\nconsole-bound\n");
    std::fs::remove_dir_all(dir).unwrap();
    w.assert_clean();
}

#[test]
fn without_a_cgroup_namespace_the_own_cgroup_is_bound() {
    let mut w = World::new("nocgns", &["true"]);
    let c = w.config();
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != "cgroup");
    c["linux"]["resources"]["memory"] = json!({"limit": 33554432});
    c["linux"]["resources"]["pids"] = json!({"limit": 12});
    let (code, out) = w.sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; grep ' /sys/fs/cgroup/memory ' /proc/self/mountinfo | cut -d' ' -f6");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "33554432\n12\nro,nosuid,nodev,noexec,relatime\n");
    w.assert_clean();
}

#[test]
fn run_in_the_foreground_proxies_the_terminal_itself() {
    let mut w = World::new("ttyproxy", &["sh", "-c", "tty; stty size; echo done"]);
    w.config()["process"]["terminal"] = json!(true);
    w.config()["process"]["consoleSize"] = json!({"height": 24, "width": 80});
    let out = w.run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout is not a terminal here, so the size stays the config's
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "/dev/pts/0\r\n24 80\r\ndone\r\n"
    );
    w.assert_clean();
}
