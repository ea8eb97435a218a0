//! The seccomp filter as a container sees it: a small static program in the
//! busybox rootfs makes raw syscalls by number under the default profile.
#![allow(clippy::disallowed_macros)]

mod common;

use std::path::Path;
use std::process::Command;

use common::World;

/// A static C program: `syscall NR [ARG0]` prints `ret errno` of the raw
/// call. Built with the host's C compiler (the one Rust links with) and
/// glibc's static libc (libc6-dev).
const SYSCALL_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    long nr = strtol(argv[1], 0, 0);
    long a0 = argc > 2 ? strtol(argv[2], 0, 0) : 0;
    errno = 0;
    long r = syscall(nr, a0, 0, 0, 0, 0, 0);
    printf("%ld %d\n", r, r < 0 ? errno : 0);
    return 0;
}
"#;

fn build_syscall_helper(rootfs: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("syscall.c");
    std::fs::write(&src, SYSCALL_C).expect("write source");
    let out = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(rootfs.join("bin/syscall"))
        .arg(&src)
        .output()
        .expect("cc (the C compiler Rust links with) must be installed");
    assert!(
        out.status.success(),
        "cc -static failed (needs libc6-dev): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `syscall NR ARG0` in a container under the default profile and
/// returns its (ret, errno).
fn raw_syscall(w: &mut World, nr: u32, arg0: u64) -> (i64, i32) {
    w.config()["process"]["args"] =
        serde_json::json!(["/bin/syscall", nr.to_string(), arg0.to_string()]);
    let out = w.run();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "syscall {nr}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut it = text.split_whitespace().map(|s| s.parse::<i64>().unwrap());
    (it.next().unwrap(), it.next().unwrap() as i32)
}

#[test]
#[cfg(target_arch = "x86_64")]
fn syscalls_newer_than_the_profile_get_enosys_denied_ones_eperm() {
    let mut w = World::new("seccomp-enosys", &["true"]);
    build_syscall_helper(&w.bundle.rootfs());
    let profile: serde_json::Value =
        serde_json::from_str(kontti_runtime::seccomp::DEFAULT_PROFILE_JSON).unwrap();
    w.config()["linux"]["seccomp"] = profile;
    // getpid (39) is allowed; unshare(0) (272) would succeed unfiltered but
    // is outside the profile's allow-list: EPERM, the default action.
    let (pid, errno) = raw_syscall(&mut w, 39, 0);
    assert_eq!((pid, errno), (1, 0));
    assert_eq!(raw_syscall(&mut w, 272, 0), (-1, 1));
    // 1000 is above every number the profile names, as a syscall added to
    // the kernel after the profile was written would be: ENOSYS, so that
    // libc falls back to an older call. (The kernel says ENOSYS for it
    // too, but the filter runs first: with the default action it was EPERM.)
    assert_eq!(raw_syscall(&mut w, 1000, 0), (-1, 38));
    // Past the architecture's range the default applies again.
    assert_eq!(raw_syscall(&mut w, 5000, 0), (-1, 1));
    w.assert_clean();
}
