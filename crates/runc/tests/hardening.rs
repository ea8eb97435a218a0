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

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{BIN, World, scratch};
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

/// `kontti-runc run` started through a host shell that leaves fd 5 open on
/// the host directory `dir` and fd 7 on the host file `file` (neither
/// close-on-exec), as a careless caller would.
fn run_with_leaked_fds(w: &mut World, dir: &Path, file: &Path, extra: &[&str]) -> Output {
    w.write();
    Command::new("sh")
        .arg("-c")
        .arg(r#"exec 5<"$1" 7<"$2"; shift 2; exec "$@""#)
        .arg("sh")
        .arg(dir)
        .arg(file)
        .arg(BIN)
        .arg("--root")
        .arg(w.root.path())
        .arg("run")
        .args(extra)
        .arg("--bundle")
        .arg(w.bundle.path())
        .arg(&w.id)
        .stdin(Stdio::null())
        .output()
        .expect("spawn kontti-runc through sh")
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
// make both `sp::prctl(libc::PR_SET_DUMPABLE, 0, 0)` in
// crates/runtime/src/exec.rs set 1: the scan then opens the exe of the
// exec'ing kontti-runc in the window between its capability drop and its
// execve (a race: it showed up in 2 of 5 runs of 100 execs).
#[test]
fn exec_runtime_exe_cannot_be_opened_from_inside() {
    let before = runtime_bytes();
    // cmp exits 1 only when it read both files and they differ (2 when the
    // exe cannot be opened, or the process is gone)
    let scan = "while :; do for d in /proc/[0-9]*; do \
                cmp -s $d/exe /bin/busybox 2>/dev/null; \
                if [ $? = 1 ]; then echo \"$d $(readlink $d/exe)\" >> /tmp/opened; fi; \
                done; done";
    let mut w = World::new("execexe", &["sh", "-c", scan]);
    assert!(w.create().status.success(), "create");
    assert!(w.runc(&["start", &w.id]).status.success(), "start");
    for _ in 0..100 {
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

/// Lists the fds of the container's shell from a child `ls` (the trailing
/// `true` keeps the shell from exec'ing ls, whose own directory fd would
/// show up).
const FD_LIST: &str = "ls /proc/$$/fd; true";

// CVE-2024-21626 class: fds the caller leaked to kontti-runc (fd 5 on a
// host directory, fd 7 on a host file) are not in the container; only 0, 1,
// 2 and the preserved fd are. To see this fail, comment out the
// `sp::cloexec_from(3 + preserve)` check in `exec` in
// crates/runtime/src/process.rs.
#[test]
fn no_host_fd_leaks_into_the_container() {
    let dir = scratch();
    let file = dir.join("secret");
    std::fs::write(&file, "host secret\n").unwrap();
    let mut w = World::new("fdleak", &["sh", "-c", FD_LIST]);
    let out = run_with_leaked_fds(&mut w, &dir, &file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n1\n2\n");
    // with --preserve-fds 1, fd 3 (here a pipe of the caller) stays and
    // nothing above it
    let mut w = World::new("fdkeep", &["sh", "-c", FD_LIST]);
    w.write();
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3</dev/null 5<"$1"; shift; exec "$@""#)
        .arg("sh")
        .arg(&dir)
        .arg(BIN)
        .arg("--root")
        .arg(w.root.path())
        .args(["run", "--preserve-fds", "1", "--bundle"])
        .arg(w.bundle.path())
        .arg(&w.id)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n1\n2\n3\n");
    w.assert_clean();
    std::fs::remove_dir_all(dir).unwrap();
}

// CVE-2024-21626 class: a `process.cwd` of `/proc/self/fd/N` (N a host
// directory fd leaked into the init, or one of the runtime's own) is
// refused, so the process never starts with a cwd outside the rootfs. To
// see this fail, replace `sfs::RESOLVE_IN_ROOT | sfs::RESOLVE_NO_MAGICLINKS`
// with `0` in `enter_cwd` in crates/runtime/src/process.rs: the process then
// starts in whatever directory fd 3 is (`RESOLVE_IN_ROOT` alone still
// refuses magic links on kernel 6.x).
#[test]
fn cwd_through_a_leaked_fd_is_refused() {
    let dir = scratch();
    let file = dir.join("host-marker");
    std::fs::write(&file, "on the host\n").unwrap();
    for n in 3..=9 {
        let mut w = World::new(&format!("cwdfd{n}"), &["cat", "host-marker"]);
        w.config()["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        let out = run_with_leaked_fds(&mut w, &dir, &file, &[]);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("on the host"),
            "fd {n}: the container read a host file through its cwd"
        );
        let err = common::one_line_error(&out);
        assert!(err.contains("process.cwd"), "fd {n}: {err}");
        w.assert_clean();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

// CVE-2024-21626 class: a cwd that is a symlink in the image pointing at a
// host path (absolute, and with `..`) resolves inside the rootfs: the host
// directory's marker is never visible. What confines it is that the cwd is
// resolved after the switch into the rootfs, under `RESOLVE_IN_ROOT`, from
// an fd of the new root; `RESOLVE_IN_ROOT` alone is redundant there (the
// kernel already confines an absolute symlink to the process's root). To see
// this fail, resolve the cwd before the switch as the vulnerable runtimes
// did: in `setup_container` (crates/runtime/src/init.rs), right before
// `rootfs::enter`, open `ctx.rootfs.join(mounts::relative(cwd))` with
// `O_PATH | O_DIRECTORY` (a host path, so the image's symlink is followed on
// the host), and have `enter_cwd` fchdir to that fd instead of resolving:
// the "abs" case then fails with the host's marker read from the container.
#[test]
fn symlinked_cwd_stays_in_the_rootfs() {
    let dir = scratch();
    std::fs::write(dir.join("host-marker"), "on the host\n").unwrap();
    let ups = format!("../../../../../../..{}", dir.display());
    for (name, target) in [("abs", dir.display().to_string()), ("dotdot", ups)] {
        let mut w = World::new(&format!("cwdlink-{name}"), &["true"]);
        std::os::unix::fs::symlink(&target, w.bundle.rootfs().join("tmp/out")).unwrap();
        std::fs::create_dir_all(w.bundle.rootfs().join(dir.strip_prefix("/").unwrap())).unwrap();
        w.config()["process"]["cwd"] = json!("/tmp/out");
        let (code, out) = w.sh("cat host-marker 2>/dev/null; echo in=$(pwd)");
        assert_eq!(code, 0, "{name}: {out}");
        assert!(!out.contains("on the host"), "{name}: {out}");
        w.assert_clean();
    }
    std::fs::remove_dir_all(dir).unwrap();
}

// CVE-2021-30465 class: mount destinations under a symlink in the image
// that points at a host directory (absolute, or `../` up and over) land
// inside the rootfs; the host directory gets no new entry and no mount. To
// see this fail, set `IN_ROOT` to `0` in crates/runtime/src/mounts.rs:
// targets then follow the symlink to the host path and the mount points
// `vol` and `sub` are created in the host directory.
#[test]
fn mount_destination_symlink_never_leaves_the_rootfs() {
    let host = scratch();
    let src = scratch();
    std::fs::write(src.join("volume-marker"), "from the volume\n").unwrap();
    let ups = format!("../../../../../../..{}", host.display());
    for (name, target) in [("abs", host.display().to_string()), ("dotdot", ups)] {
        let mut w = World::new(&format!("mntlink-{name}"), &["true"]);
        let r = w.bundle.rootfs();
        std::os::unix::fs::symlink(&target, r.join("etc/x")).unwrap();
        std::fs::create_dir_all(r.join(host.strip_prefix("/").unwrap())).unwrap();
        let m = w.config()["mounts"].as_array_mut().unwrap();
        m.push(json!({"destination": "/etc/x/vol", "type": "bind",
                      "source": src.to_str().unwrap(), "options": ["rbind", "ro"]}));
        m.push(json!({"destination": "/etc/x/sub", "type": "tmpfs", "source": "tmpfs"}));
        let script = format!(
            "cat {h}/vol/volume-marker; stat -f -c %T {h}/sub",
            h = host.display()
        );
        let (code, out) = w.sh(&script);
        let leftovers: Vec<_> = std::fs::read_dir(&host).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "{name}: host dir touched: {leftovers:?}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains(host.to_str().unwrap()),
            "{name}: host dir mounted"
        );
        // the mounts are where the symlink points inside the rootfs
        assert_eq!(code, 0, "{name}: {out}");
        assert_eq!(out, "from the volume\ntmpfs\n", "{name}");
        w.assert_clean();
    }
    std::fs::remove_dir_all(host).unwrap();
    std::fs::remove_dir_all(src).unwrap();
}

/// A bundle without the /dev tmpfs, so that the image's own /dev is used.
fn world_with_image_dev(name: &str) -> World {
    let mut w = World::new(name, &["true"]);
    w.config()["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev");
    w
}

// 2025 runc class (CVE-2025-31133): the image's /dev/null is a symlink to
// /proc/sys/kernel/core_pattern; the runtime must not bind that file over
// the masked paths (which would make core_pattern writable under a masked
// name). The container writes to the masked paths; the host core_pattern
// is unchanged. To see this fail, make `open_dev_null` in
// crates/runtime/src/rootfs.rs open with `sfs::RESOLVE_IN_ROOT` only and
// drop the 1:3 check.
#[test]
fn masked_paths_cannot_be_redirected_by_a_dev_null_symlink() {
    let core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    let mut w = world_with_image_dev("devnull");
    let dev = w.bundle.rootfs().join("dev");
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", dev.join("null")).unwrap();
    let (code, out) = w.sh(
        "for p in /proc/kcore /proc/timer_list /proc/keys; do echo '|/evil' > $p; done 2>/dev/null; \
         stat -c %t:%T /proc/kcore",
    );
    // refused (a clear error naming /dev/null) or masked with the null device
    if code == 0 {
        assert_eq!(out, "1:3\n");
    } else {
        assert!(out.contains("/dev/null"), "{out}");
        assert_eq!(out.trim_end().lines().count(), 1, "{out}");
    }
    let after = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    if after != core_pattern {
        // put the host back before failing
        let _ = std::fs::write("/proc/sys/kernel/core_pattern", &core_pattern);
        panic!(
            "host core_pattern changed to {:?}",
            String::from_utf8_lossy(&after)
        );
    }
    w.assert_clean();
}

// 2025 runc class (CVE-2025-52565): the image's /dev/console is a symlink to
// a host file; with a terminal, the pty is bound onto a fresh /dev/console
// inside the container, never onto the symlink's target. To see this fail,
// drop the `unlinkat(..., "console", ...)` and `O_EXCL | O_NOFOLLOW` in
// `bind_console` in crates/runtime/src/rootfs.rs.
#[test]
fn dev_console_symlink_cannot_redirect_the_pty() {
    use std::os::unix::net::UnixListener;
    let host = scratch();
    let victim = host.join("victim");
    std::fs::write(&victim, "host file\n").unwrap();
    let mut w = world_with_image_dev("console");
    let r = w.bundle.rootfs();
    std::os::unix::fs::symlink(&victim, r.join("dev/console")).unwrap();
    let mknod = Command::new("mknod")
        .args(["-m", "666"])
        .arg(r.join("dev/null"))
        .args(["c", "1", "3"])
        .status()
        .unwrap();
    assert!(mknod.success(), "mknod dev/null");
    std::fs::create_dir_all(r.join(host.strip_prefix("/").unwrap())).unwrap();
    std::fs::write(r.join(victim.strip_prefix("/").unwrap()), "rootfs file\n").unwrap();
    w.config()["process"]["terminal"] = json!(true);
    w.config()["process"]["args"] = json!([
        "sh",
        "-c",
        "{ [ -c /dev/console ] && echo char; [ -L /dev/console ] || echo not-link; } > /result"
    ]);
    let sock = host.join("console.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let holder = std::thread::spawn(move || {
        use std::os::fd::AsFd;
        let (conn, _) = listener.accept().unwrap();
        let mut name = [0u8; 64];
        let (_, fd) = kontti_runtime::sys::term::recv_fd(conn.as_fd(), &mut name).unwrap();
        let mut master = std::fs::File::from(fd.expect("pty master"));
        // EIO once the container's side is closed
        let _ = std::io::copy(&mut master, &mut std::io::sink());
    });
    w.write();
    let b = w.bundle.path().to_str().unwrap().to_owned();
    let out = w.runc(&[
        "run",
        "--console-socket",
        sock.to_str().unwrap(),
        "--bundle",
        &b,
        &w.id,
    ]);
    let _ = holder.join();
    assert!(out.status.success(), "{}", text(&out));
    let result = std::fs::read_to_string(r.join("result")).unwrap();
    assert_eq!(result, "char\nnot-link\n");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(victim.to_str().unwrap()),
        "host file mounted over"
    );
    w.assert_clean();
    std::fs::remove_dir_all(host).unwrap();
}

// 2025 runc class (CVE-2025-52881): a tmpfs (or a bind of a host file)
// overlaid on /proc/sys by the config must not receive the runtime's
// read-only remount or sysctl writes: /proc targets are checked with
// fstatfs to be procfs, and the run is refused. To see this fail, remove the
// `PROC_SUPER_MAGIC` check in `open_protected` in
// crates/runtime/src/rootfs.rs.
#[test]
fn proc_targets_must_be_procfs() {
    let mut w = World::new("procfs", &["true"]);
    w.config()["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs"}));
    let out = w.run();
    let err = common::one_line_error(&out);
    assert!(err.contains("/proc/sys") && err.contains("procfs"), "{err}");
    w.assert_clean();

    // sysctls are written to procfs only, not to a file bound over /proc/sys/...
    let host = scratch();
    let fake = host.join("domainname");
    std::fs::write(&fake, "untouched\n").unwrap();
    let mut w = World::new("procsysctl", &["true"]);
    let c = w.config();
    c["linux"]["readonlyPaths"] = json!([]);
    c["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/proc/sys/kernel/domainname", "type": "bind",
        "source": fake.to_str().unwrap(), "options": ["bind"]}));
    c["linux"]["sysctl"] = json!({"kernel.domainname": "pwned"});
    let out = w.run();
    let err = common::one_line_error(&out);
    assert!(
        err.contains("linux.sysctl") && err.contains("procfs"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&fake).unwrap(), "untouched\n");
    w.assert_clean();
    std::fs::remove_dir_all(host).unwrap();
}
