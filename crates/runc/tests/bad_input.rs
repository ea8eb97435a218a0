//! Bad input: each case is a clear one-line error with a non-zero exit, and
//! leaves no state dir, cgroup, mount or process behind.

mod common;

use common::{World, one_line_error};
use serde_json::json;

/// Runs the world's config and returns the one-line error and exit code.
fn fails(w: &mut World) -> (String, i32) {
    let out = w.run();
    let err = one_line_error(&out);
    (err, out.status.code().unwrap_or(-1))
}

#[test]
fn malformed_config_names_the_field() {
    let mut w = World::new("badtype", &["true"]);
    w.config()["process"]["user"]["uid"] = json!("zero");
    let (err, code) = fails(&mut w);
    assert!(
        err.contains("config.json: process.user.uid: invalid type"),
        "{err}"
    );
    assert_eq!(code, 5);
    w.assert_clean();
}

#[test]
fn config_that_is_not_json_is_refused() {
    let mut w = World::new("notjson", &["true"]);
    w.write();
    std::fs::write(w.bundle.path().join("config.json"), "{ not json").unwrap();
    let b = w.bundle.path().to_str().unwrap().to_owned();
    let out = w.runc(&["run", "--bundle", &b, &w.id]);
    let err = one_line_error(&out);
    assert!(err.contains("config.json"), "{err}");
    w.assert_clean();
}

#[test]
fn missing_rootfs() {
    let mut w = World::new("norootfs", &["true"]);
    w.config()["root"]["path"] = json!("no-such-rootfs");
    let (err, code) = fails(&mut w);
    assert!(
        err.contains("root file system") && err.contains("no-such-rootfs"),
        "{err}"
    );
    assert_eq!(code, 2);
    w.assert_clean();
}

#[test]
fn unknown_namespace_type() {
    let mut w = World::new("badns", &["true"]);
    w.config()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "bogus"}));
    let (err, code) = fails(&mut w);
    assert!(
        err.contains("linux.namespaces[6].type") && err.contains("bogus"),
        "{err}"
    );
    assert_eq!(code, 5);
    w.assert_clean();
}

#[test]
fn invalid_seccomp_profile() {
    let mut w = World::new("badseccomp", &["true"]);
    w.config()["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]
    });
    let (err, code) = fails(&mut w);
    assert!(
        err.contains("linux.seccomp.syscalls[0].args[0].index"),
        "{err}"
    );
    assert_eq!(code, 5);
    w.assert_clean();
}

#[test]
fn duplicate_container_id() {
    let mut w = World::new("dup", &["sleep", "100"]);
    assert!(w.create().status.success());
    let pid = w.state()["pid"].clone();
    let out = w.create();
    let err = one_line_error(&out);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(out.status.code(), Some(3));
    // the first container is untouched
    assert_eq!(w.state()["pid"], pid);
    assert_eq!(w.status(), "created");
    assert!(w.runc(&["delete", &w.id]).status.success());
    w.assert_clean();
}

#[test]
fn start_of_a_running_container() {
    let mut w = World::new("startrun", &["sleep", "100"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    let out = w.runc(&["start", &w.id]);
    let err = one_line_error(&out);
    assert!(
        err.contains("is running") && err.contains("cannot start"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(w.status(), "running");
    assert!(w.runc(&["delete", "--force", &w.id]).status.success());
    w.assert_clean();
}

#[test]
fn kill_of_a_stopped_container() {
    let mut w = World::new("killstopped", &["true"]);
    assert!(w.create().status.success());
    assert!(w.runc(&["start", &w.id]).status.success());
    for _ in 0..200 {
        if w.status() == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = w.runc(&["kill", &w.id, "TERM"]);
    let err = one_line_error(&out);
    assert!(
        err.contains("is stopped") && err.contains("cannot kill"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(w.runc(&["delete", &w.id]).status.success());
    w.assert_clean();
}

#[test]
fn bundle_that_does_not_exist() {
    let w = World::new("nobundle", &["true"]);
    let out = w.runc(&["run", "--bundle", "/nonexistent/kontti/bundle", &w.id]);
    let err = one_line_error(&out);
    assert!(err.contains("bundle /nonexistent/kontti/bundle"), "{err}");
    assert_eq!(out.status.code(), Some(2));
    w.assert_clean();
}

#[test]
fn unknown_container() {
    let w = World::new("unknown", &["true"]);
    for cmd in ["state", "start", "delete", "pause", "resume"] {
        let out = w.runc(&[cmd, "no-such-container"]);
        let err = one_line_error(&out);
        assert!(
            err.contains("container no-such-container does not exist"),
            "{cmd}: {err}"
        );
        assert_eq!(out.status.code(), Some(2));
    }
    let out = w.runc(&["exec", "no-such-container", "true"]);
    assert_eq!(out.status.code(), Some(2));
    w.assert_clean();
}

#[test]
fn invalid_container_id() {
    let mut w = World::new("badid", &["true"]);
    w.write();
    let b = w.bundle.path().to_str().unwrap().to_owned();
    let out = w.runc(&["run", "--bundle", &b, "../escape"]);
    let err = one_line_error(&out);
    assert!(err.contains("invalid container id"), "{err}");
    assert!(!w.root.path().parent().unwrap().join("escape").exists());
    w.assert_clean();
}

#[test]
fn rlimit_above_the_hard_limit_is_a_clear_error() {
    let mut w = World::new("rlimithigh", &["true"]);
    w.config()["process"]["rlimits"] =
        json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1u64 << 40}]);
    let (err, code) = fails(&mut w);
    assert!(
        err.contains("process.rlimits: RLIMIT_NOFILE") && err.contains("CAP_SYS_RESOURCE"),
        "{err}"
    );
    assert_eq!(code, 7);
    w.assert_clean();
}

#[test]
fn missing_executable() {
    let mut w = World::new("noexe", &["/no/such/binary"]);
    let (err, code) = fails(&mut w);
    assert!(
        err.contains("executable file not found") && err.contains("/no/such/binary"),
        "{err}"
    );
    assert_eq!(code, 2);
    w.assert_clean();
}

#[test]
fn cwd_that_does_not_exist() {
    let mut w = World::new("nocwd", &["true"]);
    w.config()["process"]["cwd"] = json!("/does/not/exist");
    let (err, _) = fails(&mut w);
    assert!(err.contains("process.cwd: /does/not/exist"), "{err}");
    w.assert_clean();
}

#[test]
fn create_with_a_terminal_needs_a_console_socket() {
    let mut w = World::new("noconsole", &["true"]);
    w.config()["process"]["terminal"] = json!(true);
    let out = w.create();
    let err = one_line_error(&out);
    assert!(err.contains("--console-socket"), "{err}");
    w.assert_clean();
}

#[test]
fn user_namespace_without_mappings() {
    let mut w = World::new("nomaps", &["true"]);
    w.config()["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let (err, code) = fails(&mut w);
    assert!(err.contains("linux.uidMappings"), "{err}");
    assert_eq!(code, 5);
    w.assert_clean();
}
