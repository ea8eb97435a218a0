//! End-to-end tests of the container commands on the real kernel: detached
//! containers and `logs -f` from a later process, `stop` escalating to
//! SIGKILL, the restart policy, OOM kills, and bad input. Every test has its
//! own state root and cgroup parent and checks that nothing is left behind.
#![allow(clippy::disallowed_macros)]

mod container_support;

use std::time::{Duration, Instant};

use container_support::Kontti;

#[test]
fn detached_container_logs_follow_after_the_cli_exited() {
    let k = Kontti::new();
    let id = k.run_detached(
        &["--name", "ticker"],
        &[
            "sh",
            "-c",
            "for i in 1 2 3 4 5 6; do echo line $i; echo err $i >&2; sleep 0.2; done",
        ],
    );
    assert_eq!(id.len(), 64, "run -d prints the id: {id}");
    // the CLI that started it has exited; a new one follows the log
    let out = k.cmd().args(["logs", "-f", "ticker"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let want: Vec<String> = (1..=6).map(|i| format!("line {i}")).collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), want);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 6, "{stderr}");
    // --tail and -t
    let tail = k.ok(&["logs", "--tail", "2", "-t", "ticker"]);
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 1, "{tail}"); // the last two entries: line 6 (stdout), err 6 (stderr)
    assert!(lines[0].ends_with("Z line 6"), "{tail}");
    let v = k.inspect("ticker");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 0);
    k.ok(&["rm", "ticker"]);
    k.finish();
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let k = Kontti::new();
    k.run_detached(
        &["--name", "stubborn"],
        &[
            "sh",
            "-c",
            "trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.1; done",
        ],
    );
    k.wait_for("stubborn", Duration::from_secs(5), |v| {
        v["State"]["Running"] == true
    });
    // let the shell install its trap
    let deadline = Instant::now() + Duration::from_secs(5);
    while !k.ok(&["logs", "stubborn"]).contains("ready") {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    k.ok(&["stop", "-t", "1", "stubborn"]);
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "stop returned before the timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    let v = k.inspect("stubborn");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 137, "killed by SIGKILL");
    assert!(
        k.ok(&["logs", "stubborn"]).contains("got TERM"),
        "the stop signal came first"
    );
    // a stopped container with the default policy stays stopped and is removable
    k.ok(&["rm", "stubborn"]);
    k.finish();
}

#[test]
fn restart_on_failure_restarts_three_times() {
    let k = Kontti::new();
    k.run_detached(
        &["--name", "flaky", "--restart", "on-failure:3"],
        &["sh", "-c", "echo run; exit 3"],
    );
    let v = k.wait_for("flaky", Duration::from_secs(30), |v| {
        v["State"]["Status"] == "exited" && v["RestartCount"] == 3
    });
    assert_eq!(v["State"]["ExitCode"], 3);
    // and no fourth restart
    std::thread::sleep(Duration::from_millis(1000));
    let v = k.inspect("flaky");
    assert_eq!(v["RestartCount"], 3);
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(
        k.ok(&["logs", "flaky"])
            .lines()
            .filter(|l| *l == "run")
            .count(),
        4
    );
    k.finish();
}

#[test]
fn memory_limit_kills_an_allocation_beyond_it_and_inspect_shows_oom() {
    let k = Kontti::new();
    k.run_detached(
        &["--name", "hog", "--memory", "16m"],
        // dd allocates one 64 MiB block and fills it
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    let v = k.wait_for("hog", Duration::from_secs(20), |v| {
        v["State"]["Status"] == "exited"
    });
    assert_eq!(v["State"]["OOMKilled"], true, "{:#}", v["State"]);
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["HostConfig"]["Memory"], 16 << 20);
    // within the limit the same command succeeds
    let out = k.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &k.cgroup_parent,
        "--memory",
        "16m",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=1M",
        "count=4",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.finish();
}

