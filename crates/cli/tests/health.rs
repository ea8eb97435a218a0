//! Health checks end to end with real containers (as root): a check that
//! exceeds its timeout is killed with the processes it started in the
//! container and counts as a failure with docker's message; the start
//! period, `--no-healthcheck`, `ps` and the `health_status` event.
#![allow(clippy::disallowed_macros)]

#[path = "container_support/mod.rs"]
mod container_support;

use std::time::{Duration, Instant};

use container_support::Kontti;

/// On a failing test, removes the containers of `k` before its state root
/// goes (else they would outlive the test).
struct Cleanup<'a>(&'a Kontti);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let ids = self.0.run(&["ps", "-aq", "--no-trunc"]);
            for id in String::from_utf8_lossy(&ids.stdout).lines() {
                let _ = self.0.run(&["rm", "-f", id]);
            }
        }
    }
}

/// Processes in the pid namespace of `init` whose command is `sleep
/// <arg>`, and zombies there (a killed check must not linger as either).
fn sleepers(init: i64, arg: &str) -> Vec<String> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{init}/ns/pid")) else {
        return Vec::new();
    };
    let want = format!("sleep\0{arg}\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if std::fs::read_link(e.path().join("ns/pid")).ok() != Some(ns.clone()) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'));
        if cmd == want.as_bytes() || zombie {
            out.push(format!("{name}: {stat}"));
        }
    }
    out
}

