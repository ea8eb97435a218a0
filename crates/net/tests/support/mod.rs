//! Helpers for the real-kernel network tests: namespaces playing containers
//! and "the outside", and leak checks against a snapshot of the host.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kontti_net::{Ipv4Net, NetConfig};
use kontti_testutil::HostSnapshot;

/// A network namespace held by a `busybox sleep` child, like a container's.
pub struct Netns {
    child: Child,
    path: PathBuf,
}

impl Netns {
    pub fn new() -> Netns {
        kontti_testutil::require_root();
        let busybox = kontti_testutil::busybox();
        let own = fs::metadata("/proc/self/ns/net").expect("own netns").ino();
        let child = Command::new("unshare")
            .arg("--net")
            .arg(busybox)
            .args(["sleep", "3600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare --net (util-linux) must be installed");
        let path = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if fs::metadata(&path).map(|m| m.ino() != own).unwrap_or(false) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "unshare did not create a namespace"
            );
            thread::sleep(Duration::from_millis(2));
        }
        Netns { child, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path.display()))
            .arg(kontti_testutil::busybox())
            .args(args);
        c
    }

    /// Runs a busybox applet inside; returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("nsenter")
    }

    /// Runs a busybox applet inside and asserts it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} in {} failed: {}{}",
            self.path.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a long-running busybox applet inside.
    pub fn spawn(&self, args: &[&str]) -> Guard {
        let child = self
            .cmd(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nsenter");
        Guard(child)
    }

    /// Runs `ip` inside.
    pub fn ip(&self, script: &str) {
        let status = Command::new("nsenter")
            .arg(format!("--net={}", self.path.display()))
            .args(["sh", "-c", script])
            .status()
            .expect("nsenter");
        assert!(status.success(), "{script} failed");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed and reaped on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a host command and asserts success.
pub fn sh(script: &str) {
    let out = Command::new("sh")
        .args(["-c", script])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Everything a network test could leak.
pub struct Leaks {
    host: HostSnapshot,
    ruleset: String,
    state_dir: PathBuf,
}

/// The lines of the nft ruleset that mention kontti (its tables, the
/// `kontti-forward` chains and jumps, rules tagged `kontti:NETWORK`, the
/// tests' own `kontti-*` tables). Other tools' rules may change meanwhile.
pub fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ours = Vec::new();
    let mut in_ours = false;
    for line in text.lines() {
        if line.starts_with("table ") {
            in_ours = line.contains("kontti");
        }
        if in_ours || line.contains("kontti") {
            ours.push(line);
        }
    }
    ours.join("\n")
}

/// Processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) {
            out.push(format!("{name}: {cmd}"));
        }
    }
    out
}

impl Leaks {
    pub fn snapshot(state_dir: &Path) -> Leaks {
        Leaks {
            host: HostSnapshot::take("kontti-net-test"),
            ruleset: ruleset(),
            state_dir: state_dir.to_owned(),
        }
    }

    /// Compares what this crate can create: links named `k*` (bridges `kt`,
    /// veths `kv`, test links `kto`/`ktd`), mounts of namespaces or under the
    /// state root, kontti's and the tests' nft rules, helper processes. Other
    /// engineers' tests run at the same time on this host and create links
    /// and mounts of their own, so the check is narrowed to ours.
    pub fn assert_clean(&self) {
        let now = HostSnapshot::take("kontti-net-test");
        let state = self.state_dir.to_string_lossy().into_owned();
        let ours_mount = |m: &&String| m.contains("netns") || m.starts_with(state.as_str());
        let new_links: Vec<_> = now
            .links
            .difference(&self.host.links)
            .filter(|l| l.starts_with('k'))
            .collect();
        let new_mounts: Vec<_> = now
            .mounts
            .difference(&self.host.mounts)
            .filter(ours_mount)
            .collect();
        assert!(
            new_links.is_empty() && new_mounts.is_empty(),
            "leaked: links {new_links:?}, mounts {new_mounts:?}"
        );
        let rules = ruleset();
        assert_eq!(rules, self.ruleset, "nft ruleset changed:\n{rules}");
        let procs = processes_mentioning(&self.state_dir.to_string_lossy());
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }
}

/// A configuration on a fresh state root with test pools in 10.23x/24 and a
/// table of the test's own, with DNS on.
pub fn config(state: &Path, pool: &[&str]) -> NetConfig {
    let mut cfg = NetConfig::new(state);
    cfg.pool = pool
        .iter()
        .map(|s| s.parse::<Ipv4Net>().expect("pool"))
        .collect();
    cfg.nft_table = format!("kontti-t{}", std::process::id());
    cfg.dns_binary = Some(PathBuf::from(env!("CARGO_BIN_EXE_kontti-dns")));
    // The tests' "outside" is a namespace on its own link, whose forwarding
    // the test sets; the host's uplink is left alone.
    cfg.uplink_forwarding = false;
    cfg
}

/// Disconnects every endpoint and removes every network of `Networks` on
/// drop, so that a failing test leaves the host as it found it. A no-op when
/// the test removed everything itself.
pub struct Teardown<'a>(pub &'a kontti_net::Networks);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        let Ok(list) = self.0.list() else { return };
        for n in list {
            for c in n.endpoints.keys() {
                let _ = self.0.disconnect(&n.info.name, c);
            }
            let _ = self.0.remove(&n.info.name);
        }
    }
}
