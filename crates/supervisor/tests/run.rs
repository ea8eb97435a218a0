//! `kontti-supervisor run` on real containers: logs, exit records, OOM,
//! lifetime, failures, and that nothing is left behind.
#![allow(clippy::disallowed_macros)]

mod common;

use std::time::Duration;

use common::{World, alive, wait_for};
use kontti_supervisor::crilog::{self, Stream};

#[test]
fn output_lands_in_the_cri_log_and_a_normal_exit_is_recorded() {
    let mut w = World::new(
        "log",
        &["sh", "-c", "echo hello; echo oops >&2; printf 'no newline'"],
    );
    let c = w.command();
    let pid = w.start(&c);
    assert!(pid > 1);
    let exit = w.wait_exit();
    assert_eq!(exit.exit_code, 0);
    assert_eq!(exit.signal, None);
    assert!(!exit.oom_killed);
    assert_eq!(exit.error, None);
    assert!(exit.started_at <= exit.finished_at, "{exit:?}");
    assert_eq!(w.log_text(Stream::Stdout), "hello\nno newline");
    assert_eq!(w.log_text(Stream::Stderr), "oops\n");
    let log = w.log();
    assert!(
        log.last().unwrap().partial,
        "a line cut at exit is a P entry"
    );
    let raw = std::fs::read_to_string(w.log_path()).unwrap();
    for line in raw.lines() {
        // 2026-11-29T17:00:00.123456789Z stdout F text
        assert_eq!(&line[29..31], "Z ", "{line}");
        assert!(
            line[31..].starts_with("stdout ") || line[31..].starts_with("stderr "),
            "{line}"
        );
    }
    w.assert_clean();
}

#[test]
fn the_container_gets_only_its_stdio_of_the_supervisors_fds() {
    let mut w = World::new("fds", &["ls", "/proc/self/fd"]);
    let mut c = w.command();
    c.tty = false;
    c.stdin = true;
    w.start(&c);
    assert_eq!(w.wait_exit().exit_code, 0);
    // 3 is the directory ls is listing
    assert_eq!(w.log_text(Stream::Stdout), "0\n1\n2\n3\n");
    w.assert_clean();
}

#[test]
fn non_zero_exit_and_signal_are_recorded() {
    let mut w = World::new("code", &["sh", "-c", "exit 42"]);
    let c = w.command();
    w.start(&c);
    let exit = w.wait_exit();
    assert_eq!((exit.exit_code, exit.signal), (42, None));
    w.assert_clean();

    let mut w = World::new("signal", &["sleep", "1000"]);
    let c = w.command();
    w.start(&c);
    kontti_runtime::ops::kill(&w.runtime_root(), &w.id, libc::SIGKILL, false).expect("kill");
    let exit = w.wait_exit();
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));
    assert!(!exit.oom_killed);
    w.assert_clean();
}

#[test]
fn a_container_killed_before_it_was_started_reports_the_kill() {
    let mut w = World::new("killcreated", &["sleep", "1000"]);
    let mut c = w.command();
    c.wait_attach = true;
    w.start(&c);
    kontti_runtime::ops::kill(&w.runtime_root(), &w.id, libc::SIGKILL, false).expect("kill");
    let exit = w.wait_exit();
    assert_eq!(
        (exit.exit_code, exit.signal, exit.error),
        (137, Some(9), None)
    );
    w.assert_clean();
}

#[test]
fn a_second_supervisor_for_a_running_container_fails_without_touching_the_first() {
    let mut w = World::new("twice", &["sleep", "1000"]);
    let c = w.command();
    w.start(&c);
    let e = c.spawn().expect_err("the id is taken");
    assert_eq!(e.kind(), kontti_core::ErrorKind::AlreadyExists, "{e}");
    assert!(
        w.socket().exists(),
        "the first supervisor's socket is intact"
    );
    assert!(w.state_dir().join("supervisor.pid").exists());
    let mut client = w.attach();
    kontti_runtime::ops::kill(&w.runtime_root(), &w.id, libc::SIGKILL, false).expect("kill");
    assert_eq!(common::collect(&mut client).2, Some(137));
    assert_eq!(w.wait_exit().exit_code, 137);
    w.assert_clean();
}

