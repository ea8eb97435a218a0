//! Shared helpers of the container tests: a temp state root with a busybox
//! image, the real `kontti` binary, and leak checks confined to what the
//! test itself could have made (its own directory, its own cgroup parent).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A test's kontti: its own state root and cgroup parent.
pub struct Kontti {
    pub dir: tempfile::TempDir,
    /// The cgroup parent every container of the test goes below.
    pub cgroup_parent: String,
    before: Snapshot,
}

/// What a test could leak.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    mounts: Vec<String>,
    cgroups: Vec<String>,
    processes: Vec<String>,
}

impl Kontti {
    /// A state root with `busybox` imported.
    pub fn new() -> Kontti {
        kontti_testutil::require_root();
        let supervisor =
            Path::new(env!("CARGO_BIN_EXE_kontti")).with_file_name("kontti-supervisor");
        assert!(
            supervisor.is_file(),
            "{} is missing: build it first (cargo build -p kontti-supervisor; CI builds the workspace)",
            supervisor.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("kontti-ct-")
            .tempdir()
            .unwrap();
        let unique = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let cgroup_parent = format!("test-{unique}");
        let before = snapshot(dir.path(), &cgroup_parent);
        let k = Kontti {
            dir,
            cgroup_parent,
            before,
        };
        let tar = k.dir.path().join("rootfs.tar");
        kontti_testutil::write_rootfs_tar(&tar).unwrap();
        k.ok(&[
            "import",
            "--cmd",
            "/bin/sh",
            tar.to_str().unwrap(),
            "busybox",
        ]);
        k
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kontti"));
        c.arg("--root").arg(self.root());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kontti {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail with `code` and a one-line error;
    /// returns the error.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "kontti {args:?}: {err}");
        let lines: Vec<&str> = err
            .trim()
            .lines()
            .filter(|l| !l.starts_with("Unable to find image"))
            .collect();
        assert_eq!(lines.len(), 1, "one-line error expected: {err}");
        lines[0].to_owned()
    }

    /// `run -d --network none --cgroup-parent P ARGS...`: the container id.
    pub fn run_detached(&self, flags: &[&str], args: &[&str]) -> String {
        let mut a = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--cgroup-parent",
            &self.cgroup_parent,
        ];
        a.extend_from_slice(flags);
        a.push("busybox");
        a.extend_from_slice(args);
        self.ok(&a).trim().to_owned()
    }

    /// `inspect` of one container.
    pub fn inspect(&self, c: &str) -> serde_json::Value {
        let out = self.ok(&["inspect", c]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v[0].clone()
    }

    /// Polls `inspect` until `f` holds (panics after `timeout`).
    pub fn wait_for(
        &self,
        c: &str,
        timeout: Duration,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.inspect(c);
            if f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out; last state: {:#}",
                v["State"]
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Removes every container and asserts nothing is left behind.
    pub fn finish(self) {
        let ids = self.ok(&["ps", "-aq", "--no-trunc"]);
        for id in ids.lines() {
            self.ok(&["rm", "-f", id]);
        }
        self.assert_clean();
    }

    /// Asserts no mount, cgroup, supervisor, netns or container record
    /// of this test is left.
    pub fn assert_clean(&self) {
        // the exit commands of removed containers may still be finishing
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut now = snapshot(self.dir.path(), &self.cgroup_parent);
        while now != self.before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            now = snapshot(self.dir.path(), &self.cgroup_parent);
        }
        assert_eq!(now, self.before, "leaked host state");
        let netns: Vec<_> = std::fs::read_dir(self.root().join("netns"))
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(netns.is_empty(), "leaked pinned namespaces: {netns:?}");
        let recs: Vec<_> = std::fs::read_dir(self.root().join("containers"))
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name())
                    .filter(|n| n.len() == 64)
                    .collect()
            })
            .unwrap_or_default();
        assert!(recs.is_empty(), "leaked container directories: {recs:?}");
    }
}

/// Mounts under `dir`, cgroups named after `parent`, and processes whose
/// command line mentions `dir` (supervisors, exit commands).
pub fn snapshot(dir: &Path, parent: &str) -> Snapshot {
    let d = dir.to_string_lossy().into_owned();
    let host = kontti_testutil::HostSnapshot::take(parent);
    let mounts = host
        .mounts
        .into_iter()
        .filter(|m| m.starts_with(&d))
        .collect();
    let cgroups = host.cgroups.into_iter().collect();
    let me = std::process::id().to_string();
    let mut processes = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(&d) {
                processes.push(format!("{name}: {c}"));
            }
        }
    }
    Snapshot {
        mounts,
        cgroups,
        processes,
    }
}
