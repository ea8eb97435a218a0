//! The engine's network glue on the real kernel: namespaces pinned by the
//! test stand in for containers. The default network is created on first
//! use, addresses answer ping, a published port answers on 127.0.0.1, names
//! resolve through the network's responder, outbound NAT reaches a namespace
//! playing "the outside", and detach + network rm leave nothing behind.
//! Run as root, serially (every name contains `network`).
#![allow(clippy::disallowed_macros)]

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use kontti_core::ErrorKind;
use kontti_engine::network::{self, AttachRequest, NetError, NetworkMode, Settings};
use kontti_testutil::HostSnapshot;

/// `kontti-dns` of this build (built on demand when only this package's
/// tests were built).
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
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

/// A state root with test settings: the pool given, a table of the test's
/// own, DNS on, never forwarding upstream, the host's uplink left alone.
fn root_with(pool: &str) -> tempfile::TempDir {
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

/// A container's network namespace, pinned at `R/netns/<id>` as the engine
/// pins it, with its record `R/containers/<id>/container.json`.
struct Container {
    id: String,
    netns: PathBuf,
}

impl Container {
    fn new(root: &Path, name: &str) -> Container {
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

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns.display()))
            .arg(kontti_testutil::busybox())
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("nsenter")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&self, args: &[&str]) -> Guard {
        Guard(
            self.cmd(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nsenter"),
        )
    }

    fn request(&self, name: &str, mode: NetworkMode) -> AttachRequest {
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

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A child killed and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The nft ruleset lines that mention kontti.
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
struct Leaks {
    host: HostSnapshot,
    rules: String,
    root: PathBuf,
}

impl Leaks {
    fn snapshot(root: &Path) -> Leaks {
        Leaks {
            host: HostSnapshot::take("kontti-engine-net-test"),
            rules: ruleset(),
            root: root.to_owned(),
        }
    }

    /// Other engineers' tests run at the same time and make links and
    /// mounts of their own: only kontti's link names (`k*`) and mounts
    /// under this root count.
    fn assert_clean(&self) {
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
fn read_from(port: u16) -> String {
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
struct Teardown<'a>(&'a Path, Vec<String>);

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

#[test]
fn network_default_bridge_ping_publish_dns_and_clean_detach() {
    let root = root_with("10.241.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let b = Container::new(r, "beta");
        let _t = Teardown(r, vec![a.id.clone(), b.id.clone()]);
        let mut req = a.request("alpha", NetworkMode::Bridge);
        req.ports = vec!["127.0.0.1:18480:80".parse().unwrap()];
        let setup = network::attach(r, &req).unwrap();
        let gw = Ipv4Addr::new(10, 241, 0, 1);
        assert_eq!(
            setup.endpoints,
            vec![("bridge".to_owned(), Ipv4Addr::new(10, 241, 0, 2), gw, 24)]
        );
        assert!(
            setup
                .hosts
                .ends_with(&format!("10.241.0.2\t{} alpha\n", &a.id[..12])),
            "{}",
            setup.hosts
        );
        assert!(setup.hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert_eq!(setup.resolv_conf, "nameserver 10.241.0.1\n");
        let setup_b = network::attach(r, &b.request("beta", NetworkMode::Bridge)).unwrap();
        assert_eq!(setup_b.endpoints[0].1, Ipv4Addr::new(10, 241, 0, 3));

        // Inside: eth0 with the address and a default route; the other
        // container answers ping.
        assert!(a.ok(&["ip", "-o", "addr"]).contains("10.241.0.2/24"));
        assert!(a.ok(&["ip", "route"]).contains("default via 10.241.0.1"));
        b.ok(&["ping", "-c", "1", "-W", "2", "10.241.0.2"]);

        // Names, aliases and the short id resolve through the responder.
        let out = b.ok(&["nslookup", "alpha", "10.241.0.1"]);
        assert!(out.contains("10.241.0.2"), "{out}");
        let out = b.ok(&["nslookup", "alpha-alias", "10.241.0.1"]);
        assert!(out.contains("10.241.0.2"), "{out}");
        let out = a.ok(&["nslookup", &b.id[..12], "10.241.0.1"]);
        assert!(out.contains("10.241.0.3"), "{out}");
        // Nothing is forwarded upstream.
        assert!(
            !a.run(&["nslookup", "example.com", "10.241.0.1"])
                .status
                .success()
        );

        // The published port answers on the host's loopback.
        let _server = a.spawn(&["nc", "-l", "-p", "80", "-e", "echo", "from-alpha"]);
        let mut got = String::new();
        for _ in 0..50 {
            got = read_from(18480);
            if !got.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(got.trim(), "from-alpha");

        // Detach is idempotent; the name goes with the endpoint.
        network::detach(r, &b.id).unwrap();
        network::detach(r, &b.id).unwrap();
        assert!(!a.run(&["nslookup", "beta", "10.241.0.1"]).status.success());
        network::detach(r, &a.id).unwrap();
        assert_eq!(read_from(18480), "");
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_port_in_use_is_refused_and_leaves_nothing() {
    let root = root_with("10.242.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let holder = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = holder.local_addr().unwrap().port();
        let a = Container::new(r, "alpha");
        let _t = Teardown(r, vec![a.id.clone()]);
        let mut req = a.request("alpha", NetworkMode::Bridge);
        req.ports = vec![format!("{port}:80").parse().unwrap()];
        // First use of the default network: it is created, then removed
        // again because the attach failed.
        let e = network::attach(r, &req).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("port {port}:80/tcp is already in use")),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        assert!(network::networks(r).unwrap().list().unwrap().is_empty());
        assert_eq!(a.ok(&["ip", "-o", "link"]).lines().count(), 1, "only lo");

        // With the network in place, a port taken by another container.
        let b = Container::new(r, "beta");
        let mut req_b = b.request("beta", NetworkMode::Bridge);
        req_b.ports = vec!["18482:80".parse().unwrap()];
        network::attach(r, &req_b).unwrap();
        let links = HostSnapshot::take("x").links;
        let mut req = a.request("alpha", NetworkMode::Bridge);
        req.ports = vec!["18482:8080".parse().unwrap()];
        let e = network::attach(r, &req).unwrap_err();
        assert!(e.to_string().contains(&b.id), "{e}");
        assert_eq!(HostSnapshot::take("x").links, links);
        network::detach(r, &b.id).unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
        drop(holder);
    }
    leaks.assert_clean();
}

#[test]
fn network_modes_user_network_none_host_and_container() {
    let root = root_with("10.243.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let b = Container::new(r, "beta");
        let _t = Teardown(r, vec![a.id.clone(), b.id.clone()]);
        // A user network that does not exist: not found, nothing created.
        let e = network::attach(r, &a.request("alpha", "appnet".parse().unwrap())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        assert_eq!(e.to_string(), "network appnet not found");
        let spec = kontti_net::NetworkSpec {
            name: "appnet".into(),
            ..Default::default()
        };
        network::create(r, &spec, None).unwrap();
        let setup = network::attach(r, &a.request("alpha", "appnet".parse().unwrap())).unwrap();
        assert_eq!(setup.endpoints[0].0, "appnet");
        assert_eq!(setup.resolv_conf, "nameserver 10.243.0.1\n");

        // container:alpha shares alpha's resolver and address.
        let req = b.request("beta", NetworkMode::Container("alpha".into()));
        let joined = network::attach(r, &req).unwrap();
        assert!(joined.endpoints.is_empty());
        assert_eq!(joined.resolv_conf, "nameserver 10.243.0.1\n");
        assert!(joined.hosts.contains("10.243.0.2\t"), "{}", joined.hosts);
        let e = network::attach(
            r,
            &b.request("beta", NetworkMode::Container("nobody".into())),
        )
        .unwrap_err();
        assert!(matches!(e, NetError::ContainerNotFound(_)), "{e}");

        // none: loopback only, no resolver; host: the host's files.
        let none = network::attach(r, &b.request("beta", NetworkMode::None)).unwrap();
        assert!(none.endpoints.is_empty() && none.resolv_conf.is_empty());
        assert!(
            none.hosts
                .ends_with(&format!("127.0.1.1\t{} beta\n", &b.id[..12]))
        );
        let host = network::attach(r, &b.request("beta", NetworkMode::Host)).unwrap();
        assert!(host.endpoints.is_empty());
        assert_eq!(b.ok(&["ip", "-o", "link"]).lines().count(), 1, "only lo");

        // The network with an endpoint cannot go; after detach it can.
        let e = network::networks(r).unwrap().remove("appnet").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        network::detach(r, &a.id).unwrap();
        assert_eq!(network::prune(r).unwrap(), vec!["appnet".to_owned()]);
    }
    leaks.assert_clean();
}

#[test]
fn network_connect_and_disconnect_a_running_container_by_name() {
    let root = root_with("10.244.0.0/24");
    let r = root.path();
    // A second pool entry for the second network.
    let mut settings = Settings::load(r).unwrap();
    settings.pool = Some(vec![
        "10.244.0.0/24".parse().unwrap(),
        "10.244.1.0/24".parse().unwrap(),
    ]);
    settings.store(r).unwrap();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let _t = Teardown(r, vec![a.id.clone()]);
        network::attach(r, &a.request("alpha", NetworkMode::Bridge)).unwrap();
        let spec = kontti_net::NetworkSpec {
            name: "second".into(),
            ..Default::default()
        };
        network::create(r, &spec, None).unwrap();
        let ep = network::connect(r, "second", "alpha", &["db".to_owned()], None).unwrap();
        assert_eq!(ep.attachment.ifname, "eth1");
        assert_eq!(ep.attachment.address, Ipv4Addr::new(10, 244, 1, 2));
        assert_eq!(ep.name, "alpha");
        let addrs = a.ok(&["ip", "-o", "addr"]);
        assert!(
            addrs.contains("eth1") && addrs.contains("10.244.1.2/24"),
            "{addrs}"
        );
        // The default route stays on the first network.
        assert!(a.ok(&["ip", "route"]).contains("default via 10.244.0.1"));
        let e = network::connect(r, "second", &a.id[..12], &[], None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
        let e = network::connect(r, "second", "ghost", &[], None).unwrap_err();
        assert_eq!(e.to_string(), "no such container: ghost");
        network::disconnect(r, "second", "alpha", false).unwrap();
        assert!(!a.ok(&["ip", "-o", "addr"]).contains("eth1"));
        let e = network::disconnect(r, "second", "alpha", false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
        network::detach(r, &a.id).unwrap();
        let nets = network::networks(r).unwrap();
        nets.remove("second").unwrap();
        nets.remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

/// A namespace playing "the outside": a veth pair from the host with
/// 198.51.101.1 (host) and 198.51.101.2 (outside), and no route back to
/// any container subnet, so only masqueraded traffic gets answers.
struct Outside {
    _holder: Child,
    pid: u32,
    host_if: String,
}

impl Outside {
    fn new() -> Outside {
        let holder = Command::new("unshare")
            .args(["--net", "/bin/busybox", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = holder.id();
        let own = fs::read_link("/proc/self/ns/net").unwrap();
        for _ in 0..500 {
            let ns = fs::read_link(format!("/proc/{pid}/ns/net"));
            if ns.is_ok_and(|n| n != own) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let host_if = format!("kto{}", std::process::id() % 100_000);
        sh(&format!(
            "ip link add {host_if} type veth peer name out0 netns {pid} && \
             ip addr add 198.51.101.1/24 dev {host_if} && ip link set {host_if} up && \
             echo 1 > /proc/sys/net/ipv4/conf/{host_if}/forwarding && \
             nsenter --net=/proc/{pid}/ns/net sh -c 'ip addr add 198.51.101.2/24 dev out0 && ip link set out0 up && ip link set lo up'"
        ));
        Outside {
            _holder: holder,
            pid,
            host_if,
        }
    }

    fn spawn(&self, args: &[&str]) -> Guard {
        Guard(
            Command::new("nsenter")
                .arg(format!("--net=/proc/{}/ns/net", self.pid))
                .arg("/bin/busybox")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
        let _ = self._holder.kill();
        let _ = self._holder.wait();
    }
}

/// Counts packets from `subnet` leaving by the host's default-route
/// interface, in a table of the test's own: container traffic must never
/// reach a real outside address.
struct EgressCounter(String);

impl EgressCounter {
    fn new(subnet: &str) -> EgressCounter {
        let table = format!("kontti-egress-e{}", std::process::id());
        let route = fs::read_to_string("/proc/net/route").unwrap();
        let dev = route
            .lines()
            .skip(1)
            .find(|l| l.split_whitespace().nth(1) == Some("00000000"))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("eth0")
            .to_owned();
        sh(&format!(
            "nft 'add table ip {table}; add chain ip {table} post {{ type filter hook postrouting priority -300; }}; \
             add rule ip {table} post oifname \"{dev}\" ip saddr {subnet} counter'"
        ));
        EgressCounter(table)
    }

    fn packets(&self) -> u64 {
        let out = Command::new("nft")
            .args(["list", "table", "ip", &self.0])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let at = text.find("packets ").expect("counter");
        text[at + 8..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("packet count")
    }
}

impl Drop for EgressCounter {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "ip", &self.0])
            .status();
    }
}

#[test]
fn network_outbound_nat_reaches_an_outside_namespace() {
    let root = root_with("10.245.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let outside = Outside::new();
        let counter = EgressCounter::new("10.245.0.0/24");
        let c = Container::new(r, "client");
        let _t = Teardown(r, vec![c.id.clone()]);
        network::attach(r, &c.request("client", NetworkMode::Bridge)).unwrap();
        c.ok(&["ping", "-c", "1", "-W", "2", "198.51.101.2"]);
        // The outside answers a TCP connection: it saw the host's address
        // (it has no route to 10.245.0.0/24).
        let _server = outside.spawn(&["nc", "-l", "-p", "9000", "-e", "echo", "from-outside"]);
        let mut out = String::new();
        for _ in 0..50 {
            let o = c.run(&["nc", "-w", "2", "198.51.101.2", "9000"]);
            out = String::from_utf8_lossy(&o.stdout).into_owned();
            if out.contains("from-outside") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(out.contains("from-outside"), "{out:?}");
        assert_eq!(
            counter.packets(),
            0,
            "container traffic left by the default route"
        );
        network::detach(r, &c.id).unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_restore_brings_networks_back_after_a_simulated_reboot() {
    let root = root_with("10.252.0.0/24");
    let r = root.path();
    let mut settings = Settings::load(r).unwrap();
    settings.pool = Some(vec![
        "10.252.0.0/24".parse().unwrap(),
        "10.252.1.0/24".parse().unwrap(),
    ]);
    settings.store(r).unwrap();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "alpha");
        let _t = Teardown(r, vec![a.id.clone()]);
        network::attach(r, &a.request("alpha", NetworkMode::Bridge)).unwrap();
        let spec = kontti_net::NetworkSpec {
            name: "spare".into(),
            ..Default::default()
        };
        let spare = network::create(r, &spec, None).unwrap();
        let state = network::networks(r).unwrap().inspect("bridge").unwrap();
        // What a reboot takes: the namespace (its pin file stays, empty),
        // the bridge, the DNS responder and kontti's nft table.
        sh(&format!("umount {}", a.netns.display()));
        sh(&format!("ip link del {}", state.info.bridge));
        sh(&format!("kill -9 {}", state.dns_pid.unwrap()));
        sh(&format!("ip link del {}", spare.info.bridge));
        sh(&format!("kill -9 {}", spare.dns_pid.unwrap()));
        sh(&format!(
            "nft delete table ip kontti-e{}",
            std::process::id()
        ));

        assert_eq!(
            network::restore(r).unwrap(),
            vec!["bridge".to_owned(), "spare".to_owned()]
        );
        let spare_now = network::networks(r).unwrap().inspect("spare").unwrap();
        assert_eq!(spare_now.info.subnet, spare.info.subnet);
        assert!(
            Path::new("/sys/class/net")
                .join(&spare_now.info.bridge)
                .exists()
        );
        let now = network::networks(r).unwrap().inspect("bridge").unwrap();
        assert!(now.endpoints.is_empty(), "the dead endpoint is dropped");
        assert_eq!(now.info.subnet, state.info.subnet);
        assert_eq!(now.info.bridge, state.info.bridge);
        assert!(Path::new("/sys/class/net").join(&now.info.bridge).exists());
        // Healthy now: nothing more to do.
        assert!(network::restore(r).unwrap().is_empty());

        // A new container attaches and resolves names again.
        let b = Container::new(r, "beta");
        let setup = network::attach(r, &b.request("beta", NetworkMode::Bridge)).unwrap();
        assert_eq!(setup.endpoints[0].1, Ipv4Addr::new(10, 252, 0, 2));
        let out = b.ok(&["nslookup", "beta", "10.252.0.1"]);
        assert!(out.contains("10.252.0.2"), "{out}");
        network::detach(r, &b.id).unwrap();
        network::networks(r).unwrap().remove("spare").unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

#[test]
fn network_parallel_first_attaches_share_one_default_network() {
    let root = root_with("10.253.0.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let containers: Vec<Container> = (0..4)
            .map(|i| Container::new(r, &format!("par{i}")))
            .collect();
        let _t = Teardown(r, containers.iter().map(|c| c.id.clone()).collect());
        let mut addrs: Vec<Ipv4Addr> = std::thread::scope(|s| {
            let handles: Vec<_> = containers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let req = c.request(&format!("par{i}"), NetworkMode::Bridge);
                    s.spawn(move || network::attach(r, &req).unwrap().endpoints[0].1)
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        addrs.sort();
        let want: Vec<Ipv4Addr> = (2..6).map(|n| Ipv4Addr::new(10, 253, 0, n)).collect();
        assert_eq!(addrs, want);
        let nets = network::networks(r).unwrap();
        assert_eq!(nets.list().unwrap().len(), 1);
        containers[0].ok(&["ping", "-c", "1", "-W", "2", "10.253.0.5"]);
        for c in &containers {
            network::detach(r, &c.id).unwrap();
        }
        nets.remove("bridge").unwrap();
    }
    leaks.assert_clean();
}

/// Run inside a container's namespace by
/// `network_published_udp_port_answers_on_loopback` (through nsenter):
/// answers one datagram on UDP port 53. Does nothing on its own.
#[test]
fn udp_echo_helper() {
    if std::env::var_os("KONTTI_UDP_ECHO").is_none() {
        return;
    }
    let sock = std::net::UdpSocket::bind("0.0.0.0:53").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 512];
    let (n, peer) = sock.recv_from(&mut buf).unwrap();
    let mut reply = b"pong:".to_vec();
    reply.extend_from_slice(&buf[..n]);
    sock.send_to(&reply, peer).unwrap();
}

#[test]
fn network_published_udp_port_answers_on_loopback() {
    let root = root_with("10.241.1.0/24");
    let r = root.path();
    let leaks = Leaks::snapshot(r);
    {
        let a = Container::new(r, "udp");
        let _t = Teardown(r, vec![a.id.clone()]);
        let mut req = a.request("udp", NetworkMode::Bridge);
        req.ports = vec!["127.0.0.1:18483:53/udp".parse().unwrap()];
        network::attach(r, &req).unwrap();
        let _server = Guard(
            Command::new("nsenter")
                .arg(format!("--net={}", a.netns.display()))
                .arg(std::env::current_exe().unwrap())
                .args(["--exact", "udp_echo_helper", "--nocapture"])
                .env("KONTTI_UDP_ECHO", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..25 {
            client.send_to(b"ping", "127.0.0.1:18483").unwrap();
            if let Ok(n) = client.recv(&mut buf) {
                got = buf[..n].to_vec();
                break;
            }
        }
        assert_eq!(String::from_utf8_lossy(&got), "pong:ping");
        network::detach(r, &a.id).unwrap();
        network::networks(r).unwrap().remove("bridge").unwrap();
    }
    leaks.assert_clean();
}