#[test]
fn the_supervisor_outlives_its_spawner_and_ignores_sigterm() {
    // pid 1 of a namespace gets no signal it has no handler for
    let script = "trap 'exit 7' TERM; while true; do sleep 0.05; done";
    let mut w = World::new("outlive", &["sh", "-c", script]);
    let c = w.command();
    w.start(&c);
    let sup = w.supervisor.unwrap();
    let mode = std::fs::metadata(w.socket()).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777,
        0o600,
        "attach.sock"
    );
    let stat = std::fs::read_to_string(format!("/proc/{sup}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let (ppid, sid): (i32, i32) = (fields[1].parse().unwrap(), fields[3].parse().unwrap());
    assert_ne!(
        ppid,
        std::process::id() as i32,
        "the spawner is not its parent"
    );
    assert_eq!(sid, sup, "it leads its own session");
    // SIGTERM to the supervisor does nothing
    std::process::Command::new("kill")
        .args(["-TERM", &sup.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(alive(sup));
    assert!(!w.state_dir().join("exit.json").exists());
    kontti_runtime::ops::kill(&w.runtime_root(), &w.id, libc::SIGTERM, false).expect("kill");
    let exit = w.wait_exit();
    assert_eq!((exit.exit_code, exit.signal), (7, None));
    w.assert_clean();
}

#[test]
fn an_allocation_beyond_the_memory_limit_is_an_oom_kill() {
    let mut w = World::new(
        "oom",
        &["sh", "-c", "head -c 200m /dev/zero | tail; echo survived"],
    );
    w.config()["linux"]["resources"]["memory"] = serde_json::json!({"limit": 16 << 20});
    let c = w.command();
    w.start(&c);
    let exit = w.wait_exit();
    assert!(exit.oom_killed, "{exit:?}");
    w.assert_clean();
}

#[test]
fn a_bundle_that_cannot_start_reports_an_error_and_leaves_nothing() {
    let mut w = World::new("noexec", &["/no/such/binary"]);
    let c = w.command();
    let e = c.spawn().expect_err("must fail");
    let msg = e.to_string();
    assert!(msg.contains("/no/such/binary"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    w.assert_clean();
    assert!(!w.state_dir().join("exit.json").exists());

    let mut w = World::new("nobundle", &["true"]);
    let mut c = w.command();
    c.bundle = w.root.path().join("missing-bundle");
    let e = c.spawn().expect_err("must fail");
    assert!(e.to_string().contains("missing-bundle"), "{e}");
    assert_eq!(e.kind(), kontti_core::ErrorKind::NotFound);
    w.assert_clean();

    // a log that cannot be opened
    let mut w = World::new("nolog", &["true"]);
    let mut c = w.command();
    c.log_path = w.root.path().join("no/dir/container.log");
    let e = c.spawn().expect_err("must fail");
    assert!(e.to_string().contains("no/dir/container.log"), "{e}");
    w.assert_clean();

    // a bad command line is refused before anything happens
    let out = std::process::Command::new(common::BIN)
        .args(["run", "--id", "x", "--log-max-size", "12q"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(kontti_core::ErrorKind::Invalid.exit_code())
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("kontti-supervisor: --log-max-size: \"12q\" is not a valid number"),
        "{err}"
    );
}

#[test]
fn the_log_rotates_and_the_exit_command_runs() {
    let mut w = World::new(
        "rotate",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 200 ]; do echo line $i; i=$((i+1)); done",
        ],
    );
    let mut c = w.command();
    c.log_max_size = Some(2000);
    c.log_max_files = Some(3);
    let marker = w.root.path().join("exit-command-ran");
    c.exit_command = Some("/bin/sh".into());
    c.exit_command_args = vec![
        "-c".into(),
        format!("echo $0 > {}", marker.display()),
        "done".into(),
    ];
    w.start(&c);
    assert_eq!(w.wait_exit().exit_code, 0);
    let files = crilog::log_files(&w.log_path());
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).unwrap().len() <= 2000);
    }
    let lines = w.log();
    assert_eq!(
        String::from_utf8_lossy(&lines.last().unwrap().text),
        "line 199"
    );
    // consecutive: nothing lost inside the kept files
    let first: usize = String::from_utf8_lossy(&lines[0].text)[5..]
        .parse()
        .unwrap();
    assert_eq!(lines.len(), 200 - first);
    wait_for(&marker);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "done\n");
    w.assert_clean();
}
