//! Bad input to `kontti build`, with the real binary: each a clear error
//! naming what is wrong, a non-zero exit, nothing tagged; a build killed
//! mid-RUN leaves a consistent store and nothing running or mounted.
#![allow(clippy::disallowed_macros)]

mod build_support;

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use build_support::Kontti;

/// The last line of stderr: the error itself.
fn last_line(err: &str) -> &str {
    err.trim_end().lines().last().unwrap_or("")
}

fn assert_not_tagged(k: &Kontti, name: &str) {
    let out = k.run(&["image", "inspect", name]);
    assert!(!out.status.success(), "{name} was tagged");
}

#[test]
fn syntax_errors_name_line_and_column() {
    let k = Kontti::new();
    let ctx = k.context("ctx", "FROM busybox\nRUN echo ok\nCOPY onlyone\n", &[]);
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        last_line(&err).starts_with("kontti: Dockerfile:3:1: "),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let ctx = k.context("ctx2", "FROM busybox\n  FROBNICATE the thing\n", &[]);
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        last_line(&err).starts_with("kontti: Dockerfile:2:3: "),
        "{err}"
    );
    assert!(err.contains("FROBNICATE"), "{err}");
    assert_not_tagged(&k, "bad");
}

#[test]
fn copy_of_a_missing_file_or_outside_the_context() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nCOPY missing.txt /m\n",
        &[("other", "x")],
    );
    let err = k.build_fails(&ctx, &["-t", "bad"], 2);
    assert!(
        last_line(&err).contains("Dockerfile:2: COPY missing.txt /m"),
        "{err}"
    );
    assert!(
        last_line(&err).contains("\"missing.txt\": file not found"),
        "{err}"
    );
    let ctx = k.context("ctx2", "FROM busybox\nCOPY ../secret /s\n", &[]);
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        last_line(&err).contains("outside the build context"),
        "{err}"
    );
    let ctx = k.context("ctx3", "FROM busybox\nCOPY link /s\n", &[]);
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("link")).unwrap();
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        last_line(&err).contains("outside the build context"),
        "{err}"
    );
    assert_not_tagged(&k, "bad");
    k.assert_clean();
}

#[test]
fn a_failing_run_shows_its_output_and_code_and_tags_nothing() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nRUN echo before-the-failure && echo on-stderr >&2 && exit 3\nRUN echo never\n",
        &[],
    );
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        err.contains("before-the-failure") && err.contains("on-stderr"),
        "{err}"
    );
    assert!(last_line(&err).contains("exited with code 3"), "{err}");
    assert!(!err.contains("RUN echo never"), "the build stops: {err}");
    assert_not_tagged(&k, "bad");
    // Quiet builds still say why.
    let err = k.build_fails(&ctx, &["-t", "bad", "-q"], 5);
    assert!(
        last_line(&err).contains("exited with code 3") && last_line(&err).contains("on-stderr"),
        "{err}"
    );
    k.assert_clean();
}

#[test]
fn stage_cycles_unknown_stages_and_unknown_images() {
    let k = Kontti::new();
    let ctx = k.context(
        "cycle",
        "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
        &[],
    );
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        err.contains("a -> b -> a") || err.contains("b -> a -> b"),
        "{err}"
    );
    let ctx = k.context("unknown", "FROM busybox\nCOPY --from=7 /x /x\n", &[]);
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(last_line(&err).contains("Dockerfile:2:1"), "{err}");
    let ctx = k.context("target", "FROM busybox AS one\n", &[]);
    let err = k.build_fails(&ctx, &["-t", "bad", "--target", "nope"], 5);
    assert!(err.contains("nope"), "{err}");
    // An image nobody has: the pull from a loopback port that refuses fails.
    let ctx = k.context("image", "FROM 127.0.0.1:1/nothing/here:v1\nRUN true\n", &[]);
    let start = Instant::now();
    let err = k.build_fails(&ctx, &["-t", "bad"], 2);
    assert!(
        last_line(&err).contains("127.0.0.1:1/nothing/here:v1"),
        "{err}"
    );
    println!(
        "unknown base image reported in {} ms",
        start.elapsed().as_millis()
    );
    assert_not_tagged(&k, "bad");
    k.assert_clean();
}

fn sleepers() -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x00477\x00"))
        .count()
}

