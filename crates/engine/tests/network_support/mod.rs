//! Helpers of the engine's network tests: namespaces pinned the way the
//! engine pins them stand in for containers; leak checks against a snapshot
//! taken before the test.
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use kontti_engine::network::{self, AttachRequest, NetworkMode, Settings};
use kontti_testutil::HostSnapshot;

/// `kontti-dns` of this build (built on demand when only this package's
/// tests were built).
pub fn dns_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("kontti-dns");
    if !bin.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "kontti-net", "--bin", "kontti-dns"])
            .status()
            .expect("cargo");
        assert!(status.success(), "building kontti-dns failed");
    }
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

/// A state root with test settings: the pool given, a table of the test's
/// own, DNS on, never forwarding upstream, the host's uplink left alone.
pub fn root_with(pool: &str) -> tempfile::TempDir {
    kontti_testutil::require_root();
    let root = tempfile::tempdir().unwrap();
    Settings {
        pool: Some(vec![pool.parse().unwrap()]),
        upstreams: Some(Vec::new()),
        nft_table: Some(format!("kontti-e{}", std::process::id())),
        dns_binary: Some(dns_binary()),
        uplink_forwarding: Some(false),
        ..Default::default()
    }
    .store(root.path())
    .unwrap();
    root
}

/// Writes the engine's record of a container, as `kontti create` does.
pub fn write_record(root: &Path, id: &str, name: &str, network: Option<&str>) {
    let options = kontti_engine::RunOptions {
        network: network.map(str::to_owned),
        ..Default::default()
    };
    let rec = serde_json::json!({
        "id": id, "name": name, "image": "busybox", "imageId": "", "created": "",
        "options": options, "args": [], "stopSignal": 15, "snapshot": "", "rootfsMounts": 0,
        "state": kontti_engine::ContainerState::default(),
    });
    let dir = root.join("containers").join(id);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("container.json"), rec.to_string()).unwrap();
}

/// A container's network namespace, pinned at `R/netns/<id>` as the engine
/// pins it, with its record `R/containers/<id>/container.json`.
pub struct Container {
    pub id: String,
    pub netns: PathBuf,
}

impl Container {
    pub fn new(root: &Path, name: &str) -> Container {
        let id = format!("{:0>64}", format!("{:x}", fnv(name)));
        write_record(root, &id, name, None);
        fs::create_dir_all(root.join("netns")).unwrap();
        let netns = root.join("netns").join(&id);
        fs::write(&netns, "").unwrap();
        let out = Command::new("unshare")
            .arg(format!("--net={}", netns.display()))
            .args(["ip", "link", "set", "lo", "up"])
            .output()
            .expect("unshare (util-linux)");
        assert!(out.status.success(), "pinning a namespace: {out:?}");
        Container { id, netns }
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns.display()))
            .arg(kontti_testutil::busybox())
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("nsenter")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn spawn(&self, args: &[&str]) -> Guard {
        Guard(
            self.cmd(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nsenter"),
        )
    }

    pub fn request(&self, name: &str, mode: NetworkMode) -> AttachRequest {
        AttachRequest {
            container_id: self.id.clone(),
            name: name.to_owned(),
            hostname: self.id[..12].to_owned(),
            aliases: vec![format!("{name}-alias")],
            mode,
            ports: Vec::new(),
            netns: self.netns.clone(),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.netns).status();
        let _ = fs::remove_file(&self.netns);
    }
}

pub fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A child killed and reaped on drop.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The nft ruleset lines that mention kontti.
pub fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut ours = Vec::new();
    let mut in_ours = false;
    for line in text.lines() {
        if line.starts_with("table ") {
            in_ours = line.contains("kontti");
        }
        if in_ours || line.contains("kontti") {
            ours.push(line.to_owned());
        }
    }
    ours.join("\n")
}

pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(format!("{name}: {cmd}"));
            }
        }
    }
    out
}

/// What a test may leak, taken before it: links, mounts, kontti's nft
/// rules, helper processes of the state root.
pub struct Leaks {
    host: HostSnapshot,
    rules: String,
    root: PathBuf,
}

impl Leaks {
    pub fn snapshot(root: &Path) -> Leaks {
        Leaks {
            host: HostSnapshot::take("kontti-engine-net-test"),
            rules: ruleset(),
            root: root.to_owned(),
        }
    }

    /// Other engineers' tests run at the same time and make links and
    /// mounts of their own: only kontti's link names (`k*`) and mounts
    /// under this root count.
    pub fn assert_clean(&self) {
        let now = HostSnapshot::take("kontti-engine-net-test");
        let root = self.root.to_string_lossy().into_owned();
        let links: Vec<_> = now
            .links
            .difference(&self.host.links)
            .filter(|l| l.starts_with('k'))
            .collect();
        let mounts: Vec<_> = now
            .mounts
            .difference(&self.host.mounts)
            .filter(|m| m.starts_with(root.as_str()))
            .collect();
        assert!(
            links.is_empty() && mounts.is_empty(),
            "leaked links {links:?}, mounts {mounts:?}"
        );
        assert_eq!(ruleset(), self.rules, "nft ruleset changed");
        let procs = processes_mentioning(&root);
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }
}

/// What `127.0.0.1:port` says when connected to ("" when nothing answers).
pub fn read_from(port: u16) -> String {
    let addr = ("127.0.0.1", port);
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"hi\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Removes every network of the root on drop (a failing test leaves the
/// host as it found it).
pub struct Teardown<'a>(pub &'a Path, pub Vec<String>);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        for id in &self.1 {
            let _ = network::detach(self.0, id);
        }
        if let Ok(nets) = network::networks(self.0) {
            for n in nets.list().unwrap_or_default() {
                for c in n.endpoints.keys() {
                    let _ = nets.disconnect(&n.info.name, c);
                }
                let _ = nets.remove(&n.info.name);
            }
        }
    }
}
