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
        if v["Health"]["Status"] == "unhealthy" {
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
    let h = &v["Health"];
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
