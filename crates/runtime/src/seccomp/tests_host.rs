//! Real filters on real processes: a busybox child installs the program in
//! a `pre_exec` hook (after fork, before exec) and then attempts the
//! syscalls the profile refuses.
#![allow(unsafe_code)] // Command::pre_exec is unsafe to register.

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{Command, Output};

use kontti_testutil::{busybox, require_root};

use super::*;

/// Runs busybox `args` with `program` installed (and no_new_privs set).
fn run_filtered(program: &SeccompProgram, args: &[&str]) -> Output {
    let program = program.clone();
    let mut cmd = Command::new(busybox());
    cmd.args(args);
    // SAFETY: the hook runs in the forked child before exec and only makes
    // two system calls through functions that do not allocate on success.
    unsafe {
        cmd.pre_exec(move || {
            crate::sys::seccomp::set_no_new_privs()?;
            program.install().map_err(|e| match e {
                SeccompError::Install(io) => io,
                _ => std::io::Error::other("seccomp"),
            })
        });
    }
    cmd.output().expect("run busybox")
}

fn deny_mkdir(action: &str) -> SeccompProgram {
    compile(&parse_profile(&format!(
        r#"{{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{{"names": ["mkdir", "mkdirat"], {action}}}]}}"#
    )).unwrap())
    .unwrap()
}

#[test]
fn errno_eperm_reaches_the_process() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x");
    let out = run_filtered(
        &deny_mkdir(r#""action": "SCMP_ACT_ERRNO""#),
        &["mkdir", target.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(!target.exists());
}

#[test]
fn a_custom_errno_reaches_the_process() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x");
    let out = run_filtered(
        &deny_mkdir(r#""action": "SCMP_ACT_ERRNO", "errnoRet": 28"#),
        &["mkdir", target.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("No space left on device"), "{err}");
    assert!(!target.exists());
}

#[test]
fn kill_process_and_trap_end_in_sigsys() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x");
    for action in [
        r#""action": "SCMP_ACT_KILL_PROCESS""#,
        r#""action": "SCMP_ACT_TRAP""#,
        r#""action": "SCMP_ACT_KILL""#,
    ] {
        let out = run_filtered(&deny_mkdir(action), &["mkdir", target.to_str().unwrap()]);
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGSYS),
            "{action}: {:?}",
            out.status
        );
        assert!(!target.exists());
    }
}

#[test]
fn allowed_syscalls_still_work_under_a_filter() {
    require_root();
    let out = run_filtered(
        &deny_mkdir(r#""action": "SCMP_ACT_ERRNO""#),
        &["sh", "-c", "echo hello"],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
}

#[test]
fn default_profile_runs_busybox_and_refuses_namespaces_and_mounts() {
    require_root();
    let program = compile(&default_profile().unwrap()).unwrap();
    let out = run_filtered(
        &program,
        &[
            "sh",
            "-c",
            "ls / >/dev/null && cat /proc/self/status >/dev/null && ps >/dev/null && (sleep 0 &) && wait && echo ok",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");

    let out = run_filtered(&program, &["unshare", "-m", "true"]);
    assert!(!out.status.success(), "unshare must fail: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
        "{out:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = run_filtered(
        &program,
        &["mount", "-t", "tmpfs", "none", dir.path().to_str().unwrap()],
    );
    if out.status.success() {
        let _ = Command::new(busybox())
            .args(["umount", dir.path().to_str().unwrap()])
            .status();
        panic!("mount succeeded under the default profile");
    }
    // busybox words EPERM from mount(2) as "permission denied".
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("permission denied"),
        "{out:?}"
    );
}
