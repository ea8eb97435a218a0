//! `kontti network` with the real binary, as root on the real kernel:
//! create, ls, inspect, rm, connect, disconnect and prune, the errors (a
//! name taken, an overlapping subnet, rm of a network with endpoints, ...)
//! as one clear line and a non-zero exit, and nothing left behind. Every
//! test name contains `network` (they run serially).
#![allow(clippy::disallowed_macros)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kontti_engine::network::Settings;
use kontti_testutil::HostSnapshot;

fn dns_binary() -> PathBuf {
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
    bin
}

/// A state root whose networks take `pool`, use a table of the test's own,
/// never forward DNS upstream and leave the host's uplink alone.
fn root_with(pool: &[&str]) -> tempfile::TempDir {
    kontti_testutil::require_root();
    let root = tempfile::tempdir().unwrap();
    Settings {
        pool: Some(pool.iter().map(|p| p.parse().unwrap()).collect()),
        upstreams: Some(Vec::new()),
        nft_table: Some(format!("kontti-c{}", std::process::id())),
        dns_binary: Some(dns_binary()),
        uplink_forwarding: Some(false),
        ..Default::default()
    }
    .store(root.path())
    .unwrap();
    root
}

fn kontti(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kontti"))
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kontti")
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = kontti(root, args);
    assert!(
        out.status.success(),
        "kontti {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(root: &Path, args: &[&str], code: i32, msg: &str) {
    let out = kontti(root, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "kontti {args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(err.contains(msg), "{err}");
}

fn ruleset() -> String {
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

fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(cmd) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                out.push(cmd);
            }
        }
    }
    out
}

/// Links (kontti's `k*` names), mounts under the root, kontti's nft rules
/// and helper processes, before the test.
struct Leaks(HostSnapshot, String, PathBuf);

impl Leaks {
    fn snapshot(root: &Path) -> Leaks {
        Leaks(
            HostSnapshot::take("kontti-cli-net-test"),
            ruleset(),
            root.to_owned(),
        )
    }

    fn assert_clean(&self) {
        let now = HostSnapshot::take("kontti-cli-net-test");
        let root = self.2.to_string_lossy().into_owned();
        let links: Vec<_> = now
            .links
            .difference(&self.0.links)
            .filter(|l| l.starts_with('k'))
            .collect();
        let mounts: Vec<_> = now
            .mounts
            .difference(&self.0.mounts)
            .filter(|m| m.starts_with(root.as_str()))
            .collect();
        assert!(
            links.is_empty() && mounts.is_empty(),
            "leaked links {links:?}, mounts {mounts:?}"
        );
        assert_eq!(ruleset(), self.1, "nft ruleset changed");
        let procs = processes_mentioning(&root);
        assert!(procs.is_empty(), "processes left: {procs:?}");
    }
}

/// Removes what a failed test left: endpoints and networks of the root.
struct Teardown(PathBuf);

impl Drop for Teardown {
    fn drop(&mut self) {
        if let Ok(nets) = kontti_engine::network::networks(&self.0) {
            for n in nets.list().unwrap_or_default() {
                for c in n.endpoints.keys() {
                    let _ = nets.disconnect(&n.info.name, c);
                }
                let _ = nets.remove(&n.info.name);
            }
        }
    }
}

