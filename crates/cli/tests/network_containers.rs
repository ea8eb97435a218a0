//! Real containers on kontti networks, end to end with the `kontti` binary
//! (as root): two containers on a user network talk by name, a published
//! port answers on 127.0.0.1, `--network container:NAME` shares a
//! namespace, the default network gives an address, a resolver and
//! outbound reach, a port already in use is refused leaving nothing, and
//! after `rm` + `network rm` no veth, bridge, nft rule or helper is left.
//! Every test name contains `network` (they run serially).
#![allow(clippy::disallowed_macros)]

#[path = "container_support/mod.rs"]
mod container_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use container_support::Kontti;
use kontti_engine::network::Settings;
use kontti_testutil::HostSnapshot;

fn dns_binary() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_kontti")).with_file_name("kontti-dns");
    if !bin.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "kontti-net", "--bin", "kontti-dns"])
            .status()
            .expect("cargo");
        assert!(status.success(), "building kontti-dns failed");
    }
    bin
}

/// A kontti with test network settings: `pool`, a table of the test's own,
/// DNS never forwarded upstream, the host's uplink left alone.
fn kontti_with(pool: &[&str]) -> Kontti {
    let k = Kontti::new();
    Settings {
        pool: Some(pool.iter().map(|p| p.parse().unwrap()).collect()),
        upstreams: Some(Vec::new()),
        nft_table: Some(format!("kontti-n{}", std::process::id())),
        dns_binary: Some(dns_binary()),
        uplink_forwarding: Some(false),
        ..Default::default()
    }
    .store(&k.root())
    .unwrap();
    k
}

/// On a failing test, removes the containers and networks of `k` before its
/// state root goes (else they would outlive the test).
struct Cleanup<'a>(&'a Kontti);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let ids = self.0.run(&["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&ids.stdout).lines() {
            let _ = self.0.run(&["rm", "-f", id]);
        }
        let nets = self.0.run(&["network", "ls", "-q"]);
        for n in String::from_utf8_lossy(&nets.stdout).lines() {
            let _ = self.0.run(&["network", "rm", n]);
        }
    }
}

/// kontti's nft rules and link names, to compare before and after.
fn net_state() -> (String, Vec<String>) {
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
    let links = HostSnapshot::take("kontti-netct")
        .links
        .into_iter()
        .filter(|l| l.starts_with('k'))
        .collect();
    (ours.join("\n"), links)
}

/// The body `127.0.0.1:port` answers to `GET /` ("" when nothing does).
fn http_get(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

#[test]
fn network_containers_talk_by_name_and_publish_on_loopback() {
    let k = kontti_with(&["10.250.0.0/24"]);
    let before = net_state();
    let cleanup = Cleanup(&k);
    let cg = k.cgroup_parent.clone();
    k.ok(&["network", "create", "front"]);
    k.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--cgroup-parent",
        &cg,
        "-p",
        "127.0.0.1:18490:80",
        "busybox",
        "sh",
        "-c",
        "echo hello-web > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let mut body = String::new();
    for _ in 0..60 {
        body = http_get(18490);
        if !body.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(body, "hello-web\n", "published port on 127.0.0.1");

    // Another container reaches it by name through the network's resolver.
    let out = k.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--cgroup-parent",
        &cg,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web/",
    ]);
    assert_eq!(out, "hello-web\n");
    let resolv = k.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--cgroup-parent",
        &cg,
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(resolv, "nameserver 10.250.0.1\n");
    // container:web shares web's namespace: its port 80 is on 127.0.0.1.
    let out = k.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        "--cgroup-parent",
        &cg,
        "busybox",
        "wget",
        "-q",
        "-O",
        "-",
        "http://127.0.0.1/",
    ]);
    assert_eq!(out, "hello-web\n");

    let inspect: serde_json::Value =
        serde_json::from_str(&k.ok(&["network", "inspect", "front"])).unwrap();
    let eps = inspect[0]["Containers"].as_object().unwrap();
    assert_eq!(eps.len(), 1, "only web is left: {eps:?}");
    let err = k.fails(&["network", "rm", "front"], 4);
    assert!(err.contains("has active endpoints"), "{err}");

    k.ok(&["rm", "-f", "web"]);
    assert_eq!(http_get(18490), "");
    k.ok(&["network", "rm", "front"]);
    assert_eq!(net_state(), before, "kontti's links or nft rules left");
    drop(cleanup);
    k.finish();
}

#[test]
fn network_default_bridge_gives_address_resolver_and_refuses_a_taken_port() {
    let k = kontti_with(&["10.251.0.0/24"]);
    let before = net_state();
    let cleanup = Cleanup(&k);
    let cg = k.cgroup_parent.clone();
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port().to_string();
    let publish = format!("{port}:80");
    let err = k.fails(
        &[
            "run",
            "--rm",
            "--cgroup-parent",
            &cg,
            "-p",
            &publish,
            "busybox",
            "true",
        ],
        125,
    );
    assert!(
        err.contains(&format!("port {port}:80/tcp is already in use")),
        "{err}"
    );
    // a --rm container that could not start is removed, as docker does
    assert_eq!(
        k.ok(&["ps", "-aq"]),
        "",
        "a refused run --rm left its record"
    );
    assert_eq!(net_state(), before, "a refused run left network state");

    let out = k.ok(&[
        "run",
        "--rm",
        "--cgroup-parent",
        &cg,
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; ip route; cat /etc/resolv.conf; ping -c 1 -W 2 10.251.0.1 >/dev/null && echo gateway-ok",
    ]);
    assert!(out.contains("10.251.0.2/24"), "{out}");
    assert!(out.contains("default via 10.251.0.1"), "{out}");
    assert!(out.contains("nameserver 10.251.0.1"), "{out}");
    assert!(out.contains("gateway-ok"), "{out}");
    let ls = k.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls, "bridge\n");
    k.ok(&["network", "rm", "bridge"]);
    assert_eq!(net_state(), before);
    drop(holder);
    drop(cleanup);
    k.finish();
}

#[test]
fn network_connect_gives_a_running_container_a_second_network() {
    let k = kontti_with(&["10.254.0.0/24", "10.254.1.0/24"]);
    let before = net_state();
    let cleanup = Cleanup(&k);
    let cg = k.cgroup_parent.clone();
    k.ok(&["network", "create", "front"]);
    k.ok(&["network", "create", "back"]);
    k.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "front",
        "--cgroup-parent",
        &cg,
        "busybox",
        "sh",
        "-c",
        "echo hello-back > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    // (no `wget -T`: Debian's busybox wget crashes with it; an unknown name
    // fails at once anyway)
    let client = |net: &str| {
        k.run(&[
            "run",
            "--rm",
            "--network",
            net,
            "--cgroup-parent",
            &cg,
            "busybox",
            "wget",
            "-q",
            "-O",
            "-",
            "http://web/",
        ])
    };
    assert!(!client("back").status.success(), "web is not on back yet");
    k.ok(&["network", "connect", "--alias", "www", "back", "web"]);
    let out = client("back");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello-back\n",
        "{out:?}"
    );
    let addrs = k.ok(&["exec", "web", "ip", "-o", "-4", "addr"]);
    assert!(
        addrs.contains("eth1") && addrs.contains("10.254.1.2/24"),
        "{addrs}"
    );
    k.ok(&["network", "disconnect", "back", "web"]);
    assert!(!client("back").status.success(), "web left back");
    k.ok(&["rm", "-f", "web"]);
    k.ok(&["network", "rm", "front", "back"]);
    assert_eq!(net_state(), before, "kontti's links or nft rules left");
    drop(cleanup);
    k.finish();
}