#[test]
fn foreground_run_returns_the_exit_code_and_rm_removes() {
    let k = Kontti::new();
    let out = k.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &k.cgroup_parent,
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 42",
    ]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(k.ok(&["ps", "-aq"]), "", "--rm removed it");
    // stdin with -i
    let mut child = k
        .cmd()
        .args([
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            "--cgroup-parent",
            &k.cgroup_parent,
            "busybox",
            "tr",
            "a-z",
            "A-Z",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO STDIN\n");
    assert_eq!(out.status.code(), Some(0));
    // docker's codes for a command that does not exist
    let out = k.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &k.cgroup_parent,
        "busybox",
        "/nonexistent",
    ]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    k.finish();
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_125_and_leaves_nothing() {
    let k = Kontti::new();
    let cg = k.cgroup_parent.clone();
    let base = [
        "run",
        "-d",
        "--network",
        "none",
        "--cgroup-parent",
        cg.as_str(),
    ];
    fn join<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }
    let with = |extra: &[&'static str]| join(&base, extra);

    let e = k.fails(&with(&["--pull", "never", "nosuchimage:1", "true"]), 125);
    assert!(e.contains("nosuchimage") && e.contains("not found"), "{e}");
    // a registry that does not answer (loopback only)
    let e = k.fails(&with(&["127.0.0.1:9/nosuch:1", "true"]), 125);
    assert!(e.contains("127.0.0.1:9"), "{e}");
    k.assert_clean();

    let e = k.fails(&with(&["--memory", "12q", "busybox", "true"]), 125);
    assert_eq!(
        e,
        "kontti: invalid --memory \"12q\": unknown unit \"q\" (use b, k, m, g or t)"
    );
    let e = k.fails(&with(&["--restart", "sometimes", "busybox", "true"]), 125);
    assert!(e.contains("--restart"), "{e}");
    let e = k.fails(&with(&["--cap-add", "CAP_BOGUS", "busybox", "true"]), 125);
    assert!(e.contains("unknown capability"), "{e}");
    let e = k.fails(&with(&["--name=-bad", "busybox", "true"]), 125);
    assert!(e.contains("invalid container name"), "{e}");
    let e = k.fails(&with(&["-u", "nobody-here", "busybox", "true"]), 125);
    assert!(e.contains("unable to find user nobody-here"), "{e}");
    k.assert_clean();

    k.run_detached(&["--name", "taken"], &["sleep", "30"]);
    let e = k.fails(&with(&["--name", "taken", "busybox", "true"]), 125);
    assert!(e.contains("\"taken\" is already in use"), "{e}");
    let e = k.fails(&["rm", "taken"], 125);
    assert!(
        e.contains("stop the container before removing it, or use --force"),
        "{e}"
    );
    assert_eq!(
        k.inspect("taken")["State"]["Running"],
        true,
        "a refused rm leaves it running"
    );
    k.ok(&["rm", "-f", "taken"]);
    let e = k.fails(&["rm", "taken"], 125);
    assert_eq!(e, "kontti: no such container: taken");
    k.finish();
}

#[test]
fn concurrent_creates_of_one_name_let_exactly_one_win() {
    let k = Kontti::new();
    let children: Vec<_> = (0..6)
        .map(|_| {
            k.cmd()
                .args([
                    "create",
                    "--name",
                    "only",
                    "--network",
                    "none",
                    "--cgroup-parent",
                    &k.cgroup_parent,
                    "busybox",
                    "true",
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let won = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(won, 1, "exactly one create wins");
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_eq!(o.status.code(), Some(125));
        assert!(String::from_utf8_lossy(&o.stderr).contains("\"only\" is already in use"));
    }
    assert_eq!(k.ok(&["ps", "-a", "--format", "{{.Names}}"]), "only\n");
    k.finish();
}

#[test]
fn run_pulls_a_missing_image_from_a_loopback_registry() {
    use std::io::{BufRead, BufReader};
    let k = Kontti::new();
    let storage = k.dir.path().join("registry");
    let mut server = k
        .cmd()
        .args(["registry", "serve", "--addr", "127.0.0.1:0", "--storage"])
        .arg(&storage)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("kontti registry listening on ")
        .unwrap()
        .to_owned();
    let reference = format!("{addr}/lib/busybox:1");
    k.ok(&["tag", "busybox", &reference]);
    k.ok(&["push", "-q", &reference]);
    k.ok(&["rmi", &reference]);

    // not in the store: pulled on first use
    let out = k.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cgroup-parent",
        &k.cgroup_parent,
        &reference,
        "echo",
        "pulled",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pulled\n");
    assert!(
        stderr.contains(&format!("Unable to find image '{reference}' locally")),
        "{stderr}"
    );
    // present now: --pull never uses it, --pull always asks the registry again
    k.ok(&[
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        "--cgroup-parent",
        &k.cgroup_parent,
        &reference,
        "true",
    ]);
    k.ok(&[
        "run",
        "--rm",
        "--pull",
        "always",
        "--network",
        "none",
        "--cgroup-parent",
        &k.cgroup_parent,
        &reference,
        "true",
    ]);
    let _ = server.kill();
    let _ = server.wait();
    k.finish();
}