/// Writes the engine's record of a container, as `kontti create` does.
fn write_record(root: &Path, id: &str, name: &str, network: Option<&str>) {
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

/// A running container as the engine leaves it on disk: its record and its
/// pinned network namespace (`R/netns/<id>`).
struct Container {
    id: String,
    netns: PathBuf,
}

impl Container {
    fn new(root: &Path, name: &str, id_byte: &str) -> Container {
        let id = id_byte.repeat(32);
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

    fn addrs(&self) -> String {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.netns.display()))
            .args(["ip", "-o", "addr"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.netns).status();
        let _ = fs::remove_file(&self.netns);
    }
}

#[test]
fn network_cli_create_ls_inspect_rm() {
    let root = root_with(&["10.246.0.0/24"]);
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let _t = Teardown(r.to_owned());
        let out = ok(
            r,
            &[
                "network",
                "create",
                "--subnet",
                "10.246.7.0/24",
                "--gateway",
                "10.246.7.1",
                "front",
            ],
        );
        assert_eq!(out, "front\n");
        assert_eq!(ok(r, &["network", "create", "back"]), "back\n");
        let names = |extra: &[&str]| {
            let mut a = vec!["network", "ls", "--format", "{{.Name}}"];
            a.extend_from_slice(extra);
            ok(r, &a)
        };
        let ls = ok(r, &["network", "ls"]);
        assert!(
            ls.starts_with("NETWORK ID     NAME      DRIVER    SCOPE\n"),
            "{ls}"
        );
        assert_eq!(names(&[]), "back\nfront\n");
        assert_eq!(names(&["-f", "name=fr"]), "front\n");

        let json: serde_json::Value =
            serde_json::from_str(&ok(r, &["network", "inspect", "front"])).unwrap();
        let n = &json[0];
        assert_eq!(n["Name"], "front");
        assert_eq!(n["Driver"], "bridge");
        assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.246.7.0/24");
        assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.246.7.1");
        assert_eq!(n["DNSEnabled"], true);
        let bridge = n["Options"]["com.docker.network.bridge.name"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(Path::new("/sys/class/net").join(&bridge).exists());

        assert_eq!(ok(r, &["network", "rm", "front", "back"]), "front\nback\n");
        assert!(!Path::new("/sys/class/net").join(&bridge).exists());
        assert_eq!(ok(r, &["network", "ls", "-q"]), "");
    }
    leaks.assert_clean();
}

#[test]
fn network_cli_bad_input_is_refused_and_changes_nothing() {
    let root = root_with(&["10.247.0.0/24"]);
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let _t = Teardown(r.to_owned());
        ok(
            r,
            &["network", "create", "--subnet", "10.247.0.0/24", "front"],
        );
        let rules = ruleset();
        let links = HostSnapshot::take("x").links;
        fails(
            r,
            &["network", "create", "front"],
            3,
            "network front already exists",
        );
        fails(
            r,
            &["network", "create", "--subnet", "10.247.0.128/25", "other"],
            4,
            "overlaps",
        );
        fails(
            r,
            &["network", "create", "--subnet", "10.0.0.5/24", "other"],
            5,
            "invalid subnet \"10.0.0.5/24\"",
        );
        fails(
            r,
            &[
                "network",
                "create",
                "--subnet",
                "10.248.0.0/24",
                "--gateway",
                "10.248.0.9",
                "other",
            ],
            5,
            "invalid gateway 10.248.0.9",
        );
        fails(r, &["network", "create", "host"], 5, "reserved");
        fails(
            r,
            &["network", "create", "bad/name"],
            5,
            "invalid network name",
        );
        fails(
            r,
            &["network", "create", "-d", "overlay", "other"],
            5,
            "driver",
        );
        fails(r, &["network", "rm", "nope"], 2, "network nope not found");
        fails(r, &["network", "ls", "-f", "bogus=1"], 5, "invalid filter");
        // Nothing of the refused requests exists.
        assert_eq!(
            ok(r, &["network", "ls", "--format", "{{.Name}}"]),
            "front\n"
        );
        assert_eq!(ruleset(), rules);
        assert_eq!(HostSnapshot::take("x").links, links);

        // rm of a network with an endpoint is refused.
        let c = Container::new(r, "alpha", "a1");
        ok(r, &["network", "connect", "front", "alpha"]);
        fails(
            r,
            &["network", "rm", "front"],
            4,
            "network front has active endpoints",
        );
        ok(r, &["network", "disconnect", "front", "alpha"]);
        ok(r, &["network", "rm", "front"]);
        drop(c);
    }
    leaks.assert_clean();
}

#[test]
fn network_cli_connect_disconnect_and_prune() {
    let root = root_with(&["10.249.0.0/24", "10.249.1.0/24"]);
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let _t = Teardown(r.to_owned());
        ok(r, &["network", "create", "front"]);
        ok(r, &["network", "create", "back"]);
        let a = Container::new(r, "alpha", "b2");
        // By name, then by short id: eth0 (default route), then eth1.
        ok(
            r,
            &["network", "connect", "--alias", "db", "front", "alpha"],
        );
        ok(r, &["network", "connect", "back", &a.id[..12]]);
        let addrs = a.addrs();
        assert!(
            addrs.contains("eth0") && addrs.contains("10.249.0.2/24"),
            "{addrs}"
        );
        assert!(
            addrs.contains("eth1") && addrs.contains("10.249.1.2/24"),
            "{addrs}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&ok(r, &["network", "inspect", "front"])).unwrap();
        let ep = &json[0]["Containers"][&a.id];
        assert_eq!(ep["Name"], "alpha");
        assert_eq!(ep["IPv4Address"], "10.249.0.2/24");
        assert!(ep["Aliases"].as_array().unwrap().contains(&"db".into()));

        fails(
            r,
            &["network", "connect", "front", "alpha"],
            3,
            "already connected",
        );
        fails(
            r,
            &["network", "connect", "front", "ghost"],
            2,
            "no such container: ghost",
        );
        // A container that exists but does not run has no namespace.
        write_record(r, &"c3".repeat(32), "stopped", None);
        fails(
            r,
            &["network", "connect", "front", "stopped"],
            4,
            "not running",
        );
        // A --network host container joins no network.
        write_record(r, &"d4".repeat(32), "onhost", Some("host"));
        fails(
            r,
            &["network", "connect", "front", "onhost"],
            4,
            "uses --network host",
        );

        // Prune keeps networks with endpoints.
        ok(r, &["network", "disconnect", "back", "alpha"]);
        assert!(!a.addrs().contains("eth1"));
        assert_eq!(
            ok(r, &["network", "prune", "-f"]),
            "Deleted Networks:\nback\n"
        );
        fails(
            r,
            &["network", "disconnect", "front", "stopped"],
            2,
            "is not connected to network front",
        );
        ok(r, &["network", "disconnect", "front", "alpha"]);
        assert_eq!(
            ok(r, &["network", "prune", "-f"]),
            "Deleted Networks:\nfront\n"
        );
        drop(a);
    }
    leaks.assert_clean();
}
