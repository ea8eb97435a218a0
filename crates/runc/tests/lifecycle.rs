//! The lifecycle through the real binary: run, create/start/state/kill/
//! delete, exec, pause/resume, list, ps, spec, features.

mod common;

use common::{BIN, World, one_line_error};

#[test]
fn run_propagates_the_exit_status() {
    let mut w = World::new("exit", &["sh", "-c", "exit 7"]);
    let out = w.run();
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.assert_clean();
}

#[test]
fn run_reports_a_signal_as_128_plus_signal() {
    // pid 1 of a pid namespace ignores signals it has no handler for: run
    // the shell in the host's pid namespace so that it can be killed
    let mut w = World::new("signal", &["sh", "-c", "kill -TERM $$"]);
    let ns = w.config()["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    let out = w.run();
    assert_eq!(out.status.code(), Some(128 + 15));
    w.assert_clean();
}

#[test]
fn run_prints_the_container_output() {
    let mut w = World::new("hello", &["echo", "hello from kontti"]);
    let out = w.run();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from kontti\n");
    w.assert_clean();
}

#[test]
fn create_start_kill_delete_follow_the_state_machine() {
    let mut w = World::new("cycle", &["sleep", "100"]);
    w.config()["annotations"] = serde_json::json!({"org.example.key": "value"});
    let out = w.create();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = w.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["annotations"]["org.example.key"], "value");
    assert!(st["pid"].as_i64().unwrap() > 0);
    let start = w.runc(&["start", &w.id]);
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    assert_eq!(w.status(), "running");
    // the process is sleep, not the runtime, once started
    let pid = w.state()["pid"].as_i64().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let kill = w.runc(&["kill", &w.id, "KILL"]);
    assert!(kill.status.success());
    for _ in 0..200 {
        if w.status() == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(w.status(), "stopped");
    let del = w.runc(&["delete", &w.id]);
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    w.assert_clean();
}

#[test]
fn delete_refuses_a_running_container_without_force() {
    let mut w = World::new("delrun", &["sleep", "100"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    let out = w.runc(&["delete", &w.id]);
    let err = one_line_error(&out);
    assert!(err.contains("is running"), "{err}");
    let out = w.runc(&["delete", "--force", &w.id]);
    assert!(out.status.success());
    w.assert_clean();
}

#[test]
fn exec_joins_the_container() {
    let mut w = World::new("exec", &["sleep", "100"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    let out = w.runc(&[
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        &w.id,
        "sh",
        "-c",
        "hostname; echo $FOO; pwd; cat /proc/1/comm; exit 3",
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "kontti\nbar\n/tmp\nsleep\n"
    );
    let out = w.runc(&["exec", "--user", "1000:1000", &w.id, "id"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "uid=1000(user) gid=1000(user)"
    );
    assert!(w.runc(&["delete", "--force", &w.id]).status.success());
    w.assert_clean();
}

#[test]
fn exec_with_a_process_file_and_detach_writes_the_pid_file() {
    let mut w = World::new("execproc", &["sleep", "100"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    let dir = common::scratch();
    let proc_json = dir.join("process.json");
    std::fs::write(
        &proc_json,
        serde_json::json!({"user": {"uid": 0, "gid": 0}, "args": ["sleep", "50"], "cwd": "/", "env": ["PATH=/bin"]}).to_string(),
    )
    .unwrap();
    let pid_file = dir.join("pid");
    let out = w.runc_detached(&[
        "exec",
        "--detach",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--process",
        proc_json.to_str().unwrap(),
        &w.id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );
    let ps = w.runc(&["ps", "--format", "json", &w.id]);
    let pids: Vec<i32> = serde_json::from_slice(&ps.stdout).unwrap();
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    assert_eq!(pids.len(), 2);
    assert!(w.runc(&["delete", "--force", &w.id]).status.success());
    std::fs::remove_dir_all(dir).unwrap();
    w.assert_clean();
}

#[test]
fn pause_and_resume_freeze_the_container() {
    let mut w = World::new("pause", &["sleep", "100"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    assert!(w.runc(&["pause", &w.id]).status.success());
    assert_eq!(w.status(), "paused");
    let pid = w.state()["pid"].as_i64().unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = stat.rsplit(") ").next().unwrap().chars().next().unwrap();
    assert_eq!(state, 'D', "a frozen task sleeps uninterruptibly");
    assert!(w.runc(&["resume", &w.id]).status.success());
    assert_eq!(w.status(), "running");
    assert!(w.runc(&["delete", "--force", &w.id]).status.success());
    w.assert_clean();
}

#[test]
fn list_shows_containers_as_table_and_json() {
    let mut w = World::new("list", &["sleep", "100"]);
    assert!(w.create().status.success());
    let out = w.runc(&["list", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["id"], w.id.as_str());
    assert_eq!(v[0]["status"], "created");
    let out = w.runc(&["list"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("ID"), "{text}");
    assert!(text.contains(&w.id));
    assert!(w.runc(&["delete", &w.id]).status.success());
    w.assert_clean();
}

#[test]
fn spec_writes_a_config_run_accepts_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(v["process"]["args"][0], "sh");
    assert_eq!(v["root"]["path"], "rootfs");
    let again = std::process::Command::new(BIN)
        .args(["spec", "--bundle"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = one_line_error(&again);
    assert!(err.contains("config.json"), "{err}");
    let rootless = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["spec", "--rootless", "--bundle"])
        .arg(rootless.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rootless.path().join("config.json")).unwrap())
            .unwrap();
    assert!(v["linux"]["uidMappings"].is_array());
}

#[test]
fn features_is_the_spec_document() {
    let out = std::process::Command::new(BIN)
        .arg("features")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ociVersionMax"], "1.2.0");
    assert!(
        v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "user")
    );
    assert!(v["hooks"].as_array().unwrap().len() == 6);
}

#[test]
fn systemd_cgroup_is_a_clear_error() {
    let mut w = World::new("systemd", &["true"]);
    w.write();
    let b = w.bundle.path().to_str().unwrap().to_owned();
    let out = w.runc(&["--systemd-cgroup", "run", "--bundle", &b, &w.id]);
    let err = one_line_error(&out);
    assert!(err.contains("--systemd-cgroup"), "{err}");
    w.assert_clean();
}

#[test]
fn exec_with_a_tty_sends_the_pty_to_the_console_socket() {
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixListener;
    let mut w = World::new("exectty", &["sleep", "100"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    let dir = common::scratch();
    let sock = dir.join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let reader = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut name = [0u8; 64];
        let (_, fd) = kontti_runtime::sys::term::recv_fd(conn.as_fd(), &mut name).unwrap();
        let mut master = std::fs::File::from(fd.expect("pty master"));
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut master, &mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).replace('\r', "")
    });
    let out = w.runc(&[
        "exec",
        "--tty",
        "--console-socket",
        sock.to_str().unwrap(),
        &w.id,
        "sh",
        "-c",
        "tty; echo ok; exit 4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = reader.join().unwrap();
    assert!(
        text.starts_with("/dev/pts/") && text.ends_with("\nok\n"),
        "{text:?}"
    );
    assert!(w.runc(&["delete", "--force", &w.id]).status.success());
    std::fs::remove_dir_all(dir).unwrap();
    w.assert_clean();
}

#[test]
fn update_changes_the_cgroup_limits() {
    let mut w = World::new("update", &["sleep", "100"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    let out = w.runc(&["update", "--memory", "96m", "--pids-limit", "33", &w.id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = w.runc(&[
        "exec",
        &w.id,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n33\n", 96 << 20)
    );
    let bad = w.runc(&["update", "--memory", "lots", &w.id]);
    let err = one_line_error(&bad);
    assert!(err.contains("--memory \"lots\""), "{err}");
    assert!(w.runc(&["delete", "--force", &w.id]).status.success());
    w.assert_clean();
}

#[test]
fn kill_all_signals_every_process_and_ps_lists_them() {
    let mut w = World::new("killall", &["sh", "-c", "sleep 100 & sleep 100 & wait"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    let mut pids: Vec<i32> = Vec::new();
    for _ in 0..100 {
        let out = w.runc(&["ps", "--format", "json", &w.id]);
        pids = serde_json::from_slice(&out.stdout).unwrap();
        if pids.len() == 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(pids.len(), 3, "{pids:?}");
    let table = w.runc(&["ps", &w.id]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(w.runc(&["kill", "--all", &w.id, "KILL"]).status.success());
    for _ in 0..200 {
        if w.status() == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(w.status(), "stopped");
    assert!(w.runc(&["delete", &w.id]).status.success());
    w.assert_clean();
}
