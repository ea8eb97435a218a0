//! A container whose supervisor is killed: its processes run on, orphaned, and `ps` says so
//! truthfully; the next command that acts on it kills them and records exit 137 with the reason.
#![allow(clippy::disallowed_macros)]

mod container_support;

use std::time::Duration;

use container_support::Kontti;

/// The pid of the supervisor of container `id`.
fn supervisor_of(id: &str) -> i32 {
    for e in std::fs::read_dir("/proc").expect("read /proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args
            .first()
            .is_some_and(|a| a.ends_with(b"kontti-supervisor"))
            && args
                .windows(2)
                .any(|w| w[0] == b"--id" && w[1] == id.as_bytes())
        {
            return pid;
        }
    }
    panic!("no supervisor for {id}");
}

fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_container_outliving_its_killed_supervisor_is_reported_and_reaped() {
    let k = Kontti::new();
    let id = k.run_detached(&["--name", "orphan"], &["sleep", "1000"]);
    k.wait_for("orphan", Duration::from_secs(5), |v| {
        v["State"]["Running"] == true
    });
    let pid = k.inspect("orphan")["State"]["Pid"].as_i64().expect("pid");
    assert!(pid > 0 && alive(pid));
    let sup = supervisor_of(&id);
    let rc = std::process::Command::new("kill")
        .args(["-KILL", &sup.to_string()])
        .status()
        .expect("kill runs");
    assert!(rc.success());
    k.wait_for("orphan", Duration::from_secs(5), |v| {
        v["State"]["Error"]
            .as_str()
            .is_some_and(|e| e.contains("supervisor is gone"))
    });
    // the process still runs, and the record says so rather than "exited"
    assert!(alive(pid), "the orphan still runs");
    let v = k.inspect("orphan");
    assert_eq!(v["State"]["Status"], "running", "{v}");
    assert!(k.ok(&["ps"]).contains("orphan"));
    // acting on it ends it: the orphan is killed and the exit says why
    k.ok(&["stop", "-t", "1", "orphan"]);
    let v = k.inspect("orphan");
    assert_eq!(v["State"]["Status"], "exited", "{v}");
    assert_eq!(v["State"]["ExitCode"], 137, "{v}");
    let err = v["State"]["Error"].as_str().unwrap_or_default().to_owned();
    assert!(err.contains("processes were killed"), "{err}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "the orphan was killed");
    k.ok(&["rm", "orphan"]);
    k.finish();
}
