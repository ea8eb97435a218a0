//! Debian's podman driving `kontti-runc` (`--runtime`), on an image imported
//! from the busybox fixture. Each test has its own podman roots, a private
//! `containers.conf` and a PATH without runc and crun; the container's state
//! must appear under kontti-runc's default root, [`STATE_ROOT`].
//!
//! Podman 4.3 passes `--runtime-flag`s to `create`, `start`, `kill` and
//! `exec` but not to `delete` (`DeleteContainer` runs `<runtime> delete
//! --force <id>` bare), so a private `--root` given that way leaks every
//! container's state and cgroup: the tests use the default root.
//!
//! Test names contain `podman` so that nextest runs them serially.
#![allow(clippy::disallowed_macros)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_kontti-runc");
const IMAGE: &str = "localhost/kontti-busybox:latest";
/// kontti-runc's default `--root`, the one podman's `delete` uses.
const STATE_ROOT: &str = "/run/kontti-runc";

/// One test's podman: its storage, run and temp roots, config and PATH, all
/// in one temporary directory.
struct Podman {
    dir: tempfile::TempDir,
    /// Container ids created, for the leak check.
    ids: Vec<String>,
}

impl Podman {
    fn new() -> Podman {
        kontti_testutil::require_root();
        let dir = tempfile::Builder::new()
            .prefix("kontti-podman-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        for sub in ["root", "runroot", "tmp", "bin"] {
            std::fs::create_dir(d.join(sub)).expect("podman dirs");
        }
        // podman's defaults ask for nofile/nproc limits above this
        // machine's hard limits (no CAP_SYS_RESOURCE): set lower ones
        std::fs::write(
            d.join("containers.conf"),
            "[containers]\n\
             default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             netns = \"none\"\n\
             log_driver = \"k8s-file\"\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"file\"\n",
        )
        .expect("containers.conf");
        // a PATH with what podman and the tests need, and no runc or crun
        for tool in ["podman", "conmon", "sh"] {
            let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
                .iter()
                .map(|p| Path::new(p).join(tool))
                .find(|p| p.exists())
                .unwrap_or_else(|| panic!("{tool} is missing: install Debian's podman"));
            std::os::unix::fs::symlink(found, d.join("bin").join(tool)).expect("bin link");
        }
        let p = Podman {
            dir,
            ids: Vec::new(),
        };
        let tar = p.path("rootfs.tar");
        kontti_testutil::write_rootfs_tar(&tar).expect("busybox tarball");
        let out = p.run(&["import", tar.to_str().unwrap(), IMAGE]);
        assert!(out.status.success(), "podman import: {}", text(&out));
        p
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// `podman` with this test's roots, config and PATH, and kontti-runc.
    fn cmd(&self) -> Command {
        let mut c = Command::new(self.path("bin/podman"));
        // conmon may leave files in its working directory (an `oom` marker)
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", self.path("bin"))
            .env("CONTAINERS_CONF", self.path("containers.conf"))
            .env("HOME", self.dir.path())
            .arg("--root")
            .arg(self.path("root"))
            .arg("--runroot")
            .arg(self.path("runroot"))
            .args(["--storage-driver", "vfs", "--tmpdir"])
            .arg(self.path("tmp"))
            .args(["--runtime", BIN]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn podman")
    }

    /// `podman run` of `args` in the image with no network; records the id.
    fn run_container(&mut self, opts: &[&str], args: &[&str]) -> Output {
        let cidfile = self.path(&format!("cid-{}", self.ids.len()));
        let mut all = vec!["run", "--pull", "never", "--network", "none", "--cidfile"];
        all.push(cidfile.to_str().unwrap());
        all.extend_from_slice(opts);
        all.push(IMAGE);
        all.extend_from_slice(args);
        let out = self.run(&all);
        self.record(&cidfile);
        out
    }

    fn record(&mut self, cidfile: &Path) {
        if let Ok(id) = std::fs::read_to_string(cidfile) {
            self.ids.push(id.trim().to_owned());
        }
    }

    /// Nothing of this test's containers is left on the host: no cgroup, no
    /// mount under the test's directory, no process naming a container id,
    /// no state under kontti-runc's root.
    fn assert_clean(&self) {
        let out = self.run(&["rm", "--all", "--force", "--time", "0"]);
        assert!(out.status.success(), "podman rm: {}", text(&out));
        for id in &self.ids {
            // conmon's exit command (`podman container cleanup`) may still
            // be finishing in the background
            let start = Instant::now();
            while let Some(left) = process_naming(id) {
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "process of {id} left: {left}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            let cg = kontti_testutil::HostSnapshot::take(id).cgroups;
            assert!(cg.is_empty(), "cgroups of {id} left: {cg:?}");
            assert!(
                !Path::new(STATE_ROOT).join(id).exists(),
                "kontti-runc state of {id} left"
            );
        }
        let dir = self.dir.path().to_str().unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let left: Vec<_> = mounts.lines().filter(|l| l.contains(dir)).collect();
        assert!(left.is_empty(), "mounts left: {left:?}");
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "--all", "--force", "--time", "0"]);
        let _ = self.run(&["rmi", "--all", "--force"]);
    }
}

/// The command line of a process that names `id`, if any.
fn process_naming(id: &str) -> Option<String> {
    let me = std::process::id().to_string();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if e.file_name() == me.as_str() {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(id) {
            return Some(format!("{:?}: {cmdline}", e.file_name()));
        }
    }
    None
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn podman_run_rm_echo_hi() {
    let mut p = Podman::new();
    let out = p.run_container(&["--rm"], &["echo", "hi"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    p.assert_clean();
}

#[test]
fn podman_state_lives_under_kontti_runc_root_and_runc_is_unused() {
    let mut p = Podman::new();
    let out = p.run_container(&["-d", "--name", "state"], &["sleep", "100"]);
    assert!(out.status.success(), "{}", text(&out));
    let id = p.ids[0].clone();
    assert!(
        Path::new(STATE_ROOT).join(&id).is_dir(),
        "no state of {id} under kontti-runc's root {STATE_ROOT}"
    );
    // kontti-runc's own `state` reads it: this is its container
    let out = Command::new(BIN)
        .args(["--root", STATE_ROOT, "state", &id])
        .output()
        .unwrap();
    assert!(out.status.success(), "kontti-runc state: {}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "running", "{v}");
    // neither runc nor crun knows it
    for root in ["/run/runc", "/run/crun"] {
        assert!(!Path::new(root).join(&id).exists(), "{id} under {root}");
    }
    let out = p.run(&["inspect", "--format", "{{.OCIRuntime}}", "state"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), BIN);
    p.assert_clean();
}

#[test]
fn podman_exit_codes_are_propagated() {
    let mut p = Podman::new();
    let out = p.run_container(&["--rm"], &["sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = p.run_container(&["--rm"], &["/no/such/binary"]);
    assert!(
        matches!(out.status.code(), Some(126) | Some(127)),
        "{:?}: {}",
        out.status.code(),
        text(&out)
    );
    p.assert_clean();
}

#[test]
fn podman_exec_and_stop() {
    let mut p = Podman::new();
    // a shell that exits 0 on SIGTERM, so `stop` ends it without a kill
    let script = "trap 'exit 0' TERM; while :; do sleep 0.1; done";
    let out = p.run_container(&["-d", "--name", "ex"], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out));
    let out = p.run(&["exec", "ex", "sh", "-c", "echo in-exec $(hostname); exit 4"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("in-exec "),
        "{}",
        text(&out)
    );
    let start = Instant::now();
    let out = p.run(&["stop", "--time", "10", "ex"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "stop waited {:?}: SIGTERM did not reach the container",
        start.elapsed()
    );
    let out = p.run(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}} {{.State.Status}}",
        "ex",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0 exited");
    p.assert_clean();
}

#[test]
fn podman_pids_limit_caps_a_fork_bomb() {
    let mut p = Podman::new();
    // 40 sleeps against --pids-limit 20; the counter is read with the
    // shell's builtin `read`, as no fork is possible while the bomb is capped
    let script = "cat /sys/fs/cgroup/pids/pids.max; \
                  ( i=0; while [ $i -lt 40 ]; do sleep 5 & i=$((i+1)); done ) 2>/dev/null; \
                  read n < /sys/fs/cgroup/pids/pids.current; echo pids=$n; kill -9 -1";
    let out = p.run_container(&["--rm", "--pids-limit", "20"], &["sh", "-c", script]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", text(&out));
    assert_eq!(lines[0], "20");
    let pids: u32 = lines[1]
        .strip_prefix("pids=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(pids <= 20, "pids.current {pids} above the limit");
    p.assert_clean();
}

#[test]
fn podman_memory_limit_oom_kills_inside() {
    let mut p = Podman::new();
    // a subshell building a 200 MB string against --memory 64m is
    // OOM-killed (SIGKILL: 137); the container's shell goes on
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; \
                  ( x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ); echo sub=$?";
    let out = p.run_container(&["--rm", "--memory", "64m"], &["sh", "-c", script]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "67108864\nsub=137\n");
    p.assert_clean();
}

#[test]
fn podman_interactive_shell_in_tmux() {
    let mut p = Podman::new();
    let sock = p.path("tmux.sock");
    let exit_file = p.path("exit-code");
    let cidfile = p.path("cid-tty");
    let mut podman = p.cmd();
    podman.args([
        "run",
        "--rm",
        "-it",
        "--pull",
        "never",
        "--network",
        "none",
        "--cidfile",
    ]);
    podman.arg(&cidfile).args([IMAGE, "sh"]);
    let words: Vec<String> = std::iter::once(podman.get_program())
        .chain(podman.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let envs: Vec<String> = podman
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}='{}'", k.to_str()?, v?.to_str()?)))
        .collect();
    let shell_cmd = format!(
        "cd '{}' && env -i {} {}; echo $? > '{}'",
        p.dir.path().display(),
        envs.join(" "),
        words.join(" "),
        exit_file.display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("spawn tmux")
    };
    let out = tmux(&["new-session", "-d", "-x", "100", "-y", "30", &shell_cmd]);
    assert!(out.status.success(), "tmux: {}", text(&out));
    let pane = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).into_owned();
    let send = |keys: &str| {
        assert!(tmux(&["send-keys", keys, "Enter"]).status.success());
    };
    wait_until("the container's prompt", Duration::from_secs(20), || {
        pane().contains('#')
    });
    send("echo answer=$((6*7)); tty; stty size");
    wait_until("the shell's answer", Duration::from_secs(10), || {
        pane().contains("30 100")
    });
    let screen = pane();
    assert!(screen.contains("answer=42"), "{screen}");
    assert!(screen.contains("/dev/pts/0"), "{screen}");
    send("exit 5");
    wait_until("podman to exit", Duration::from_secs(20), || {
        exit_file.exists()
    });
    let _ = tmux(&["kill-server"]);
    p.record(&cidfile);
    let code = std::fs::read_to_string(&exit_file).unwrap();
    assert_eq!(code.trim(), "5");
    p.assert_clean();
}
