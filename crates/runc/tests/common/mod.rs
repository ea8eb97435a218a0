//! Helpers for driving the real `kontti-runc` binary on busybox bundles.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kontti_testutil::{Bundle, HostSnapshot};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_kontti-runc");

/// One test's world: a bundle, a state root, a unique container id, and a
/// host snapshot taken before anything was created.
pub struct World {
    pub bundle: Bundle,
    pub root: tempfile::TempDir,
    pub id: String,
    pub before: HostSnapshot,
}

impl World {
    /// A bundle running `args`, with a unique id derived from `name`.
    pub fn new(name: &str, args: &[&str]) -> World {
        kontti_testutil::require_root();
        let id = format!("kt-{name}-{}", std::process::id());
        let before = HostSnapshot::take(&id);
        World {
            bundle: Bundle::new(args).expect("bundle"),
            root: tempfile::Builder::new()
                .prefix("kontti-runc-root-")
                .tempdir()
                .expect("root"),
            id,
            before,
        }
    }

    /// The config as JSON, to edit before [`World::write`].
    pub fn config(&mut self) -> &mut Value {
        &mut self.bundle.config
    }

    pub fn write(&mut self) {
        self.bundle.write_config().expect("write config");
    }

    /// `kontti-runc --root R <args>`; stdout and stderr captured.
    pub fn runc(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn kontti-runc")
    }

    /// `run --bundle B id` with the current config.
    pub fn run(&mut self) -> Output {
        self.write();
        let b = self.bundle.path().to_str().unwrap().to_owned();
        let id = self.id.clone();
        self.runc(&["run", "--bundle", &b, &id])
    }

    /// Runs a shell script in the container and returns (status, stdout).
    pub fn sh(&mut self, script: &str) -> (i32, String) {
        self.config()["process"]["args"] = serde_json::json!(["sh", "-c", script]);
        let out = self.run();
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// `create` with stdio detached (the init keeps them otherwise).
    pub fn create(&mut self) -> Output {
        self.write();
        let b = self.bundle.path().to_str().unwrap().to_owned();
        let id = self.id.clone();
        self.runc_detached(&["create", "--bundle", &b, &id])
    }

    /// Runs a command whose children outlive it: stdout to /dev/null and
    /// stderr through a file, so that no pipe is held open by the container.
    pub fn runc_detached(&self, args: &[&str]) -> Output {
        let err_path = self.root.path().join(".stderr");
        let err = std::fs::File::create(&err_path).expect("stderr file");
        let status = Command::new(BIN)
            .arg("--root")
            .arg(self.root.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .status()
            .expect("spawn kontti-runc");
        let stderr = std::fs::read(&err_path).unwrap_or_default();
        let _ = std::fs::remove_file(&err_path);
        Output {
            status,
            stdout: Vec::new(),
            stderr,
        }
    }

    /// The `state` JSON.
    pub fn state(&self) -> Value {
        let out = self.runc(&["state", &self.id]);
        assert!(
            out.status.success(),
            "state: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("state json")
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap_or("").to_owned()
    }

    /// Asserts that nothing of this test's container is left: no state
    /// dir, no cgroup, no mount, no process.
    pub fn assert_clean(&self) {
        assert!(
            !self.root.path().join(&self.id).exists(),
            "state dir of {} left behind",
            self.id
        );
        // links are not compared: kontti-runc creates none on the host (a
        // network namespace's interfaces die with it), and other suites on
        // this host create and remove veths concurrently
        // mounts: only those under this test's bundle or state root count,
        // as other suites (podman's) mount and unmount concurrently
        let mut now = HostSnapshot::take(&self.id);
        now.links = self.before.links.clone();
        let bundle = self.bundle.path().to_string_lossy().into_owned();
        let root = self.root.path().to_string_lossy().into_owned();
        now.mounts.retain(|m| {
            self.before.mounts.contains(m) || m.starts_with(&bundle) || m.starts_with(&root)
        });
        now.assert_no_leaks_since(&self.before);
        let procs = processes_in(&self.bundle.rootfs());
        assert!(
            procs.is_empty(),
            "processes left in the container: {procs:?}"
        );
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "--force", &self.id]);
    }
}

/// Pids of processes whose root is `rootfs`.
pub fn processes_in(rootfs: &Path) -> Vec<i32> {
    let want = std::fs::canonicalize(rootfs).unwrap_or_else(|_| rootfs.to_owned());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/root"))
            .ok()
            .as_deref()
            == Some(want.as_path())
        {
            out.push(pid);
        }
    }
    out
}

/// The error line of a failed command: exactly one line on stderr.
pub fn one_line_error(out: &Output) -> String {
    assert!(!out.status.success(), "expected failure, got success");
    let err = String::from_utf8_lossy(&out.stderr).trim_end().to_owned();
    assert_eq!(
        err.lines().count(),
        1,
        "expected a one-line error, got {err:?}"
    );
    err
}

/// A scratch directory on the host for hook output and bind sources.
pub fn scratch() -> PathBuf {
    tempfile::Builder::new()
        .prefix("kontti-runc-scratch-")
        .tempdir()
        .expect("scratch")
        .keep()
}
