//! Helpers for driving the real `kontti-supervisor` binary on busybox
//! bundles, each test with its own state and runtime roots.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kontti_supervisor::crilog::{self, LogLine};
use kontti_supervisor::exit::ExitRecord;
use kontti_supervisor::protocol::{AttachClient, Frame};
use kontti_supervisor::spawn::SupervisorCommand;
use kontti_testutil::{Bundle, HostSnapshot};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_kontti-supervisor");

/// One test's world: a bundle, a temp root holding `state/` and
/// `runtime/`, a unique container id, and a host snapshot from before.
pub struct World {
    pub bundle: Bundle,
    pub root: tempfile::TempDir,
    pub id: String,
    pub before: HostSnapshot,
    /// The supervisor's pid once it reported.
    pub supervisor: Option<i32>,
    state: PathBuf,
}

impl World {
    pub fn new(name: &str, args: &[&str]) -> World {
        kontti_testutil::require_root();
        let id = format!("ksv-{name}-{}", std::process::id());
        let before = HostSnapshot::take(&id);
        let root = tempfile::Builder::new()
            .prefix("kontti-supervisor-test-")
            .tempdir()
            .expect("temp root");
        let state = root.path().join("state");
        std::fs::create_dir(&state).expect("state dir");
        World {
            state,
            bundle: Bundle::new(args).expect("bundle"),
            root,
            id,
            before,
            supervisor: None,
        }
    }

    pub fn config(&mut self) -> &mut Value {
        &mut self.bundle.config
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state.clone()
    }

    /// Moves the state directory deep enough that its socket paths are
    /// longer than a socket address takes (as a 64-character id makes them).
    pub fn long_state_dir(&mut self) {
        let deep = self.root.path().join("d".repeat(50)).join("e".repeat(64));
        std::fs::create_dir_all(&deep).expect("deep state dir");
        assert!(deep.join("attach.sock").as_os_str().len() > 108);
        self.state = deep;
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.root.path().join("runtime")
    }

    pub fn log_path(&self) -> PathBuf {
        self.state_dir().join("container.log")
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("attach.sock")
    }

    /// The command for this world (config written now).
    pub fn command(&mut self) -> SupervisorCommand {
        self.bundle.write_config().expect("write config");
        let mut c = SupervisorCommand::new(
            &self.id,
            self.bundle.path(),
            &self.runtime_root(),
            &self.state_dir(),
            &self.log_path(),
        );
        c.binary = PathBuf::from(BIN);
        c
    }

    /// Spawns the supervisor; returns the container's pid.
    pub fn start(&mut self, c: &SupervisorCommand) -> i32 {
        let ready = c.spawn().expect("supervisor ready");
        assert!(ready.supervisor_pid > 1);
        self.supervisor = Some(ready.supervisor_pid);
        ready.pid
    }

    /// Waits for the supervisor to finish (exit.json written, pid file
    /// gone) and returns the record.
    pub fn wait_exit(&self) -> ExitRecord {
        let deadline = Instant::now() + Duration::from_secs(30);
        let exit = self.state_dir().join("exit.json");
        let pid = self.state_dir().join("supervisor.pid");
        while !exit.exists() || pid.exists() {
            assert!(Instant::now() < deadline, "the supervisor did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(p) = self.supervisor {
            wait_gone(p);
        }
        ExitRecord::read(&exit).expect("exit record")
    }

    pub fn log(&self) -> Vec<LogLine> {
        crilog::read_lines(&self.log_path(), None, None).expect("read log")
    }

    /// The log's text per stream, lines joined with newlines.
    pub fn log_text(&self, stream: crilog::Stream) -> String {
        self.log()
            .iter()
            .filter(|l| l.stream == stream)
            .map(|l| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&l.text),
                    if l.partial { "" } else { "\n" }
                )
            })
            .collect()
    }

    /// Asserts that nothing is left: no runtime state, socket, pid file,
    /// supervisor process, cgroup or mount.
    pub fn assert_clean(&self) {
        let rt: Vec<_> = std::fs::read_dir(self.runtime_root())
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(rt.is_empty(), "runtime state left: {rt:?}");
        assert!(!self.socket().exists(), "attach.sock left");
        assert!(
            !self.state_dir().join("supervisor.pid").exists(),
            "supervisor.pid left"
        );
        assert!(
            !self.state_dir().join("console.sock").exists(),
            "console.sock left"
        );
        if let Some(p) = self.supervisor {
            assert!(!alive(p), "supervisor {p} still runs");
        }
        // other tests run beside this one: only what names this world counts
        let mine = |s: &HostSnapshot| {
            let keys = [
                self.id.clone(),
                self.root.path().display().to_string(),
                self.bundle.path().display().to_string(),
            ];
            let ours = |x: &String| keys.iter().any(|k| x.contains(k.as_str()));
            HostSnapshot {
                mounts: s.mounts.iter().filter(|m| ours(m)).cloned().collect(),
                cgroups: s.cgroups.clone(),
                links: s.links.iter().filter(|l| ours(l)).cloned().collect(),
            }
        };
        mine(&HostSnapshot::take(&self.id)).assert_no_leaks_since(&mine(&self.before));
    }

    /// Connects an attach client with a read timeout.
    pub fn attach(&self) -> AttachClient {
        let c = AttachClient::connect(&self.socket()).expect("attach");
        c.stream()
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        c
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // best effort when a test failed half-way
        let _ = kontti_runtime::ops::delete(&self.runtime_root(), &self.id, true);
        if let Some(p) = self.supervisor.filter(|p| alive(*p)) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &p.to_string()])
                .status();
        }
    }
}

/// Whether `pid` runs (not gone, not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit(')').next().and_then(|r| r.trim().chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

pub fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads frames until the exit frame: (stdout, stderr, exit code).
pub fn collect(client: &mut AttachClient) -> (String, String, Option<i32>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = client
        .copy_until_exit(|f| match f {
            Frame::Stdout(b) => out.extend_from_slice(b),
            Frame::Stderr(b) => err.extend_from_slice(b),
            _ => {}
        })
        .expect("attach stream");
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        code,
    )
}

/// Waits until `path` exists.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