#[test]
fn a_build_killed_mid_run_leaves_nothing_and_the_next_build_works() {
    let k = Kontti::new();
    let ctx = k.context(
        "ctx",
        "FROM busybox\nARG WAIT=477\nRUN echo started && sleep $WAIT\nRUN echo after > /after\n",
        &[],
    );
    let mut c = k.cmd();
    c.args(["build", "--progress=plain", "-t", "killed"])
        .arg(&ctx)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    k.pids.borrow_mut().push(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while sleepers() == 0 {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_not_tagged(&k, "killed");
    // The next build cleans up after the dead one and works.
    k.build_ok(&ctx, &["-t", "killed", "--build-arg", "WAIT=0"]);
    let r = k.flatten("killed");
    assert_eq!(
        fs::read_to_string(r.path().join("after")).unwrap(),
        "after\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while sleepers() > 0 {
        assert!(
            Instant::now() < deadline,
            "the killed build's RUN process still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let meta = fs::read_to_string(k.root().join("snapshots/overlay/metadata.json")).unwrap();
    assert!(
        !meta.contains("\"build-"),
        "a step's snapshot is left: {meta}"
    );
    k.ok(&["image", "prune"]);
    k.build_ok(&ctx, &["-t", "killed", "--build-arg", "WAIT=0"]);
    k.assert_clean();
}

#[test]
fn unknown_users_and_paths_leaving_a_source_stage() {
    let k = Kontti::new();
    let ctx = k.context(
        "insecure",
        "FROM busybox\nRUN --security=insecure true\n",
        &[],
    );
    let err = k.build_fails(&ctx, &["-t", "bad"], 6);
    assert!(
        last_line(&err).contains("--security=insecure is not allowed"),
        "{err}"
    );
    let ctx = k.context("user", "FROM busybox\nUSER ghost\nRUN true\n", &[]);
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        last_line(&err).contains("unable to find user ghost"),
        "{err}"
    );
    let ctx = k.context(
        "chown",
        "FROM busybox\nCOPY --chown=ghost f /f\n",
        &[("f", "x")],
    );
    let err = k.build_fails(&ctx, &["-t", "bad"], 5);
    assert!(
        last_line(&err).contains("unable to find user ghost"),
        "{err}"
    );
    // Symlinks in a stage resolve inside it (as if it were /), never on
    // the host.
    let ctx = k.context(
        "escape",
        "FROM busybox AS src\n\
         RUN echo stage-shadow > /etc/shadow && ln -s /../../../../../etc/shadow /leak && ln -s /etc/shadow /abs\n\
         FROM busybox\nCOPY --from=src /leak /leak\nCOPY --from=src /abs /abs\n",
        &[],
    );
    k.build_ok(&ctx, &["-t", "escape"]);
    let r = k.flatten("escape");
    assert_eq!(
        fs::read_to_string(r.path().join("leak")).unwrap(),
        "stage-shadow\n"
    );
    assert_eq!(
        fs::read_to_string(r.path().join("abs")).unwrap(),
        "stage-shadow\n"
    );
    assert_not_tagged(&k, "bad");
    k.assert_clean();
}

#[test]
fn bad_command_line_options() {
    let k = Kontti::new();
    let ctx = k.context("ctx", "FROM busybox\n", &[]);
    let cases: [(&[&str], &str); 6] = [
        (
            &["-o", "type=tar,dest=/tmp/x"],
            "type must be oci or docker",
        ),
        (&["-o", "type=oci"], "dest= is missing"),
        (&["--secret", "id=x"], "src= is missing"),
        (&["--secret", "src=/etc/hostname"], "id= is missing"),
        (&["--label", "novalue"], "expected KEY=VALUE"),
        (&["-t", "Bad Name"], "\"Bad Name\""),
    ];
    for (args, message) in cases {
        let err = k.build_fails(&ctx, args, 5);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let missing = k.dir.path().join("no-such-context");
    let err = k.build_fails(&missing, &[], 5);
    assert!(err.contains("no-such-context: not a directory"), "{err}");
    let err = k.build_fails(&ctx, &["-f", "/nonexistent/Dockerfile"], 2);
    assert!(last_line(&err).contains("/nonexistent/Dockerfile"), "{err}");
    k.assert_clean();
}