#[test]
fn a_check_over_its_timeout_is_killed_and_counts_as_a_failure() {
    let k = Kontti::new();
    let cleanup = Cleanup(&k);
    k.run_detached(
        &[
            "--name",
            "slow",
            "--health-cmd",
            "sleep 1000",
            "--health-timeout",
            "1s",
            "--health-interval",
            "2s",
            "--health-retries",
            "2",
        ],
        &["sleep", "3600"],
    );
    let init = k.inspect("slow")["State"]["Pid"].as_i64().unwrap();
    assert!(init > 0);
    // at no time more than the one check that runs
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut most = 0;
    let v = loop {
        let now = sleepers(init, "1000");
        most = most.max(now.len());
        assert!(now.len() <= 1, "more than one check left running: {now:?}");
        let v = k.inspect("slow");
        if v["State"]["Health"]["Status"] == "unhealthy" {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "never unhealthy: {:#}",
            v["State"]
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(most, 1, "the check never ran");
    let h = &v["State"]["Health"];
    assert!(h["FailingStreak"].as_u64().unwrap() >= 2, "{h:#}");
    let log = h["Log"].as_array().unwrap();
    let last = log.last().unwrap();
    assert_eq!(last["ExitCode"], -1, "{h:#}");
    assert_eq!(
        last["Output"], "Health check exceeded timeout (1s)",
        "{h:#}"
    );
    // the killed check is gone (not a zombie either) once the attempt ended
    // (killed before the result is written; the next starts 2 s later)
    let gone = Instant::now() + Duration::from_secs(1);
    while !sleepers(init, "1000").is_empty() && Instant::now() < gone {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(sleepers(init, "1000"), Vec::<String>::new());
    let ps = k.ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.contains("(unhealthy)"), "{ps}");
    k.ok(&["rm", "-f", "slow"]);
    assert!(sleepers(init, "1000").is_empty());
    drop(cleanup);
    k.finish();
}

/// The processes of the test's state root other than supervisors and the
/// one-shot checks they start: a health check costs no process of its own.
fn long_lived_helpers(k: &Kontti) -> Vec<String> {
    let root = k.root().display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(&root)
            && !cmd.contains("kontti-supervisor")
            && !cmd.contains("container health-check")
        {
            out.push(format!("{name}: {cmd}"));
        }
    }
    out
}

#[test]
fn start_period_no_healthcheck_ps_status_and_health_status_events() {
    let k = Kontti::new();
    let cleanup = Cleanup(&k);
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    // an image with a HEALTHCHECK that always fails
    let ctx = k.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD false\n",
    )
    .unwrap();
    k.ok(&[
        "build",
        "--progress=plain",
        "-t",
        "sick",
        ctx.to_str().unwrap(),
    ]);
    let cg = k.cgroup_parent.clone();
    let run = |name: &str, flags: &[&str], image: &str| {
        let mut a = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--cgroup-parent",
            &cg,
            "--name",
            name,
        ];
        a.extend_from_slice(flags);
        a.extend_from_slice(&[image, "sleep", "60"]);
        k.ok(&a);
    };
    run("off", &["--no-healthcheck"], "sick");
    run("img", &[], "sick");
    run(
        "grace",
        &[
            "--health-cmd",
            "false",
            "--health-interval",
            "200ms",
            "--health-retries",
            "1",
            "--health-start-period",
            "3s",
        ],
        "busybox",
    );
    run(
        "fine",
        &["--health-cmd", "true", "--health-interval", "200ms"],
        "busybox",
    );

    // the image's check runs, unless --no-healthcheck
    k.wait_for("img", Duration::from_secs(10), |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    k.wait_for("fine", Duration::from_secs(10), |v| {
        v["State"]["Health"]["Status"] == "healthy"
    });
    // failures in the start period do not count
    let v = k.wait_for("grace", Duration::from_secs(10), |v| {
        v["State"]["Health"]["Log"]
            .as_array()
            .is_some_and(|l| l.len() >= 2)
    });
    assert_eq!(
        v["State"]["Health"]["Status"], "starting",
        "{:#}",
        v["State"]["Health"]
    );
    assert_eq!(v["State"]["Health"]["FailingStreak"], 0);
    let statuses = k.ok(&["ps", "--format", "{{.Names}}|{{.Status}}"]);
    let status = |n: &str| {
        statuses
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{n}|")))
            .unwrap_or_else(|| panic!("{n} not in ps: {statuses}"))
            .to_owned()
    };
    assert!(
        status("grace").ends_with(" (health: starting)"),
        "{statuses}"
    );
    let fine = status("fine");
    assert!(
        fine.starts_with("Up ") && fine.ends_with(" (healthy)"),
        "{statuses}"
    );
    assert!(status("img").ends_with(" (unhealthy)"), "{statuses}");
    let off = status("off");
    assert!(off.starts_with("Up ") && !off.contains('('), "{statuses}");
    assert!(k.inspect("off")["State"]["Health"].is_null());
    // after the start period, a failure counts
    k.wait_for("grace", Duration::from_secs(10), |v| {
        v["State"]["Health"]["Status"] == "unhealthy"
    });
    assert_eq!(long_lived_helpers(&k), Vec::<String>::new());

    let t1 = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1)
    .to_string();
    let events = k.ok(&["events", "--since", &t0, "--until", &t1, "--format", "json"]);
    let seen = |name: &str, action: &str| {
        events.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let attrs = if v["Actor"].is_object() {
                &v["Actor"]["Attributes"]
            } else {
                &v["Attributes"]
            };
            v["Action"] == action && attrs["name"] == name
        })
    };
    assert!(seen("fine", "health_status: healthy"), "{events}");
    assert!(seen("grace", "health_status: unhealthy"), "{events}");
    assert!(seen("img", "health_status: unhealthy"), "{events}");
    assert!(
        !seen("off", "health_status: unhealthy") && !seen("off", "health_status: healthy"),
        "{events}"
    );
    // docker's filter on the action's name matches every health status
    let filtered = k.ok(&[
        "events",
        "--since",
        &t0,
        "--until",
        &t1,
        "--filter",
        "event=health_status",
        "--format",
        "json",
    ]);
    assert!(filtered.lines().count() >= 3, "{filtered}");
    assert!(
        filtered.lines().all(|l| l.contains("health_status: ")),
        "{filtered}"
    );
    drop(cleanup);
    k.finish();
}
