//! Container-escape regression tests: each one attempts the real attack
//! against the real `kontti-runc` binary on a busybox bundle, and says in its
//! comment which line of the runtime to switch off to see it fail.
//!
//! Classes covered: CVE-2019-5736 (overwriting the runtime through
//! /proc/self/exe), CVE-2024-21626 (leaked host fds and a cwd outside the
//! rootfs), CVE-2021-30465 (mount targets following symlinks out of the
//! rootfs), and the 2025 runc class (CVE-2025-31133/52565/52881: masked
//! paths, /dev/console and /proc targets redirected by the image).
#![allow(clippy::disallowed_macros)]

mod common;

use std::process::Output;

use common::{BIN, World};
use serde_json::json;

/// The runtime binary's bytes, to compare before and after an attack.
fn runtime_bytes() -> Vec<u8> {
    std::fs::read(BIN).expect("read kontti-runc")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// CVE-2019-5736 class. The container names the runtime itself as its
// executable (directly, and as a `#!` interpreter): were it executed, a
// process inside would hold the host's kontti-runc open and could rewrite
// it. To see this fail, comment out `refuse_runtime_binary(&path)?;` in
// crates/runtime/src/process.rs: the init then goes on to execve the
// runtime binary and the error check below fails (on this kernel the execve
// itself then fails with ENOENT, as the host path is not in the mount
// namespace; the runtime's own check is what names the attack).
#[test]
fn runtime_binary_is_never_executed_in_the_container() {
    let before = runtime_bytes();
    for (name, args) in [("exe", vec!["/proc/self/exe"]), ("shebang", vec!["/evil"])] {
        let mut w = World::new(&format!("selfexe-{name}"), &["true"]);
        std::fs::write(w.bundle.rootfs().join("evil"), "#!/proc/self/exe\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let p = w.bundle.rootfs().join("evil");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        w.config()["process"]["args"] = json!(args);
        let out = w.run();
        let err = common::one_line_error(&out);
        assert!(err.contains("runtime binary"), "{name}: {err}");
        w.assert_clean();
    }
    assert!(runtime_bytes() == before, "kontti-runc changed on disk");
}

// CVE-2019-5736 class, through `exec`: while `kontti-runc exec` joins the
// container, a process inside scans /proc for any process whose exe it can
// open and that is not busybox (the runtime, before it execs). It must find
// none, and the binary on the host must be unchanged. To see this fail,
// make the `sp::prctl(libc::PR_SET_DUMPABLE, 0, 0)` in
// crates/runtime/src/exec.rs set 1: the scan then opens the exe of the
// exec'ing kontti-runc in the window between its capability drop and its
// execve (a race: it showed up in one of two runs of 30 execs).
#[test]
fn exec_runtime_exe_cannot_be_opened_from_inside() {
    let before = runtime_bytes();
    let scan = "while :; do for d in /proc/[0-9]*; do \
                if dd if=$d/exe of=/dev/null bs=1 count=1 2>/dev/null && \
                ! cmp -s $d/exe /bin/busybox 2>/dev/null; then \
                echo \"$d $(readlink $d/exe)\" >> /tmp/opened; fi; done; done";
    let mut w = World::new("execexe", &["sh", "-c", scan]);
    assert!(w.create().status.success(), "create");
    assert!(w.runc(&["start", &w.id]).status.success(), "start");
    for _ in 0..30 {
        let out = w.runc(&["exec", &w.id, "true"]);
        assert!(out.status.success(), "exec: {}", text(&out));
    }
    let opened = std::fs::read_to_string(w.bundle.rootfs().join("tmp/opened")).unwrap_or_default();
    assert!(
        opened.is_empty(),
        "a container process opened a foreign exe:\n{opened}"
    );
    assert!(w.runc(&["delete", "--force", &w.id]).status.success());
    assert!(runtime_bytes() == before, "kontti-runc changed on disk");
    w.assert_clean();
}
